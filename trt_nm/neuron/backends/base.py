"""Shared plumbing for backend adapters."""

from __future__ import annotations

import importlib.util


class LibraryBackend:
    """A backend whose neuron comes from an optional library."""

    name: str = ""
    extra: str | None = None
    requires: str | None = None

    def available(self) -> bool:
        return self.requires is None or importlib.util.find_spec(self.requires) is not None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
