"""Training augmentations on tensors (frozen dataclasses, called per sample).

``FlipShift``: the DVS-CIFAR10 augmentation of the paper for event frames ``[T, C, H, W]``
(one random horizontal flip and one random integer shift of up to ``max_shift`` pixels,
shared by all T frames, zero fill). ``CropFlipCutout``: the CIFAR augmentation for images
``[C, H, W]`` (random crop with zero padding, horizontal flip, Cutout of a square).
Randomness comes from torch's global generator (seeded by the trainer).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def shift2d(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Shift the last two dims of ``x`` by ``(dy, dx)`` pixels, filling with zeros."""
    h, w = x.shape[-2], x.shape[-1]
    out = torch.zeros_like(x)
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[..., yd, xd] = x[..., ys, xs]
    return out


@dataclass(frozen=True)
class FlipShift:
    """Random horizontal flip (probability ``p_flip``) and shift in ``[-max_shift, max_shift]``
    pixels along each axis, the same for every frame of a ``[T, C, H, W]`` sample."""

    max_shift: int = 5
    p_flip: float = 0.5

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if torch.rand(()) < self.p_flip:
            x = x.flip(-1)
        if self.max_shift > 0:
            dy, dx = torch.randint(-self.max_shift, self.max_shift + 1, (2,)).tolist()
            x = shift2d(x, dy, dx)
        return x


@dataclass(frozen=True)
class CropFlipCutout:
    """Random crop after ``padding`` zero pixels, horizontal flip, Cutout of a ``cutout``
    square (DeVries & Taylor 2017; centre anywhere in the image, clipped at the border).

    Works on ``[C, H, W]`` images (already normalised, so the zero fill is the mean).
    """

    padding: int = 4
    cutout: int = 16
    p_flip: float = 0.5

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        if self.padding > 0:
            dy, dx = torch.randint(-self.padding, self.padding + 1, (2,)).tolist()
            x = shift2d(x, dy, dx)  # == pad by `padding` then crop back to (h, w)
        if torch.rand(()) < self.p_flip:
            x = x.flip(-1)
        if self.cutout > 0:
            cy, cx = int(torch.randint(h, ())), int(torch.randint(w, ()))
            half = self.cutout // 2
            x = x.clone()
            x[..., max(cy - half, 0) : min(cy + half, h), max(cx - half, 0) : min(cx + half, w)] = 0
        return x
