"""Spiking Heidelberg Digits (Cramer et al. 2020): the HDF5 files read by trt_nm's own
defensive reader (:class:`SHDFile`, tonic's event format), binned into cached frames."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from trt_nm import h5safe
from trt_nm.datasets.cache import SampleCache
from trt_nm.datasets.errors import DatasetFileError, MissingDatasetError
from trt_nm.datasets.frames import CachedFrameDataset, events_to_frames
from trt_nm.datasets.neuromorphic import _fingerprint, _root, _tonic_download
from trt_nm.datasets.registry import DatasetInfo, register_dataset
from trt_nm.errors import require

# ---------------------------------------------------------------------------- SHD
SHD_URL = "https://zenkelab.org/datasets/"
SHD_FILES = {"train": "shd_train.h5", "test": "shd_test.h5"}


def check_shd(root: str | None, splits: tuple[str, ...] = ("train", "test")) -> list[str]:
    if root is None:
        return ["no --data-root given"]
    problems = []
    for s in splits:
        p = Path(root).expanduser() / "SHD" / SHD_FILES[s]
        if not p.is_file():
            problems.append(f"{SHD_FILES[s]} (unzipped from {SHD_URL}{SHD_FILES[s]}.zip) into {p.parent}/")
    return problems


SHD_CLASSES = 20
SHD_CHANNELS = 700
#: most samples an SHD file may declare before anything is read (the real files: 8,156 / 2,264)
SHD_MAX_SAMPLES = 1_000_000


class SHDFile:
    """One SHD HDF5 file, read defensively; indexable like tonic's ``SHD``.

    ``self[j]`` is ``(events, label)``: tonic's SHD events (structured ``t`` in us, ``x`` the
    channel, ``p = 1``, dtype :attr:`dtype`) and the int label. Every open checks that
    ``spikes/times``, ``spikes/units`` and ``labels`` are datasets stored in this file (hard
    links only: no external or soft links, no external storage, no virtual datasets, only
    built-in filters), 1-D, of one length ``n <= SHD_MAX_SAMPLES``, with variable-length float
    times (seconds), variable-length integer units and integer labels, before any data is
    read. All labels must lie in ``[0, 20)`` (checked on opening); a sample's units must lie
    in ``[0, 700)`` and its times be finite and ``>= 0`` (checked when it is read).
    """

    dtype = np.dtype([("t", int), ("x", int), ("p", int)])  # tonic's HSD dtype

    def __init__(self, path: str | os.PathLike, num_classes: int = SHD_CLASSES, channels: int = SHD_CHANNELS):
        self.path = Path(path)
        self.num_classes = num_classes
        self.channels = channels
        with self._open() as f:
            labels = self._datasets(f)[2]
            try:
                raw = np.asarray(labels[()])
            except Exception as exc:  # h5py: a damaged chunk, a failing filter, ...
                raise DatasetFileError(f"{self.path}: cannot read 'labels' ({type(exc).__name__}: {str(exc)[:120]})") from None
        bad = np.flatnonzero((raw < 0) | (raw >= num_classes))
        if len(bad):
            raise DatasetFileError(
                f"{self.path}: 'labels' holds {raw[bad[0]].item()} at sample {bad[0]}, outside SHD's {num_classes} classes [0, {num_classes})"
            )
        self.targets = raw.astype(np.int64)

    def __len__(self) -> int:
        return len(self.targets)

    def _open(self) -> Any:
        h5py = require("h5py", "data")
        try:
            return h5py.File(self.path, "r")
        except Exception as exc:  # not HDF5, truncated, unreadable
            raise DatasetFileError(f"{self.path}: not an SHD HDF5 file ({type(exc).__name__}: {str(exc)[:120]})") from None

    def _dataset(self, f: Any, name: str) -> Any:
        return h5safe.open_dataset(f, name, where=str(self.path), error=DatasetFileError,
                                   missing="not an SHD HDF5 file")

    def _datasets(self, f: Any) -> tuple[Any, Any, Any]:
        h5py = require("h5py", "data")
        times, units, labels = (self._dataset(f, n) for n in ("spikes/times", "spikes/units", "labels"))
        if labels.ndim != 1 or labels.dtype.kind not in "iu":
            raise DatasetFileError(f"{self.path}: 'labels' must be a 1-D integer array, got {labels.dtype} of shape {labels.shape}")
        n = labels.shape[0]
        if n > SHD_MAX_SAMPLES:
            raise DatasetFileError(f"{self.path}: 'labels' declares {n} samples, more than the {SHD_MAX_SAMPLES} allowed; refusing to read it")
        for ds, name, kinds, what in ((times, "spikes/times", "f", "float"), (units, "spikes/units", "iu", "integer")):
            base = h5py.check_vlen_dtype(ds.dtype)
            if not isinstance(base, np.dtype) or base.kind not in kinds or ds.ndim != 1:
                raise DatasetFileError(f"{self.path}: {name!r} must be a 1-D array of variable-length {what} arrays, got {ds.dtype} of shape {ds.shape}")
            if ds.shape[0] != n:
                raise DatasetFileError(f"{self.path}: {name!r} holds {ds.shape[0]} samples, 'labels' {n}")
        if hasattr(self, "targets") and n != len(self.targets):
            raise DatasetFileError(f"{self.path}: the file changed while in use ({n} samples, was {len(self.targets)})")
        return times, units, labels

    def __getitem__(self, j: int) -> tuple[np.ndarray, int]:
        j = int(j)
        if not 0 <= j < len(self):
            raise IndexError(j)
        with self._open() as f:
            times, units, _ = self._datasets(f)
            t = np.asarray(times[j])
            x = np.asarray(units[j])
        where = f"{self.path} (sample {j})"
        if t.shape != x.shape or t.ndim != 1:
            raise DatasetFileError(f"{where}: {len(t)} spike times but {len(x)} spike units")
        for values, name, lo, hi, what in ((x, "spikes/units", 0, self.channels, f"the {self.channels} channels"),
                                           (t, "spikes/times", 0.0, None, "times (s)")):
            bad = (values < lo) | (values >= hi) if hi is not None else ~np.isfinite(values) | (values < lo)
            idx = np.flatnonzero(bad)
            if len(idx):
                rng = f"[{lo}, {hi})" if hi is not None else f"[{lo}, inf)"
                raise DatasetFileError(f"{where}: {name!r} holds {values[idx[0]].item()} at spike {idx[0]}, outside {what} {rng}")
        ev = np.empty(len(t), dtype=self.dtype)
        ev["t"] = t.astype(np.float64) * 1e6  # seconds -> us, as tonic's SHD
        ev["x"] = x
        ev["p"] = 1
        return ev, int(self.targets[j])


class _SHDFrames(CachedFrameDataset):
    """SHD bins as ``[T, 1, 1, 700]`` (what the zoo models take: C=1, H=1, W=700), or
    ``[T, 700]`` with ``flat=True``."""

    flat = False

    def frames(self, i: int) -> tuple[np.ndarray, int]:
        f, y = super().frames(i)
        return (f.reshape(f.shape[0], -1) if self.flat else f.reshape(f.shape[0], 1, 1, -1)), y


@register_dataset(
    DatasetInfo(
        name="shd", num_classes=20, in_channels=1, input_size=(1, 700), kind="audio",
        sensor_size=(700, 1, 1), sizes={"train": 8156, "test": 2264},
        description="Spiking Heidelberg Digits (Cramer 2020): T time bins over 700 channels",
        source="tonic.datasets.SHD", urls=tuple(f"{SHD_URL}{f}.zip" for f in SHD_FILES.values()),
        layout="<root>/SHD/shd_train.h5 and <root>/SHD/shd_test.h5",
    ),
    check=check_shd,
    download=partial(_tonic_download, "SHD", ({"train": True}, {"train": False})),
)
def load_shd(
    root: str | None = None, split: str = "train", T: int = 4, *, flat: bool = False, cache_dir: str | None = None
) -> CachedFrameDataset:
    """SHD spike counts per time bin and channel, labels 0..19.

    Samples are ``[T, 1, 1, 700]`` so that the zoo models (``mlp``) take them as they are;
    ``flat=True`` gives ``[T, 700]``.
    """
    r = _root(root, "shd")
    if check_shd(root, (split,)):
        raise MissingDatasetError(
            f"shd {split} file not found: put {check_shd(root, (split,))[0]}, or run: trt-nm datasets shd --data-root {root} --download"
        )
    path = r / "SHD" / SHD_FILES[split]
    ds = SHDFile(path)
    n = len(ds)
    params = {"dataset": "shd", "file": str(path.resolve()), "split": split, "T": T, "n": n, **_fingerprint([path])}
    sensor = (SHD_CHANNELS, 1, 1)
    out = _SHDFrames(
        ds,
        lambda ev: events_to_frames(ev, sensor, T),
        SampleCache("shd", params, cache_dir),
        paths=[f"{path} (sample {j})" for j in range(n)],
        num_classes=SHD_CLASSES,
        sensor_range=sensor,
        frame_shape=(T, 1, 1, SHD_CHANNELS),
    )
    out.flat = flat
    return out
