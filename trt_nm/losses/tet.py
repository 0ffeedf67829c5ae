"""TET (Deng et al., ICLR 2022): per-timestep CE plus an MSE pull of every logit towards phi."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trt_nm.config import TETConfig
from trt_nm.losses.ce import per_timestep_ce
from trt_nm.losses.common import NamedParams, as_float, check_logits
from trt_nm.losses.registry import register_loss


def tet_loss(
    outputs: torch.Tensor,
    targets: torch.Tensor,
    named_parameters: NamedParams | None = None,
    *,
    lamb: float = 1e-3,
    phi: float = 1.0,
) -> torch.Tensor:
    """TET: ``(1-lamb) mean_t CE(O(t), y) + lamb MSE(O, phi)``.

    Args:
        outputs: per-timestep logits ``[T, B, C]``.
        targets: integer labels ``[B]``.
        named_parameters: ignored.
        lamb: weight of the MSE term, in [0, 1].
        phi: the MSE target (logit units).

    Returns:
        A scalar (float32, float64 for float64 logits).
    """
    check_logits(outputs, targets)
    cfg = TETConfig(lamb=lamb, phi=phi)
    out = as_float(outputs)
    loss = (1.0 - cfg.lamb) * per_timestep_ce(out, targets)
    if cfg.lamb:
        loss = loss + cfg.lamb * F.mse_loss(out, torch.full_like(out, cfg.phi))
    return loss


register_loss("tet", tet_loss, TETConfig)

__all__ = ["tet_loss"]
