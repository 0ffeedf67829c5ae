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

from trt_nm.config import TETConfig, TRTConfig
from trt_nm.errors import ConfigError, unknown_name

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


# CPU: elements per block. Every block runs all T terms while its few temporaries stay in
# cache (reused work buffers), so the regularizer costs about two passes over memory instead of
# ~40. Smaller blocks pay ~5 us of dispatch per op; 128K-512K measured best on a 2-core EPYC.
_CPU_BLOCK = 1 << 18
# Below this c_t, 1/(1+c a) is evaluated directly rather than as (1/c)/(1/c + a) (keeps 1/c finite).
_TINY_C = 1e-8


class _RegCoefs:
    """Constants of ``k * sum_w w^2 F(|w| + eps)`` with ``F(a) = sum_t 1/(1 + c_t a)``, ``k = lamb/T``.

    Terms with ``c_t = 0`` are the constant ``n0``. Every other term ``1/(1 + c a)`` is written
    ``s * r`` with ``r = 1/(|w| * m + b)``, and its ``a``-derivative ``-c/(1 + c a)^2`` as
    ``d * r^2``: for ``c >= _TINY_C`` ``m = 1, b = eps + 1/c, s = 1/c, d = -1/c`` (one fewer pass),
    else ``m = c, b = 1 + c eps, s = 1, d = -c``.
    """

    def __init__(self, T: int, lamb: float, decay: float, eps: float) -> None:
        self.k = lamb / T
        self.n0 = 0
        self.terms: list[tuple[float, float, float, float]] = []  # (m, b, s, d)
        for t in range(T):
            c = math.expm1(decay * t)  # c_t for t = 1..T (0-based t-1)
            if c == 0.0:
                self.n0 += 1
            elif c >= _TINY_C:
                self.terms.append((1.0, eps + 1.0 / c, 1.0 / c, -1.0 / c))
            else:
                self.terms.append((c, 1.0 + c * eps, 1.0, -c))


def _reg_block(
    w: torch.Tensor, g: torch.Tensor | None, co: _RegCoefs, ws: list[torch.Tensor]
) -> torch.Tensor:
    """``sum w^2 F(|w|+eps)`` of the 1-D block ``w``; if ``g`` is given, write ``k d/dw`` into it.

    ``d/dw [w^2 F(|w|+eps)] = w (2 F + |w| F'(|w|+eps))`` (the ``|w|`` term is the gradient
    through ``|w|``). ``ws``: four work buffers at least as long as ``w`` (reused across blocks,
    so that they stay in cache and are not page-faulted in again).
    """
    n = w.numel()
    aw, f, fp, r = (b[:n] for b in ws)
    torch.abs(w, out=aw)
    if not co.terms:  # every c_t == 0: F = T, F' = 0
        if g is not None:
            torch.mul(w, 2.0 * co.k * co.n0, out=g)
        return torch.dot(w, w) * co.n0
    # f and fp hold F and F' in units of the first term's s1 and d1: no scaling pass.
    m1, b1, s1, d1 = co.terms[0]
    (torch.add(aw, b1, out=f) if m1 == 1.0 else torch.mul(aw, m1, out=f).add_(b1)).reciprocal_()
    if g is not None:
        torch.mul(f, f, out=fp)
    for m, b, s, d in co.terms[1:]:
        (torch.add(aw, b, out=r) if m == 1.0 else torch.mul(aw, m, out=r).add_(b)).reciprocal_()
        if g is not None:
            fp.addcmul_(r, r, value=d / d1)
        f.add_(r, alpha=s / s1)
    if co.n0:
        f.add_(co.n0 / s1)
    value = torch.dot(torch.mul(w, f, out=r), w) * s1
    if g is not None:
        # k w (2 F + |w| F') = (2 k s1) w (f + d1 / (2 s1) |w| fp)
        torch.mul(torch.addcmul(f, fp, aw, value=d1 / (2.0 * s1), out=r), w, out=g).mul_(2.0 * co.k * s1)
    return value


def _reg_foreach(
    ws: list[torch.Tensor], want_grad: bool, co: _RegCoefs
) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
    """:func:`_reg_block` over whole tensors with ``torch._foreach`` ops (few kernel launches on GPU)."""
    fe = torch
    aw = fe._foreach_abs(ws)
    f: list[torch.Tensor] | None = None
    fp: list[torch.Tensor] | None = None
    for m, b, s, d in co.terms:
        r = fe._foreach_add(aw if m == 1.0 else fe._foreach_mul(aw, m), b)
        fe._foreach_reciprocal_(r)
        if want_grad:
            if fp is None:
                fp = fe._foreach_mul(r, r)
                fe._foreach_mul_(fp, d * co.k)
            else:
                fe._foreach_addcmul_(fp, r, r, value=d * co.k)
        if f is None:
            f = r
            if s != 1.0:
                fe._foreach_mul_(f, s)
        else:
            fe._foreach_add_(f, r, alpha=s)
    if f is None:
        f = [torch.full_like(w, float(co.n0)) for w in ws]
        fp = fe._foreach_mul(ws, 0.0) if want_grad else None
    elif co.n0:
        fe._foreach_add_(f, float(co.n0))
    # sum w^2 F = sum over tensors of ||w sqrt(F)||^2 (F > 0), one fused reduction per list.
    norms = fe._foreach_norm(fe._foreach_mul(fe._foreach_sqrt(f), ws))
    value = torch.stack(norms).square().sum()
    if not want_grad or fp is None:
        return value, None
    fe._foreach_mul_(fp, aw)
    fe._foreach_add_(fp, f, alpha=2.0 * co.k)
    fe._foreach_mul_(fp, ws)
    return value, fp


