"""Exact synaptic-operation counts from per-layer fan-out maps.

``fanout[i]`` = number of nonzero weights leaving input position ``i`` of one sample (for
convolutions it depends on borders, stride, padding, dilation and groups), computed once per
layer and input shape in float64. A layer's operations per sample are then one matrix-vector
product ``events.flatten(1) @ fanout`` over its event counts (ACs) or nonzero-input mask
(effective MACs); see the counting rule in :mod:`trt_nm.sim.engine`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

#: float32 holds every integer below this exactly
_F32_EXACT = float(2**24)


def affine_fanout64(mask64: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Fan-out of an Affine/Linear layer with nonzero mask ``mask64 [out, in]`` (float64) for
    a sample of ``shape`` (``[..., in]``: the layer acts on the last dim); shaped like a sample."""
    fan = mask64.sum(0)  # [in]
    if len(shape) == 1:
        return fan
    return fan.expand(*shape[:-1], fan.shape[0]).clone()


def conv_fanout64(conv: Callable[..., torch.Tensor], mask64: torch.Tensor, shape: tuple[int, ...],
                  stride: Any, padding: Any, dilation: Any, groups: int) -> torch.Tensor:
    """Fan-out of a convolution (``conv`` = ``F.conv1d``/``F.conv2d``, nonzero mask ``mask64``
    float64) for a sample of ``shape [C, *spatial]``: ``d/dx sum(conv(x, mask))``, i.e. how many
    nonzero weights read each input position; shaped like a sample."""
    x = torch.zeros(1, *shape, dtype=torch.float64, requires_grad=True)
    y = conv(x, mask64.clone(), None, stride, padding, dilation, groups)
    (grad,) = torch.autograd.grad(y.sum(), x)
    return grad[0]


def fanout_vectors(fanout64: Callable[[], torch.Tensor], dtype: torch.dtype,
                   device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``fanout64()`` flattened, as ``(compute-dtype vector, float64 vector)`` on ``device``
    (computed with autograd on, whatever the caller's grad mode)."""
    with torch.inference_mode(False), torch.enable_grad():
        f64 = fanout64().detach().reshape(-1)
    f64 = f64.to(device)
    return f64.to(dtype), f64


def _exact_count(act: torch.Tensor, fan: torch.Tensor, fan64: torch.Tensor) -> torch.Tensor:
    """Per-sample ``sum_i act[n, i] * fan[i]`` as float64 ``[N]``, exact.

    ``act`` holds nonnegative integers (event counts or 0/1 masks) and ``fan`` nonnegative
    integers, so a float32 product is exact while every partial sum stays below 2**24; all
    partial sums are at most the total, so a total below 2**24 proves it. Otherwise the
    product is redone in float64.
    """
    a = act.reshape(act.shape[0], -1)
    out = a @ fan if a.dtype == fan.dtype else a.to(fan.dtype) @ fan
    if out.numel() and float(out.max()) < _F32_EXACT:
        return out.double()
    return a.double() @ fan64
