"""Events to time-major frames, and the datasets that serve (cached) frames.

``events_to_frames`` bins a tonic structured event array into ``T`` frames with tonic's own
``ToFrame`` (event counts per polarity and pixel), optionally resized. ``FrameDataset``
serves frames held in memory; ``CachedFrameDataset`` computes each sample's frames from a
tonic dataset on first access and reads them from a :class:`~.cache.SampleCache` after that.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from trt_nm.datasets.cache import SampleCache
from trt_nm.datasets.errors import DatasetFileError
from trt_nm.errors import TrtNmError, require

Augment = Callable[[torch.Tensor], torch.Tensor]


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
    ):
        self.source = source
        self.to_frames = to_frames
        self.cache = cache
        self.paths = paths
        self.label_map = label_map
        self.augment = augment
        self.indices = np.arange(len(source)) if indices is None else np.asarray(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def _where(self, j: int) -> str:
        if self.paths is not None:
            return str(self.paths[j])
        return f"sample {j} of {type(self.source).__name__}"

    def frames(self, i: int) -> tuple[np.ndarray, int]:
        """Uncached-then-cached float32 frames ``[T, ...]`` and the int label of sample ``i``."""
        j = int(self.indices[i])
        hit = self.cache.get(j)
        if hit is not None and "frames" in hit and "label" in hit:
            return hit["frames"].astype(np.float32), int(hit["label"])
        try:
            events, label = self.source[j]
            frames = self.to_frames(events)
        except TrtNmError:
            raise
        except Exception as exc:  # tonic/h5py raise many types for a damaged file
            first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
            raise DatasetFileError(f"{self._where(j)}: corrupt or truncated file ({type(exc).__name__}: {first})") from None
        label = self.label_map(label) if self.label_map is not None else int(label)
        store = frames.astype(np.uint16) if np.array_equal(frames, np.round(frames)) and frames.max(initial=0) < 65536 else frames
        self.cache.put(j, {"frames": store, "label": np.int64(label)})
        return frames.astype(np.float32), label

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        frames, label = self.frames(i)
        x = torch.from_numpy(frames)
        if self.augment is not None:
            x = self.augment(x)
        return x, label
