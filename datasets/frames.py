"""Events to time-major frames, and the datasets that serve (cached) frames.

``events_to_frames`` bins a tonic structured event array into ``T`` frames with tonic's own
``ToFrame`` (event counts per polarity and pixel), optionally resized. ``FrameDataset``
serves frames held in memory; ``CachedFrameDataset`` computes each sample's frames from a
tonic dataset on first access and reads them from a :class:`~.cache.SampleCache` after that.

Source files are hostile until checked: ``CachedFrameDataset`` refuses (one line naming the
file, the field and the valid range) a sample whose events lie off the sensor
(:func:`check_events`) or whose label is outside ``[0, num_classes)``; a cached entry whose
frames or label do not have the expected shape, type and range (:func:`check_cached_frames`)
is recomputed from the source, like an unreadable one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from trt_nm.datasets.cache import SampleCache
from trt_nm.datasets.errors import DatasetFileError
from trt_nm.errors import TrtNmError, require

Augment = Callable[[torch.Tensor], torch.Tensor]


def _first_outside(values: np.ndarray, lo: float, hi: float | None) -> tuple[int, Any] | None:
    """``(index, value)`` of the first entry outside ``[lo, hi)`` (or not finite), else None."""
    bad = ~np.isfinite(values) if values.dtype.kind == "f" else np.zeros(values.shape, dtype=bool)
    bad |= values < lo
    if hi is not None:
        bad |= values >= hi
    idx = np.flatnonzero(bad)
    return (int(idx[0]), values[idx[0]].item()) if len(idx) else None


def check_fields(fields: Mapping[str, np.ndarray], sensor_range: tuple[int, int, int]) -> str | None:
    """None when every given event column lies in range, else one line naming the first bad one.

    ``fields`` maps any of ``x``, ``y``, ``p``, ``t`` to a 1-D array; with ``sensor_range =
    (W, H, P)``: ``x`` in ``[0, W)``, ``y`` in ``[0, H)``, ``p`` in ``[0, P)`` (not checked when
    ``P == 1``: tonic's 1-D sensors use ``p = 1``), ``t`` finite and ``>= 0``.
    """
    w, h, p = sensor_range
    limits = {"x": (w, "the sensor's x range"), "y": (h, "the sensor's y range"), "t": (None, "timestamps")}
    if p > 1:
        limits["p"] = (p, "polarities")
    for field, (hi, what) in limits.items():
        if field not in fields:
            continue
        col = np.asarray(fields[field])
        if col.dtype.kind not in "biuf":
            return f"event field {field!r} has type {col.dtype}, expected numbers"
        hit = _first_outside(col, 0, hi)
        if hit is not None:
            rng = f"[0, {hi})" if hi is not None else "[0, inf)"
            return f"event field {field!r} holds {hit[1]} at event {hit[0]}, outside {what} {rng}"
    return None


def check_events(events: np.ndarray, sensor_range: tuple[int, int, int]) -> str | None:
    """None when every event lies on the sensor, else one line saying which field is wrong.

    Args:
        events: tonic structured array with ``x``, ``t``, ``p`` (and ``y`` for 2-D sensors).
        sensor_range: ``(W, H, P)``, as in :func:`check_fields`.
    """
    names = events.dtype.names or ()
    missing = [f for f in ("x", "t", "p") if f not in names]
    if missing:
        return f"events lack the field(s) {', '.join(missing)} (have {', '.join(names) or 'none'})"
    return check_fields({n: events[n] for n in names if n in ("x", "y", "t", "p")}, sensor_range)


def check_cached_frames(
    arrays: Any, frame_shape: tuple[int, ...] | None, num_classes: int | None
) -> str | None:
    """None when a cached sample (``frames``, ``label``) is usable, else what is wrong.

    ``frames`` must be unsigned-integer or float counts (finite, ``>= 0``) of shape
    ``frame_shape`` (when given); ``label`` an integer scalar in ``[0, num_classes)``.
    """
    if "frames" not in arrays or "label" not in arrays:
        return "entry lacks 'frames' or 'label'"
    frames, label = arrays["frames"], arrays["label"]
    if frames.dtype.kind not in "uf":
        return f"frames of type {frames.dtype}"
    if frame_shape is not None and tuple(frames.shape) != tuple(frame_shape):
        return f"frames of shape {frames.shape}, expected {tuple(frame_shape)}"
    if frames.size and _first_outside(frames.reshape(-1), 0, None) is not None:
        return "negative or non-finite frame counts"
    if label.shape != () or label.dtype.kind not in "iu":
        return f"label of type {label.dtype} and shape {label.shape}, expected an integer"
    if num_classes is not None and not 0 <= int(label) < num_classes:
        return f"label {int(label)} outside [0, {num_classes})"
    return None


def events_to_frames(
    events: np.ndarray,
    sensor_size: tuple[int, int, int],
    T: int,
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Bin events into ``T`` equal time bins with ``tonic.transforms.ToFrame``.

    Args:
        events: tonic structured array with fields ``x``, ``t``, ``p`` (and ``y`` for 2-D sensors);
            events outside ``sensor_size`` are dropped.
        sensor_size: ``(W, H, P)`` as tonic defines it.
        T: number of frames (time bins over the recording's span).
        size: ``(H, W)`` to resize to (bilinear on counts), or None to keep the sensor size.

    Returns:
        float32 ``[T, P, H, W]`` event counts (``[T, P, 1, W]`` for 1-D sensors when H == 1).
    """
    tonic_transforms = require("tonic.transforms", "data")
    w, h, p = sensor_size
    if len(events):
        keep = (events["x"] >= 0) & (events["x"] < w)
        if "y" in events.dtype.names:
            keep &= (events["y"] >= 0) & (events["y"] < h)
        events = events[keep]
    if len(events) == 0:
        frames = np.zeros((T, p, h, w), dtype=np.float32)
    else:
        frames = tonic_transforms.ToFrame(sensor_size=sensor_size, n_time_bins=T)(events)
        frames = np.asarray(frames, dtype=np.float32).reshape(T, p, h, w)
    if size is not None and tuple(size) != (h, w):
        x = F.interpolate(torch.from_numpy(frames), size=tuple(size), mode="bilinear", align_corners=False)
        frames = x.numpy()
    return frames


class FrameDataset(Dataset):
    """Frames held in memory: ``frames [N, T, ...]`` (any numeric dtype), ``labels [N]``.

    ``__getitem__`` returns ``(float32 [T, ...], int label)``, through ``augment`` if given
    (training split only).
    """

    def __init__(self, frames: torch.Tensor, labels: torch.Tensor, augment: Augment | None = None):
        self.frames = frames
        self.labels = labels
        self.augment = augment

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = self.frames[i].float()
        if self.augment is not None:
            x = self.augment(x)
        return x, int(self.labels[i])


class CachedFrameDataset(Dataset):
    """Frames of a tonic dataset, computed once per sample and cached on disk.

    Args:
        source: indexable returning ``(events, label)`` (a tonic dataset, transform=None).
        to_frames: ``events -> float32 [T, ...]``.
        cache: where the frames live, keyed by every preprocessing parameter.
        paths: file of each sample (for error messages), or None.
        label_map: maps the source's label to an int (e.g. N-Caltech101 folder names).
        augment: applied to the float frames after the cache (training split only).
        indices: the source samples this dataset exposes (e.g. a 90/10 split), default all.
        num_classes: labels must lie in ``[0, num_classes)`` (else :class:`DatasetFileError`).
        sensor_range: ``(W, H, P)`` every event must lie in (:func:`check_events`), or None.
        frame_shape: shape of ``to_frames``' output, checked on cached entries, or None.
    """

    def __init__(
        self,
        source: Any,
        to_frames: Callable[[np.ndarray], np.ndarray],
        cache: SampleCache,
        paths: list[str] | None = None,
        label_map: Callable[[Any], int] | None = None,
        augment: Augment | None = None,
        indices: np.ndarray | None = None,
        num_classes: int | None = None,
        sensor_range: tuple[int, int, int] | None = None,
        frame_shape: tuple[int, ...] | None = None,
    ):
        self.source = source
        self.to_frames = to_frames
        self.cache = cache
        self.paths = paths
        self.label_map = label_map
        self.augment = augment
        self.indices = np.arange(len(source)) if indices is None else np.asarray(indices)
        self.num_classes = num_classes
        self.sensor_range = sensor_range
        self.frame_shape = frame_shape

    def _valid_entry(self, arrays: Any) -> str | None:
        return check_cached_frames(arrays, self.frame_shape, self.num_classes)

    def __len__(self) -> int:
        return len(self.indices)

    def _where(self, j: int) -> str:
        if self.paths is not None:
            return str(self.paths[j])
        return f"sample {j} of {type(self.source).__name__}"

    def frames(self, i: int) -> tuple[np.ndarray, int]:
        """Uncached-then-cached float32 frames ``[T, ...]`` and the int label of sample ``i``."""
        j = int(self.indices[i])
        hit = self.cache.get(j, self._valid_entry)
        if hit is not None:
            return hit["frames"].astype(np.float32), int(hit["label"])
        try:
            events, label = self.source[j]
            problem = check_events(events, self.sensor_range) if self.sensor_range is not None else None
            if problem is None:
                label = self.label_map(label) if self.label_map is not None else int(label)
                frames = self.to_frames(events)
        except TrtNmError:
            raise
        except Exception as exc:  # tonic/h5py raise many types for a damaged file
            first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
            raise DatasetFileError(f"{self._where(j)}: corrupt or truncated file ({type(exc).__name__}: {first})") from None
        if problem is not None:
            raise DatasetFileError(f"{self._where(j)}: {problem}")
        if self.num_classes is not None and not 0 <= label < self.num_classes:
            raise DatasetFileError(f"{self._where(j)}: label {label} outside [0, {self.num_classes}) ({self.num_classes} classes)")
        store = frames.astype(np.uint16) if np.array_equal(frames, np.round(frames)) and frames.max(initial=0) < 65536 else frames
        self.cache.put(j, {"frames": store, "label": np.int64(label)})
        return frames.astype(np.float32), label

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        frames, label = self.frames(i)
        x = torch.from_numpy(frames)
        if self.augment is not None:
            x = self.augment(x)
        return x, label
