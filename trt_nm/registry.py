"""One small name -> object registry, used by every pluggable concept (surrogates, models,
backends, exit rules, energy profiles, hardware targets, graph conversions)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

from trt_nm.errors import unknown_name

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind; unknown names raise a ConfigError listing the valid ones.

    Args:
        kind: what an entry is, in words ("surrogate", "energy profile", ...), used in errors.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T) -> T:
        """Add (or replace) ``item`` under ``name`` and return it."""
        self._items[name] = item
        return item

    def get(self, name: str) -> T:
        """The entry called ``name``."""
        try:
            return self._items[name]
        except KeyError:
            raise unknown_name(self.kind, name, list(self._items)) from None

    def names(self) -> list[str]:
        """Sorted entry names."""
        return sorted(self._items)

    def pop(self, name: str) -> T:
        """Remove and return an entry (tests use it to undo a registration)."""
        return self._items.pop(name)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
