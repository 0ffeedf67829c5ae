"""Straight-through estimators, written once for every quantizer that trains through rounding.

``round_ste(x)`` and ``floor_ste(x)`` are exactly ``torch.round(x)`` / ``torch.floor(x)`` in the
forward pass (integer values, no float residue) with the identity gradient;
``straight_through(x, q)`` is ``q`` forward with the gradient of ``x`` (``x + (q - x).detach()``,
for a ``q`` computed from ``x`` by any non-differentiable rule).
"""

from __future__ import annotations

from typing import Any

import torch


class _RoundSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad


class _FloorSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return torch.floor(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """``round(x)`` (half to even) with the identity gradient; same shape as ``x``."""
    return _RoundSTE.apply(x)


def floor_ste(x: torch.Tensor) -> torch.Tensor:
    """``floor(x)`` with the identity gradient; same shape as ``x``."""
    return _FloorSTE.apply(x)


def straight_through(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``q`` in the forward pass, the gradient of ``x`` in the backward pass."""
    return x + (q - x).detach()
