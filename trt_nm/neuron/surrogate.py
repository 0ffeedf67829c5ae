"""Surrogate gradients for the Heaviside spike function, in a small registry.

Every surrogate has the same forward pass, ``spike = (x > 0)`` with ``x = v - theta``, and
differs only in the derivative used in the backward pass. The maths of each derivative is
written once here and used by every backend (snnTorch receives it as ``spike_grad``; Norse
uses its own kernel only where that kernel is bit-for-bit the same formula).

Registered surrogates (``scale`` is the one shape parameter):

==============  ==========================================================  =========
name            d spike / dx                                                 default
==============  ==========================================================  =========
triangle        (1/g)^2 * max(0, g - |x|)        (the TRT paper's, width g)  g = 1
atan            a / 2 / (1 + (pi/2 * a * x)^2)   (Fang et al. 2021)           a = 2
sigmoid         k * sig(k x) * (1 - sig(k x))                                 k = 4
fast_sigmoid    1 / (k |x| + 1)^2                (SuperSpike, Zenke 2018)     k = 10
==============  ==========================================================  =========
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from trt_nm.errors import ConfigError
from trt_nm.registry import Registry

GradFn = Callable[[torch.Tensor, float], torch.Tensor]


@dataclass(frozen=True)
class Surrogate:
    """A named surrogate derivative ``grad(x, scale) -> d spike / d x`` (same shape as x)."""

    name: str
    grad: GradFn
    default_scale: float
    formula: str


_REGISTRY: Registry[Surrogate] = Registry("surrogate")


def register_surrogate(surrogate: Surrogate) -> Surrogate:
    """Add a surrogate to the registry (names are unique)."""
    if surrogate.name in _REGISTRY:
        raise ConfigError(f"surrogate {surrogate.name!r} is already registered")
    return _REGISTRY.register(surrogate.name, surrogate)


def list_surrogates() -> list[str]:
    """Names of all registered surrogates."""
    return _REGISTRY.names()


def get_surrogate(name: str) -> Surrogate:
    """Look a surrogate up by name; unknown names raise with the valid list."""
    return _REGISTRY.get(name)


def _triangle(x: torch.Tensor, g: float) -> torch.Tensor:
    return (1.0 / g) ** 2 * torch.clamp(g - x.abs(), min=0.0)


def _atan(x: torch.Tensor, a: float) -> torch.Tensor:
    return (a / 2.0) / (1.0 + (math.pi / 2.0 * a * x) ** 2)


def _sigmoid(x: torch.Tensor, k: float) -> torch.Tensor:
    s = torch.sigmoid(k * x)
    return k * s * (1.0 - s)


def _fast_sigmoid(x: torch.Tensor, k: float) -> torch.Tensor:
    return 1.0 / (k * x.abs() + 1.0) ** 2


register_surrogate(Surrogate("triangle", _triangle, 1.0, "(1/g)^2 * max(0, g - |x|)"))
register_surrogate(Surrogate("atan", _atan, 2.0, "a/2 / (1 + (pi/2 a x)^2)"))
register_surrogate(Surrogate("sigmoid", _sigmoid, 4.0, "k sig(kx)(1 - sig(kx))"))
register_surrogate(Surrogate("fast_sigmoid", _fast_sigmoid, 10.0, "1 / (k|x| + 1)^2"))


class _SpikeFunction(torch.autograd.Function):
    """Heaviside forward, surrogate derivative backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, grad_fn: GradFn, scale: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.grad_fn = grad_fn
        ctx.scale = scale
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad_output * ctx.grad_fn(x, ctx.scale), None, None


def spike(x: torch.Tensor, surrogate: str = "triangle", scale: float | None = None) -> torch.Tensor:
    """Spike where ``x > 0`` (x = membrane minus threshold), with a surrogate gradient.

    Args:
        x: any shape, membrane potential minus threshold (threshold units).
        surrogate: registered surrogate name.
        scale: the surrogate's shape parameter; ``None`` uses its default.

    Returns:
        Tensor of 0.0/1.0 with the shape and dtype of ``x``.
    """
    s = get_surrogate(surrogate)
    return _SpikeFunction.apply(x, s.grad, s.default_scale if scale is None else float(scale))


class SpikeFn:
    """A picklable ``x -> spike(x)`` callable bound to one surrogate (snnTorch's ``spike_grad``)."""

    def __init__(self, surrogate: str = "triangle", scale: float | None = None) -> None:
        s = get_surrogate(surrogate)
        self.surrogate = surrogate
        self.grad = s.grad
        self.scale = s.default_scale if scale is None else float(scale)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return _SpikeFunction.apply(x, self.grad, self.scale)

    def __repr__(self) -> str:
        return f"SpikeFn({self.surrogate!r}, scale={self.scale})"
