"""The dataset registry: frozen metadata plus a loader per name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch.utils.data import Dataset

from trt_nm.errors import ConfigError, unknown_name


@dataclass(frozen=True)
class DatasetInfo:
    """Metadata the CLI needs to build the right model without the user repeating it.

    Attributes:
        name: registry name.
        num_classes: number of integer labels, ``0 .. num_classes - 1``.
        in_channels: channels C of each frame (2 for ON/OFF event polarity).
        input_size: ``(H, W)`` of each frame after preprocessing (``(F,)`` for 1-D data).
        sensor_size: the raw sensor ``(W, H, P)`` for event data, else None.
        kind: "static" (images, encoded over T), "event" (binned events) or "audio".
        splits: valid split names.
        embedded: True when the data ships inside an installed package (no files needed).
        description: one line for ``trt-nm datasets``.
        sizes: number of samples per split, where known.
    """

    name: str
    num_classes: int
    in_channels: int
    input_size: tuple[int, ...]
    kind: str
    splits: tuple[str, ...] = ("train", "test")
    sensor_size: tuple[int, ...] | None = None
    embedded: bool = False
    description: str = ""
    sizes: dict[str, int] = field(default_factory=dict)


Loader = Callable[..., Dataset]
_REGISTRY: dict[str, tuple[DatasetInfo, Loader]] = {}


def register_dataset(info: DatasetInfo) -> Callable[[Loader], Loader]:
    """Decorator registering ``loader(root, split, T, **kwargs) -> Dataset`` under ``info.name``."""

    def deco(fn: Loader) -> Loader:
        _REGISTRY[info.name] = (info, fn)
        return fn

    return deco


def list_datasets() -> list[str]:
    """Registered dataset names."""
    return sorted(_REGISTRY)


def dataset_info(name: str) -> DatasetInfo:
    """Metadata of a registered dataset."""
    try:
        return _REGISTRY[name][0]
    except KeyError:
        raise unknown_name("dataset", name, list(_REGISTRY)) from None


def get_dataset(
    name: str, root: str | None = None, split: str = "train", T: int = 4, **kwargs: Any
) -> Dataset:
    """Load split ``split`` of dataset ``name`` as time-major samples over ``T`` steps.

    The returned dataset has an ``info`` attribute (:class:`DatasetInfo`).
    """
    info = dataset_info(name)
    if split not in info.splits:
        raise ConfigError(f"dataset {name!r} has no split {split!r}; valid splits: {', '.join(info.splits)}")
    if int(T) != T or T < 1:
        raise ConfigError(f"T must be an integer >= 1, got {T}")
    ds = _REGISTRY[name][1](root=root, split=split, T=int(T), **kwargs)
    ds.info = info  # type: ignore[attr-defined]
    return ds
