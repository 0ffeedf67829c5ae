"""The dataset registry: frozen metadata plus a loader per name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch.utils.data import Dataset

from trt_nm.errors import ConfigError, TrtNmError, unknown_name


@dataclass(frozen=True)
class DatasetInfo:
    """Metadata the CLI needs to build the right model without the user repeating it.

    Attributes:
        name: registry name.
        num_classes: number of integer labels, ``0 .. num_classes - 1``.
        in_channels: channels C of each frame (2 for ON/OFF event polarity).
        input_size: ``(H, W)`` of each frame after preprocessing; ``(1, F)`` for 1-D data
            (``kind="audio"``, e.g. SHD: samples ``[T, 1, 1, F]``, ``[T, F]`` on request).
        sensor_size: the raw sensor ``(W, H, P)`` for event data, else None.
        kind: "static" (images, encoded over T), "event" (binned events) or "audio".
        splits: valid split names.
        embedded: True when the data ships inside an installed package (no files needed).
        description: one line for ``trt-nm datasets``.
        sizes: number of samples per split, where known.
        source: where the data comes from (library class or paper).
        urls: download URLs the dataset's own code knows (for the missing-files message).
        layout: where the files go under ``--data-root`` (one line for ``trt-nm datasets``).
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
    source: str = ""
    urls: tuple[str, ...] = ()
    layout: str = ""

    def sample_shape(self, T: int) -> tuple[int, ...]:
        """Shape of one sample for ``T`` timesteps: ``(T, C, H, W)``."""
        return (T, self.in_channels, *self.input_size)


Loader = Callable[..., Dataset]
#: ``check(root) -> list of problems`` (empty when every file is in place)
Checker = Callable[[str | None], list[str]]
#: ``download(root) -> None``: the dataset's own downloader
Downloader = Callable[[str], None]
_REGISTRY: dict[str, tuple[DatasetInfo, Loader]] = {}
_CHECKERS: dict[str, Checker] = {}
_DOWNLOADERS: dict[str, Downloader] = {}


def register_dataset(
    info: DatasetInfo, *, check: Checker | None = None, download: Downloader | None = None
) -> Callable[[Loader], Loader]:
    """Decorator registering ``loader(root, split, T, **kwargs) -> Dataset`` under ``info.name``.

    ``check(root)`` lists what is missing under ``root`` (empty list: ready);
    ``download(root)`` fetches the files with the dataset's own downloader.
    """

    def deco(fn: Loader) -> Loader:
        _REGISTRY[info.name] = (info, fn)
        if check is not None:
            _CHECKERS[info.name] = check
        if download is not None:
            _DOWNLOADERS[info.name] = download
        return fn

    return deco


def missing_files(name: str, root: str | None) -> list[str]:
    """What is missing for dataset ``name`` under ``root`` (empty: ready to load)."""
    info = dataset_info(name)
    if info.embedded or name not in _CHECKERS:
        return []
    return _CHECKERS[name](root)


def download_dataset(name: str, root: str) -> None:
    """Fetch dataset ``name`` into ``root`` with the dataset's own downloader."""
    info = dataset_info(name)
    if info.embedded:
        return
    if name not in _DOWNLOADERS:
        raise ConfigError(f"dataset {name!r} has no downloader; put its files under the root by hand")
    try:
        _DOWNLOADERS[name](root)
    except TrtNmError:
        raise
    except Exception as exc:  # network, disk, checksum: urllib/tonic/torchvision raise many types
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise TrtNmError(f"download of {name} into {root} failed: {type(exc).__name__}: {first}") from None


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
