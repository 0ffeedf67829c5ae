"""Accuracy over timesteps: the prediction after t steps is the argmax of the mean of O(1..t)."""

from __future__ import annotations

import torch


def cumulative_mean(logits: torch.Tensor) -> torch.Tensor:
    """``[T, B, C]`` -> ``[T, B, C]`` where entry t is the mean of the first t+1 outputs."""
    steps = torch.arange(1, logits.shape[0] + 1, device=logits.device, dtype=logits.dtype)
    return logits.cumsum(0) / steps.view(-1, *([1] * (logits.dim() - 1)))


def correct_per_timestep(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Number of correct predictions after t = 1..T steps: ``[T]`` int64.

    Args:
        logits: per-timestep outputs ``[T, B, C]``.
        targets: labels ``[B]``.
    """
    pred = logits.float().cumsum(0).argmax(-1)  # argmax of the running sum == of the running mean
    return (pred == targets.unsqueeze(0)).sum(1)
