"""Event-camera recordings of static images made the way N-MNIST was recorded.

Orchard et al. (2015) moved an ATIS sensor in front of a monitor along three saccades
(a triangle: (0,0) -> (3.5,7) -> (7,0) -> (0,0) pixels, about 100 ms each) and the sensor
emitted an ON (OFF) event whenever the log intensity at a pixel rose (fell) by more than a
contrast threshold since that pixel's last event. This module simulates exactly that, for a
batch of images at once (vectorised numpy):

1. the image is rendered at the sub-pixel offset of the eye position (bilinear) on a
   ``sensor x sensor`` canvas, ``steps_per_saccade`` times per saccade;
2. each pixel keeps a reference log intensity ``log(I + log_offset)``; a change of ``n``
   whole thresholds emits ``n`` events of that polarity and moves the reference by
   ``n * threshold``;
3. each event gets a timestamp uniformly jittered inside its step (microseconds).

Output is tonic-style: one structured array per image with fields ``x, y, t, p`` (the dtype
of ``tonic.datasets.NMNIST``), so every tonic transform applies.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from trt_nm.datasets.progress import progress_bar
from trt_nm.errors import ConfigError

#: the dtype tonic's NMNIST uses (x, y, t in microseconds, p in {0 OFF, 1 ON})
EVENT_DTYPE = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])
#: eye positions (x, y) in pixels at the saccade corners, as in N-MNIST
SACCADE_CORNERS = ((0.0, 0.0), (3.5, 7.0), (7.0, 0.0), (0.0, 0.0))


@dataclass(frozen=True)
class SaccadeConfig:
    """Parameters of the simulated recording (all part of the cache key).

    Attributes:
        sensor: side of the square sensor in pixels (34 like N-MNIST's ATIS crop).
        saccade_us: duration of one saccade in microseconds.
        steps_per_saccade: rendered positions per saccade (time resolution of the simulation).
        threshold: log-intensity contrast threshold per event.
        log_offset: ``I + log_offset`` is log-transformed (intensities in [0, 1]); keeps black finite.
        seed: seed of the timestamp jitter (counter-based hash, independent of chunking).
    """

    sensor: int = 34
    saccade_us: int = 100_000
    steps_per_saccade: int = 16
    threshold: float = 0.5
    log_offset: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.sensor < 1 or self.saccade_us < 1 or self.steps_per_saccade < 1:
            raise ConfigError("sensor, saccade_us and steps_per_saccade must be >= 1")
        if not self.threshold > 0 or not self.log_offset > 0:
            raise ConfigError("threshold and log_offset must be > 0")

    def to_dict(self) -> dict:
        return asdict(self)


def uniform_hash(seed: int, *keys: np.ndarray | int) -> np.ndarray:
    """Deterministic uniforms in [0, 1) from integer keys (splitmix64 mixing).

    Counter-based, so an event's jitter depends only on (seed, image, step, pixel, k) and
    not on how the images are chunked.
    """
    with np.errstate(over="ignore"):
        h = np.full(np.broadcast(*[np.asarray(k) for k in keys]).shape, np.uint64(seed) + np.uint64(0x9E3779B97F4A7C15), dtype=np.uint64)
        for key in keys:
            h = h ^ np.asarray(key).astype(np.uint64)
            h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            h = h ^ (h >> np.uint64(31))
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def eye_path(cfg: SaccadeConfig) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``[3 * steps, 2]`` (x, y pixels) and step start times ``[3 * steps]`` (us)."""
    pos, t0 = [], []
    step_us = cfg.saccade_us / cfg.steps_per_saccade
    for s in range(3):
        a, b = np.array(SACCADE_CORNERS[s]), np.array(SACCADE_CORNERS[s + 1])
        for k in range(cfg.steps_per_saccade):
            f = (k + 1) / cfg.steps_per_saccade
            pos.append(a + f * (b - a))
            t0.append((s * cfg.steps_per_saccade + k) * step_us)
    return np.asarray(pos), np.asarray(t0)


def render(images: np.ndarray, dx: float, dy: float, sensor: int) -> np.ndarray:
    """Images ``[N, H, W]`` in [0, 1] shifted by ``(dx, dy) >= 0`` pixels (bilinear) onto a
    ``[N, sensor, sensor]`` canvas (cropped where the shifted image leaves it)."""
    n, h, w = images.shape
    ix, iy = int(np.floor(dx)), int(np.floor(dy))
    fx, fy = dx - ix, dy - iy
    size = max(sensor, h + iy + 2, w + ix + 2)
    canvas = np.zeros((n, size, size), dtype=np.float32)
    for ox, oy, wgt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        if wgt > 0:
            canvas[:, iy + oy : iy + oy + h, ix + ox : ix + ox + w] += np.float32(wgt) * images
    return canvas[:, :sensor, :sensor]


def saccade_events(
    images: np.ndarray, cfg: SaccadeConfig = SaccadeConfig(), chunk: int = 500, progress: bool | None = None
) -> dict[str, np.ndarray]:
    """Simulate the three-saccade recording of each image.

    Args:
        images: ``[N, H, W]`` uint8 (0..255) or float in [0, 1], H and W <= ``cfg.sensor``.
        cfg: recording parameters.
        chunk: images simulated at once (memory ~ chunk * sensor^2 * 4 bytes * a few).
        progress: a progress bar (digits done) on stderr: None shows it only when stderr is
            a terminal, True always, False never.

    Returns:
        Compact arrays: ``x, y`` uint8, ``t`` uint32 (us), ``p`` uint8 (1 ON, 0 OFF) of all
        events sorted by (image, t), and ``offsets`` int64 ``[N + 1]`` so image ``i`` owns
        ``offsets[i]:offsets[i + 1]``. Deterministic given ``cfg.seed``.
    """
    images = np.asarray(images)
    if images.ndim != 3:
        raise ConfigError(f"images must be [N, H, W], got shape {images.shape}")
    if images.shape[1] > cfg.sensor or images.shape[2] > cfg.sensor:
        raise ConfigError(f"images {images.shape[1:]} do not fit the {cfg.sensor}px sensor")
    imgs = images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images.astype(np.float32)
    pos, t0 = eye_path(cfg)
    step_us = cfg.saccade_us / cfg.steps_per_saccade
    parts: list[tuple[np.ndarray, ...]] = []
    with progress_bar(len(imgs), "saccade events", progress, unit="digit") as bar:
        for c0 in range(0, len(imgs), chunk):
            batch = imgs[c0 : c0 + chunk]
            # reference = base + level * threshold, with integer levels: no float drift, so a
            # pixel whose intensity returns to its start has emitted as many ON as OFF events
            base = np.log(render(batch, *SACCADE_CORNERS[0], cfg.sensor).astype(np.float64) + cfg.log_offset)
            level = np.zeros(base.shape, dtype=np.int64)
            for (dx, dy), ts in zip(pos, t0):
                cur = np.log(render(batch, dx, dy, cfg.sensor).astype(np.float64) + cfg.log_offset)
                delta = (cur - base) / cfg.threshold - level  # change since the last event, in thresholds
                n = np.floor(np.abs(delta) + 1e-9).astype(np.int64)
                i, y, x = np.nonzero(n)
                if len(i) == 0:
                    continue
                cnt = n[i, y, x]
                sign = np.sign(delta[i, y, x]).astype(np.int64)
                level[i, y, x] += sign * cnt
                rep = np.repeat(np.arange(len(i)), cnt)
                k = np.arange(len(rep)) - np.repeat(np.cumsum(cnt) - cnt, cnt)  # event number at the pixel
                step = int(round(ts / step_us))
                t = ts + uniform_hash(cfg.seed, i[rep] + c0, step, y[rep], x[rep], k) * step_us
                parts.append((i[rep] + c0, x[rep], y[rep], t, (sign[rep] > 0)))
            bar.update(len(batch))
    if parts:
        img = np.concatenate([p[0] for p in parts])
        x = np.concatenate([p[1] for p in parts])
        y = np.concatenate([p[2] for p in parts])
        t = np.concatenate([p[3] for p in parts]).astype(np.int64)
        p = np.concatenate([p[4] for p in parts])
    else:
        img = x = y = p = t = np.zeros(0, dtype=np.int64)
    # one int64 sort key (image, t): much faster than a lexsort over tens of millions
    order = np.argsort(img.astype(np.int64) * (1 << 32) + t, kind="stable")
    counts = np.bincount(img, minlength=len(imgs))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return {
        "x": x[order].astype(np.uint8),
        "y": y[order].astype(np.uint8),
        "t": t[order].astype(np.uint32),
        "p": p[order].astype(np.uint8),
        "offsets": offsets,
    }


def to_structured(arrays: dict[str, np.ndarray], i: int) -> np.ndarray:
    """Events of image ``i`` from :func:`saccade_events` output as a tonic structured array."""
    a, b = int(arrays["offsets"][i]), int(arrays["offsets"][i + 1])
    ev = np.empty(b - a, dtype=EVENT_DTYPE)
    for f in ("x", "y", "t", "p"):
        ev[f] = arrays[f][a:b]
    return ev
