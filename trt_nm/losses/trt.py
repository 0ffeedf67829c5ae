"""The TRT loss (Temporal Regularization Training, arXiv 2506.19256)::

    L = 1/T sum_t [ (1-eta) CE(O(t), y) + eta MSE(O(t), onehot(y)) + r(t) ]

with the temporal weight regularizer ``r(t)`` of :mod:`trt_nm.losses.regularizer`, summed over
t in one pass over the weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trt_nm.config import TRTConfig
from trt_nm.losses.ce import per_timestep_ce
from trt_nm.losses.common import NamedParams, as_float, check_logits
from trt_nm.losses.registry import register_loss
from trt_nm.losses.regularizer import regularized_parameters, trt_regularizer


def trt_loss(
    outputs: torch.Tensor,
    targets: torch.Tensor,
    named_parameters: NamedParams | None = None,
    *,
    lamb: float = 1e-5,
    decay: float = 0.5,
    eps: float = 1e-5,
    eta: float = 0.05,
) -> torch.Tensor:
    """The TRT loss (module docstring).

    Args:
        outputs: per-timestep logits ``[T, B, C]``.
        targets: integer labels ``[B]``.
        named_parameters: ``model.named_parameters()``; every trainable non-bias one is
            regularized (None: no regularizer).
        lamb, decay, eps: the regularizer's lambda, delta and epsilon.
        eta: weight of the MSE term, in [0, 1] (MSE is torch's mean over B*C, CE the mean over B).

    Returns:
        A scalar (float32, float64 for float64 logits or weights).
    """
    check_logits(outputs, targets)
    cfg = TRTConfig(lamb=lamb, decay=decay, eps=eps, eta=eta)
    T, B, C = outputs.shape
    out = as_float(outputs)
    loss = (1.0 - cfg.eta) * per_timestep_ce(out, targets)
    if cfg.eta:
        onehot = F.one_hot(targets, C).to(out.dtype)
        # mean over t of MSE(O(t), onehot) with MSE the mean over B*C == mean over all T*B*C
        loss = loss + cfg.eta * F.mse_loss(out, onehot.expand_as(out))
    if cfg.lamb and named_parameters is not None:
        params = regularized_parameters(named_parameters)
        reg = trt_regularizer(params, T, lamb=cfg.lamb, decay=cfg.decay, eps=cfg.eps)
        loss = loss + reg.to(loss.device)
    return loss


register_loss("trt", trt_loss, TRTConfig)

__all__ = ["trt_loss"]
