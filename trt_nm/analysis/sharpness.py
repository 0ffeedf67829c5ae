"""Flatness of the loss around a solution: top Hessian eigenvalue and filter-normalised slices.

Two measures, both of a scalar loss ``L(w)`` evaluated on a fixed set of training batches
with the model in eval mode (so ``L`` is a deterministic function of the weights):

* **Top Hessian eigenvalue** ``lambda_max``: power iteration on Hessian-vector products
  ``H v = d/dw (dL/dw . v)`` (Pearlmutter 1994; double backward, no Hessian is formed).
  It returns the eigenvalue of largest magnitude (the Rayleigh quotient ``v.Hv`` of the
  converged unit vector), in loss units per squared weight unit. Larger = sharper.
  Spiking nets differentiate through the surrogate, so this is the curvature of the
  surrogate-gradient loss that training actually sees.
* **Loss slices** (Li et al., "Visualizing the Loss Landscape of Neural Nets", NeurIPS 2018):
  ``L(w + a d1)`` and ``L(w + a d1 + b d2)`` along random Gaussian directions rescaled
  filter by filter to the norm of the corresponding filter of ``w`` (``d_i <- d_i ||w_i|| /
  ||d_i||``, a filter being one slice along dim 0 of a weight of dim >= 2); biases and
  BatchNorm parameters get a zero direction, as in the paper's ``ignore biasbn`` setting.
  With this normalisation a step of ``a = 1`` moves every filter by its own norm, so slices
  of different networks are comparable.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from trt_nm.atomic import atomic_write_bytes
from trt_nm.errors import ConfigError
from trt_nm.report.plots import save_figure

#: ``loss_terms()`` yields scalar tensors whose SUM is the loss (one per batch keeps memory low)
LossTerms = Callable[[], Iterable[torch.Tensor]]


def _dot(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> torch.Tensor:
    return sum((x.double() * y.double()).sum() for x, y in zip(a, b, strict=True))  # type: ignore[return-value]


def _norm(a: Sequence[torch.Tensor]) -> torch.Tensor:
    return _dot(a, a).sqrt()


def hessian_vector_product(
    loss_terms: LossTerms, params: Sequence[torch.Tensor], vec: Sequence[torch.Tensor]
) -> list[torch.Tensor]:
    """``H v`` for the Hessian ``H`` of ``sum(loss_terms())`` w.r.t. ``params``.

    Args:
        loss_terms: callable yielding scalar tensors that sum to the loss.
        params: tensors with ``requires_grad``; their ``.grad`` is not touched.
        vec: one tensor per parameter, same shapes.

    Returns:
        One tensor per parameter (same shapes and dtypes as ``params``).
    """
    out = [torch.zeros_like(p) for p in params]
    for loss in loss_terms():
        grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
        pairs = [(g, v) for g, v in zip(grads, vec, strict=True) if g is not None]
        if not pairs:
            continue
        gv = sum((g * v).sum() for g, v in pairs)
        hv = torch.autograd.grad(gv, params, allow_unused=True)
        for o, h in zip(out, hv, strict=True):
            if h is not None:
                o.add_(h.detach())
    return out


@dataclass(frozen=True)
class EigenResult:
    """Outcome of :func:`top_hessian_eigenvalue`.

    Attributes:
        value: eigenvalue of largest magnitude (loss units per squared weight unit).
        iterations: Hessian-vector products computed.
        converged: the relative change of the estimate fell below ``tol``.
        history: the estimate after each iteration.
    """

    value: float
    iterations: int
    converged: bool
    history: tuple[float, ...] = field(default=())


def top_hessian_eigenvalue(
    loss_terms: LossTerms,
    params: Sequence[torch.Tensor],
    *,
    iters: int = 20,
    tol: float = 1e-4,
    seed: int = 0,
    tick: Callable[[], Any] | None = None,
) -> EigenResult:
    """Power iteration ``v <- Hv / ||Hv||`` from a seeded Gaussian start (see module docstring).

    Stops after ``iters`` products or when ``|lambda_k - lambda_{k-1}| < tol * |lambda_k|``.
    ``tick()`` is called after each product (a progress bar's update).
    """
    if iters < 1:
        raise ConfigError(f"iters must be >= 1, got {iters}")
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ConfigError("no trainable parameters to take the Hessian of")
    g = torch.Generator(device="cpu")
    g.manual_seed(seed)
    v = [torch.randn(p.shape, generator=g, dtype=torch.float64).to(p) for p in params]
    n = _norm(v)
    v = [x / n.to(x.dtype) for x in v]
    value = 0.0
    history: list[float] = []
    converged = False
    for k in range(iters):
        hv = hessian_vector_product(loss_terms, params, v)
        if tick is not None:
            tick()
        new = float(_dot(v, hv))  # Rayleigh quotient, ||v|| = 1
        history.append(new)
        norm = _norm(hv)
        if not torch.isfinite(norm):
            raise ConfigError("Hessian-vector product is not finite; the loss is not twice differentiable here")
        if float(norm) == 0.0:
            value, converged = 0.0, True
            break
        v = [h / norm.to(h.dtype) for h in hv]
        if k > 0 and abs(new - value) < tol * max(abs(new), 1e-12):
            value, converged = new, True
            break
        value = new
    return EigenResult(value, len(history), converged, tuple(history))


# ---------------------------------------------------------------------- loss slices
def filter_normalized_direction(
    model: nn.Module, generator: torch.Generator, *, ignore_bias_bn: bool = True
) -> list[torch.Tensor]:
    """A random direction, one tensor per parameter of ``model``, filter-normalised (Li et al.).

    For a weight of dim >= 2, each filter ``d[i]`` (slice along dim 0) is rescaled to the norm
    of ``w[i]``; parameters of dim <= 1 (biases, BatchNorm) get zeros when ``ignore_bias_bn``,
    otherwise a copy of the weight's own values scaled like a single filter.
    """
    out = []
    for p in model.parameters():
        w = p.detach()
        d = torch.randn(w.shape, generator=generator, dtype=torch.float32).to(w)
        if w.dim() <= 1:
            if ignore_bias_bn:
                d = torch.zeros_like(w)
            else:
                d = d * (w.norm() / (d.norm() + 1e-10))
        else:
            wn = w.reshape(w.shape[0], -1).norm(dim=1)
            dn = d.reshape(d.shape[0], -1).norm(dim=1)
            d = d * (wn / (dn + 1e-10)).view(-1, *([1] * (w.dim() - 1)))
        out.append(d)
    return out


@contextlib.contextmanager
def _perturbed(model: nn.Module) -> Iterator[Callable[[Sequence[tuple[float, list[torch.Tensor]]]], None]]:
    """Yield ``set(combination)`` that sets ``w = w0 + sum c_k d_k``; restores ``w0`` on exit."""
    params = list(model.parameters())
    w0 = [p.detach().clone() for p in params]

    def set_weights(combo: Sequence[tuple[float, list[torch.Tensor]]]) -> None:
        with torch.no_grad():
            for i, p in enumerate(params):
                new = w0[i].clone()
                for c, d in combo:
                    new.add_(d[i], alpha=c)
                p.copy_(new)

    try:
        yield set_weights
    finally:
        with torch.no_grad():
            for p, w in zip(params, w0, strict=True):
                p.copy_(w)


def loss_slice_1d(
    model: nn.Module, loss_value: Callable[[], float], direction: list[torch.Tensor], alphas: Sequence[float]
) -> list[float]:
    """``[L(w + a d) for a in alphas]``; the weights are restored afterwards."""
    out = []
    with _perturbed(model) as set_weights:
        for a in alphas:
            set_weights([(float(a), direction)])
            out.append(float(loss_value()))
    return out


def loss_surface_2d(
    model: nn.Module,
    loss_value: Callable[[], float],
    d1: list[torch.Tensor],
    d2: list[torch.Tensor],
    alphas: Sequence[float],
    betas: Sequence[float],
) -> list[list[float]]:
    """``Z[j][i] = L(w + alphas[i] d1 + betas[j] d2)``; the weights are restored afterwards."""
    grid = []
    with _perturbed(model) as set_weights:
        for b in betas:
            row = []
            for a in alphas:
                set_weights([(float(a), d1), (float(b), d2)])
                row.append(float(loss_value()))
            grid.append(row)
    return grid


# ---------------------------------------------------------------------- models + data
def _batches_time_major(batches: Sequence[tuple[torch.Tensor, torch.Tensor]], device: torch.device):
    return [(x.to(device).transpose(0, 1), y.to(device)) for x, y in batches]


@dataclass(frozen=True)
class SharpnessResult:
    """Everything :func:`analyze_sharpness` measured (plain data, JSON-ready via ``to_dict``).

    ``slice_1d[i] = L(w + alphas[i] d1)``, ``surface_2d[j][i] = L(w + g[i] d1 + g[j] d2)`` with
    ``g = grid_axis``;
    ``loss`` is ``L(w)``; ``slice_rise`` is the mean rise ``L(w + a d1) - L(w)`` over the
    slice points with ``|a| <= 0.5`` (a scale-free flatness number: smaller is flatter).
    """

    loss_name: str
    samples: int
    loss: float
    eigenvalue: EigenResult
    alphas: tuple[float, ...] = ()
    slice_1d: tuple[float, ...] = ()
    surface_2d: tuple[tuple[float, ...], ...] = ()
    grid_axis: tuple[float, ...] = ()
    slice_rise: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "loss_name": self.loss_name,
            "samples": self.samples,
            "loss": self.loss,
            "top_eigenvalue": self.eigenvalue.value,
            "power_iterations": self.eigenvalue.iterations,
            "converged": self.eigenvalue.converged,
            "eigen_history": list(self.eigenvalue.history),
            "alphas": list(self.alphas),
            "slice_1d": list(self.slice_1d),
            "surface_2d": [list(r) for r in self.surface_2d],
            "grid_axis": list(self.grid_axis),
            "slice_rise": self.slice_rise,
        }


def analyze_sharpness(
    model: nn.Module,
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    loss_fn: Callable[..., torch.Tensor],
    *,
    loss_name: str = "sdt",
    device: str | torch.device = "cpu",
    iters: int = 20,
    tol: float = 1e-3,
    points: int = 21,
    grid: int = 0,
    radius: float = 1.0,
    seed: int = 0,
    progress: bool | None = False,
) -> SharpnessResult:
    """Top Hessian eigenvalue plus filter-normalised 1-D (and optionally 2-D) loss slices.

    Args:
        model: maps ``x [T, B, ...]`` to logits ``[T, B, C]``; put in eval mode and restored.
        batches: fixed ``(x [B, T, ...], y [B])`` batches (DataLoader layout) defining ``L``.
        loss_fn: ``loss_fn(logits [T, B, C], y [B], named_parameters) -> scalar`` (a
            :class:`trt_nm.losses.Loss`); ``L`` is its sample-weighted mean over the batches.
        iters, tol: power iteration budget and tolerance (0 iters skips nothing: minimum 1).
        points: points of the 1-D slice over ``[-radius, radius]`` (0 = no slice).
        grid: points per axis of the 2-D surface (0 = no surface).
        seed: seeds the power-iteration start and the random directions.
        progress: a progress bar on stderr over the loss evaluations (None: on a terminal
            only, as in training; False: none).
    """
    from trt_nm.analysis.fisher import progress_bar

    device = torch.device(device)
    data = _batches_time_major(batches, device)
    n = sum(int(y.numel()) for _, y in data)
    if n == 0:
        raise ConfigError("no samples to evaluate the loss on")
    was_training = model.training
    model.eval()
    bar = progress_bar(iters + 1 + points + grid * grid, "sharpness", progress)
    try:
        def terms() -> Iterator[torch.Tensor]:
            for x, y in data:
                yield loss_fn(model(x), y, model.named_parameters()) * (y.numel() / n)

        def value() -> float:
            with torch.no_grad():
                v = float(sum(float(t) for t in terms()))
            bar.update(1)
            return v

        params = [p for p in model.parameters() if p.requires_grad]
        eig = top_hessian_eigenvalue(terms, params, iters=iters, tol=tol, seed=seed, tick=lambda: bar.update(1))
        base = value()
        g = torch.Generator()
        g.manual_seed(seed + 1)
        alphas: tuple[float, ...] = ()
        s1: tuple[float, ...] = ()
        s2: tuple[tuple[float, ...], ...] = ()
        ga: tuple[float, ...] = ()
        rise = None
        if points > 0 or grid > 0:
            d1 = filter_normalized_direction(model, g)
            d2 = filter_normalized_direction(model, g)
            if points > 0:
                alphas = tuple(float(a) for a in torch.linspace(-radius, radius, points).tolist())
                s1 = tuple(loss_slice_1d(model, value, d1, alphas))
                near = [v - base for a, v in zip(alphas, s1, strict=True) if abs(a) <= 0.5 * radius and a != 0.0]
                rise = float(sum(near) / len(near)) if near else None
            if grid > 0:
                ga = tuple(float(a) for a in torch.linspace(-radius, radius, grid).tolist())
                s2 = tuple(tuple(r) for r in loss_surface_2d(model, value, d1, d2, ga, ga))
    finally:
        bar.close()
        model.train(was_training)
    return SharpnessResult(loss_name, n, base, eig, alphas, s1, s2, ga, rise)


def plot_sharpness(path: str | Path, result: SharpnessResult, title: str = "") -> Path:
    """PNG: the 1-D slice (left) and the 2-D surface as contours (right) where measured."""
    from matplotlib.figure import Figure

    has2 = bool(result.surface_2d)
    fig = Figure(figsize=(10 if has2 else 5.5, 4), dpi=100)
    axes = fig.subplots(1, 2 if has2 else 1)
    ax1 = axes[0] if has2 else axes
    if result.slice_1d:
        ax1.plot(result.alphas, result.slice_1d, marker=".")
    ax1.set_xlabel("alpha (filter-normalised direction)")
    ax1.set_ylabel(f"{result.loss_name} loss")
    ax1.set_title(f"1-D slice; top Hessian eigenvalue {result.eigenvalue.value:.4g}")
    if has2:
        z = np.asarray(result.surface_2d)
        cs = axes[1].contour(result.grid_axis, result.grid_axis, z, levels=15)
        axes[1].clabel(cs, fontsize=6)
        axes[1].set_xlabel("alpha (d1)")
        axes[1].set_ylabel("beta (d2)")
        axes[1].set_title("2-D loss surface")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def write_json(path: str | Path, payload: dict[str, Any]) -> Path:
    """Atomic JSON write."""
    text = json.dumps(payload, indent=2)
    return atomic_write_bytes(path, lambda fh: fh.write(text.encode()))


__all__ = [
    "EigenResult",
    "SharpnessResult",
    "analyze_sharpness",
    "filter_normalized_direction",
    "hessian_vector_product",
    "loss_slice_1d",
    "loss_surface_2d",
    "plot_sharpness",
    "top_hessian_eigenvalue",
    "write_json",
]
