"""Per-timestep cross-entropy: the data term every temporal loss shares, and the ``ce`` loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trt_nm.losses.common import NamedParams, as_float, check_logits
from trt_nm.losses.registry import register_loss


def per_timestep_ce(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``1/T sum_t CE(O(t), y)`` (CE is the mean over the batch; nats).

    Args:
        outputs: per-timestep logits ``[T, B, C]``.
        targets: integer labels ``[B]``.
    """
    T, B, C = outputs.shape
    return F.cross_entropy(as_float(outputs.reshape(T * B, C)), targets.repeat(T))


def ce_loss(
    outputs: torch.Tensor,
    targets: torch.Tensor,
    named_parameters: NamedParams | None = None,
) -> torch.Tensor:
    """Per-timestep cross-entropy alone, ``1/T sum_t CE(O(t), y)`` (TRT with lamb=eta=0).

    ``outputs [T, B, C]``, ``targets [B]`` -> scalar (nats); ``named_parameters`` is ignored.
    """
    check_logits(outputs, targets)
    return per_timestep_ce(outputs, targets)


register_loss("ce", ce_loss)

__all__ = ["ce_loss", "per_timestep_ce"]