def _use_foreach(device: torch.device) -> bool:
    """Whole-tensor ``_foreach`` ops off CPU (launch count matters), cache-sized blocks on CPU."""
    return device.type != "cpu"


def _reg_value_and_grads(
    params: tuple[torch.Tensor, ...], co: _RegCoefs, want_grad: bool, out_dtype: torch.dtype
) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
    """``k sum_w w^2 F`` as an ``out_dtype`` scalar and, if asked, each parameter's gradient."""
    ws = [_f32(p.detach()) for p in params]
    if _use_foreach(ws[0].device):
        value, grads = _reg_foreach(ws, want_grad, co)
        if grads is not None:
            grads = [g.to(p.dtype) for g, p in zip(grads, params)]
        return (value * co.k).to(out_dtype), grads
    total = torch.zeros((), dtype=torch.float64)
    grads = [] if want_grad else None
    blk = min(_CPU_BLOCK, max(w.numel() for w in ws))
    work = {dt: [torch.empty(blk, dtype=dt) for _ in range(4)] for dt in {w.dtype for w in ws}}
    for w in ws:
        flat = w.reshape(-1)
        gw = None
        if grads is not None:
            grads.append(torch.empty(w.shape, dtype=w.dtype))
            gw = grads[-1].view(-1)
        for i in range(0, flat.numel(), blk):
            j = i + blk
            total += _reg_block(flat[i:j], None if gw is None else gw[i:j], co, work[w.dtype])
    return (total * co.k).to(out_dtype), grads


class _TRTRegularizer(torch.autograd.Function):
    """Exact value and analytic gradient in one blockwise pass; the gradient is kept for backward."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, co: _RegCoefs, out_dtype: torch.dtype, *params: torch.Tensor
    ) -> torch.Tensor:
        want_grad = any(ctx.needs_input_grad[2:])
        value, grads = _reg_value_and_grads(params, co, want_grad, out_dtype)
        ctx.co = co  # type: ignore[attr-defined]
        ctx.grads = grads  # type: ignore[attr-defined]
        ctx.save_for_backward(*params)
        return value

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, gout: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        params: tuple[torch.Tensor, ...] = ctx.saved_tensors  # type: ignore[attr-defined]
        co: _RegCoefs = ctx.co  # type: ignore[attr-defined]
        if torch.is_grad_enabled():  # create_graph=True: differentiable gradients, the slow way
            with torch.enable_grad():
                value = _reg_autograd(params, co)
                grads = torch.autograd.grad(value, params, create_graph=True)
            return (None, None, *(g * gout.to(g.dtype) for g in grads))
        saved: list[torch.Tensor] | None = ctx.grads  # type: ignore[attr-defined]
        # Hand the buffers over (autograd may then reuse them as .grad without a copy); a second
        # backward through a retained graph recomputes them.
        ctx.grads = None  # type: ignore[attr-defined]
        if saved is None:
            saved = _reg_value_and_grads(params, co, True, gout.dtype)[1]
            assert saved is not None
        one = gout.device.type == "cpu" and gout.item() == 1.0  # no sync on GPU: always scale
        return (
            None,
            None,
            *(
                None if not need else (g if one else g * gout.to(g.dtype))
                for g, need in zip(saved, ctx.needs_input_grad[2:])  # type: ignore[attr-defined]
            ),
        )


def _reg_autograd(params: tuple[torch.Tensor, ...], co: _RegCoefs) -> torch.Tensor:
    """``k sum_w w^2 F(|w|+eps)`` with plain differentiable ops (used for double backward)."""
    total = torch.zeros((), dtype=torch.float64, device=params[0].device)
    for p in params:
        w = _f32(p)
        aw = w.abs()
        f = torch.full_like(w, float(co.n0))
        for m, b, s, _ in co.terms:
            f = f + s / (aw * m + b)
        total = total + (w * w * f).sum()
    return total * co.k


def trt_regularizer(
    params: list[torch.Tensor], T: int, *, lamb: float = 1e-5, decay: float = 0.5, eps: float = 1e-5
) -> torch.Tensor:
    """``1/T * sum_{t=1..T} r(t)`` in one pass over the weights (fp32 scalar; fp64 if a weight is).

    Exact value and gradient (including the gradient through ``|w|``), computed blockwise
    without concatenating the weights: on CPU in L2-sized blocks, elsewhere with ``_foreach``
    ops. The gradient is computed in the forward pass and kept (one copy of the weights) until
    backward.

    Args:
        params: tensors to regularize (see :func:`regularized_parameters`).
        T: number of timesteps.
        lamb, decay, eps: the paper's lambda, delta and epsilon.
    """
    if not params or lamb == 0.0:
        dev = params[0].device if params else None
        return torch.zeros((), device=dev)
    out_dtype = torch.float64 if any(p.dtype == torch.float64 for p in params) else torch.float32
    co = _RegCoefs(T, lamb, decay, eps)
    return _TRTRegularizer.apply(co, out_dtype, *params)


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
