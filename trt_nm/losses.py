"""TRT, TET and SDT losses with one call shape, plus module wrappers with frozen configs.

All losses take ``outputs`` = per-timestep logits ``[T, B, C]``, integer ``targets [B]`` and
the model's ``named_parameters()`` (ignored by losses without a weight term), and return a
scalar.

TRT (Temporal Regularization Training, arXiv 2506.19256)::

    L = 1/T sum_t [ (1-eta) CE(O(t), y) + eta MSE(O(t), onehot(y)) + r(t) ]
    r(t) = sum_w lamb * w^2 / (1 + (exp(decay (t-1)) - 1) (|w| + eps))

over every element of every non-bias parameter (conv, linear and BatchNorm weights). ``r``
does not depend on the data, so ``1/T sum_t r(t)`` is computed in one pass over the
weights as ``lamb/T * sum_w w^2 * F(|w| + eps)`` with the per-element factor
``F(a) = sum_t 1 / (1 + c_t a)``, ``c_t = exp(decay (t-1)) - 1``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from .config import TETConfig, TRTConfig
from .errors import ConfigError, unknown_name

NamedParams = Iterable[tuple[str, torch.Tensor]]


def _f32(x: torch.Tensor) -> torch.Tensor:
    """Upcast half/bfloat16 to float32 (loss maths); float64 stays float64."""
    return x if x.dtype == torch.float64 else x.float()


def _check(outputs: torch.Tensor, targets: torch.Tensor) -> None:
    if outputs.dim() != 3:
        raise ConfigError(f"outputs must be per-timestep logits [T, B, C], got {list(outputs.shape)}")
    if targets.shape != outputs.shape[1:2]:
        raise ConfigError(
            f"targets must be [B] = [{outputs.shape[1]}], got {list(targets.shape)}"
        )


def regularized_parameters(named_parameters: NamedParams) -> list[torch.Tensor]:
    """The parameters TRT regularizes: every trainable one whose name is not a bias."""
    return [
        p for n, p in named_parameters if p.requires_grad and not n.split(".")[-1].startswith("bias")
    ]


def trt_regularizer(
    params: list[torch.Tensor], T: int, *, lamb: float = 1e-5, decay: float = 0.5, eps: float = 1e-5
) -> torch.Tensor:
    """``1/T * sum_{t=1..T} r(t)`` in one pass over the weights (fp32 scalar).

    Args:
        params: tensors to regularize (see :func:`regularized_parameters`).
        T: number of timesteps.
        lamb, decay, eps: the paper's lambda, delta and epsilon.
    """
    if not params or lamb == 0.0:
        dev = params[0].device if params else None
        return torch.zeros((), device=dev)
    c = [math.expm1(decay * t) for t in range(T)]  # c_t for t = 1..T (0-based t-1)
    w = _f32(torch.cat([p.reshape(-1) for p in params]))
    a = w.abs() + eps
    factor = torch.ones_like(a) if c[0] == 0.0 else 1.0 / (1.0 + c[0] * a)
    for ct in c[1:]:
        factor = factor + 1.0 / (1.0 + ct * a)
    return (lamb / T) * (w * w * factor).sum()


def per_timestep_ce(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``1/T sum_t CE(O(t), y)`` (CE is the mean over the batch)."""
    T, B, C = outputs.shape
    return F.cross_entropy(_f32(outputs.reshape(T * B, C)), targets.repeat(T))


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
    """The TRT loss (module docstring). ``outputs [T, B, C]``, ``targets [B]`` -> scalar."""
    _check(outputs, targets)
    cfg = TRTConfig(lamb=lamb, decay=decay, eps=eps, eta=eta)
    T, B, C = outputs.shape
    out = _f32(outputs)
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


def tet_loss(
    outputs: torch.Tensor,
    targets: torch.Tensor,
    named_parameters: NamedParams | None = None,
    *,
    lamb: float = 1e-3,
    phi: float = 1.0,
) -> torch.Tensor:
    """TET (Deng et al., ICLR 2022): ``(1-lamb) mean_t CE(O(t), y) + lamb MSE(O, phi)``."""
    _check(outputs, targets)
    cfg = TETConfig(lamb=lamb, phi=phi)
    out = _f32(outputs)
    loss = (1.0 - cfg.lamb) * per_timestep_ce(out, targets)
    if cfg.lamb:
        loss = loss + cfg.lamb * F.mse_loss(out, torch.full_like(out, cfg.phi))
    return loss


def sdt_loss(
    outputs: torch.Tensor,
    targets: torch.Tensor,
    named_parameters: NamedParams | None = None,
) -> torch.Tensor:
    """SDT: cross-entropy of the time-averaged output, ``CE(mean_t O(t), y)``."""
    _check(outputs, targets)
    return F.cross_entropy(_f32(outputs).mean(0), targets)


def ce_loss(
    outputs: torch.Tensor,
    targets: torch.Tensor,
    named_parameters: NamedParams | None = None,
) -> torch.Tensor:
    """Per-timestep cross-entropy alone, ``1/T sum_t CE(O(t), y)`` (TRT with lamb=eta=0)."""
    _check(outputs, targets)
    return per_timestep_ce(outputs, targets)


_LOSSES = {"trt": trt_loss, "tet": tet_loss, "sdt": sdt_loss, "ce": ce_loss}
_CONFIGS: dict[str, type | None] = {"trt": TRTConfig, "tet": TETConfig, "sdt": None, "ce": None}


def list_losses() -> list[str]:
    """Registered loss names."""
    return sorted(_LOSSES)


class Loss(nn.Module):
    """A loss bound to a frozen config: ``Loss("trt", lamb=5e-5)(outputs, targets, named_params)``."""

    def __init__(self, name: str, **kwargs: float) -> None:
        super().__init__()
        if name not in _LOSSES:
            raise unknown_name("loss", name, list(_LOSSES))
        cfg_cls = _CONFIGS[name]
        if cfg_cls is None:
            if kwargs:
                raise ConfigError(f"loss {name!r} takes no hyperparameters, got {sorted(kwargs)}")
            self.config = None
        else:
            try:
                self.config = cfg_cls(**kwargs)
            except TypeError as exc:
                raise ConfigError(f"bad hyperparameters for loss {name!r}: {exc}") from None
        self.name = name
        self._fn = _LOSSES[name]

    def forward(
        self, outputs: torch.Tensor, targets: torch.Tensor, named_parameters: NamedParams | None = None
    ) -> torch.Tensor:
        kw = {} if self.config is None else vars(self.config)
        return self._fn(outputs, targets, named_parameters, **kw)

    def extra_repr(self) -> str:
        return f"{self.name}, {self.config}"


def TRTLoss(**kwargs: float) -> Loss:
    """Module wrapper for :func:`trt_loss`."""
    return Loss("trt", **kwargs)


def TETLoss(**kwargs: float) -> Loss:
    """Module wrapper for :func:`tet_loss`."""
    return Loss("tet", **kwargs)


def SDTLoss() -> Loss:
    """Module wrapper for :func:`sdt_loss`."""
    return Loss("sdt")
