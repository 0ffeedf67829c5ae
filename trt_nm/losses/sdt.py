"""SDT: cross-entropy of the time-averaged output (the standard direct training baseline)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trt_nm.losses.common import NamedParams, as_float, check_logits
from trt_nm.losses.registry import register_loss


def sdt_loss(
    outputs: torch.Tensor,
    targets: torch.Tensor,
    named_parameters: NamedParams | None = None,
) -> torch.Tensor:
    """SDT: ``CE(mean_t O(t), y)``; ``outputs [T, B, C]``, ``targets [B]`` -> scalar (nats).

    ``named_parameters`` is ignored.
    """
    check_logits(outputs, targets)
    return F.cross_entropy(as_float(outputs).mean(0), targets)


register_loss("sdt", sdt_loss)

__all__ = ["sdt_loss"]
