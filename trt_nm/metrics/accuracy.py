"""Accuracy over timesteps: the prediction after t steps is the argmax of the mean of O(1..t).

The one place this arithmetic lives; every caller (trainer, simulator, early exit, Fisher
analysis) uses these functions, so each keeps exactly the same rounding:

* :func:`cumulative_sum` / :func:`cumulative_mean`: running sum / mean of the logits over t.
* :func:`correct_per_timestep`: correct predictions after t = 1..T steps, from raw logits.
* :func:`hits_per_timestep`: which samples are right after each step, from cumulative logits.
* :func:`correct_final`: correct predictions of the inference rule (mean over all T).
"""

from __future__ import annotations

import torch


def cumulative_sum(logits: torch.Tensor) -> torch.Tensor:
    """``[T, B, ...]`` -> ``[T, B, ...]``: entry t is the sum of the first t+1 outputs (logit units)."""
    return logits.cumsum(0)


def cumulative_mean(logits: torch.Tensor) -> torch.Tensor:
    """``[T, B, ...]`` -> ``[T, B, ...]``: entry t is the mean of the first t+1 outputs.

    Computed as :func:`cumulative_sum` divided by ``t+1`` (in ``logits``' dtype), the
    arithmetic of ``SimResult.cum_logits``, the early-exit rules and the Fisher analysis.
    """
    steps = torch.arange(1, logits.shape[0] + 1, device=logits.device, dtype=logits.dtype)
    return cumulative_sum(logits) / steps.view(-1, *([1] * (logits.dim() - 1)))


def correct_per_timestep(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Number of correct predictions after t = 1..T steps: ``[T]`` int64.

    Args:
        logits: per-timestep outputs ``[T, B, C]`` (any float dtype; summed in float32).
        targets: labels ``[B]``.
    """
    # argmax of the running sum == of the running mean (no division: no rounding)
    pred = cumulative_sum(logits.float()).argmax(-1)
    return (pred == targets.unsqueeze(0)).sum(1)


def hits_per_timestep(cum: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Which predictions are right after each step: ``[T, B]`` bool.

    Args:
        cum: cumulative logits ``[T, B, C]`` (:func:`cumulative_mean`).
        targets: labels ``[B]`` (moved to ``cum``'s device).
    """
    return cum.argmax(-1) == targets.to(cum.device).view(1, -1)


def correct_final(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Number of samples the inference rule (argmax of the mean over all T outputs, computed
    in float32) gets right: an int64 scalar.

    Args:
        logits: per-timestep outputs ``[T, B, C]``.
        targets: labels ``[B]``.
    """
    return (logits.float().mean(0).argmax(-1) == targets).sum()


__all__ = [
    "correct_final",
    "correct_per_timestep",
    "cumulative_mean",
    "cumulative_sum",
    "hits_per_timestep",
]
