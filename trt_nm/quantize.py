"""Quantization to a neuromorphic target's bit widths: post-training (graph or model) and QAT.

Scheme (symmetric, per layer): for a weighted layer feeding neurons, with ``b`` weight bits,
``qmax = 2**(b-1) - 1`` and scale ``s = max|W| / qmax`` (weights AFTER BatchNorm folding)::

    W_int = clip(round(W / s), -qmax, qmax)        # what the chip stores
    bias_int = round(bias / s)                     # in membrane units of the integer domain
    threshold_int = threshold / s                  # co-scaled: v_int = v / s, spikes unchanged

Dividing a neuron's input AND its threshold by the same ``s`` leaves its spikes exactly
unchanged (the LIF is linear below threshold), so the only change is the rounding of W (and
of the threshold when the chip's threshold register is integer: ``threshold_bits``). Several
weighted layers feeding one neuron (residual sums) share the largest of their scales.

Two graph representations: ``mode="fake"`` keeps float semantics (``W = W_int * s``, threshold
unchanged -- what the simulator compares with the float graph); ``mode="integer"`` stores
``W_int``, ``bias_int`` and ``threshold_int`` (what a chip toolchain loads). Both produce the
same spikes up to float rounding.

Quantization-aware training: :func:`add_qat` (used by
:class:`trt_nm.training.qat.QATCallback`, ``TrainConfig.qat_target``) registers a
``torch.nn.utils.parametrize`` fake-quantizer on every Conv/Linear weight. For a layer followed
by BatchNorm it quantizes the FOLDED weight ``W * gamma/sqrt(running_var + eps)`` and divides
the scale back out, so after training the folded weights land exactly on the integer grid and
post-training quantization of the exported graph changes nothing. Rounding uses the
straight-through estimator. The saved ``state_dict`` keeps plain parameter names (raw weights),
so it loads into a model without parametrizations.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from trt_nm.errors import ConfigError
from trt_nm.models.bn_fold import weight_bn_pairs
from trt_nm.nir.nodes import kinds_where
from trt_nm.ste import straight_through

#: node kinds whose weights are quantized, the neurons whose thresholds are co-scaled with
#: them, and the stateless nodes between the two (all from the node table)
_WEIGHTED = kinds_where(quantize="weights")
_NEURONS = kinds_where(quantize="threshold")
_RELAYS = kinds_where(relay=True)


def qmax(bits: int) -> int:
    """Largest magnitude of a signed ``bits``-bit integer in a symmetric range."""
    if int(bits) != bits or bits < 2 or bits > 32:
        raise ConfigError(f"quantization bits must be an integer in [2, 32], got {bits}")
    return 2 ** (int(bits) - 1) - 1


def scale_for(w: np.ndarray | torch.Tensor, bits: int) -> float:
    """Per-layer symmetric scale ``max|w| / qmax(bits)`` (1.0 for an all-zero layer)."""
    m = float(np.max(np.abs(np.asarray(w)))) if not isinstance(w, torch.Tensor) else float(w.detach().abs().max())
    return m / qmax(bits) if m > 0 else 1.0


@dataclass
class LayerQuant:
    """What quantization did to one weighted layer.

    Attributes:
        name: weighted node name.
        bits: weight bits.
        scale: per-layer scale ``s`` (float units per integer step).
        max_abs_error: largest ``|W - W_int*s|`` (float units).
        neuron: the neuron node it feeds (None for the readout).
        threshold_int: the neuron's co-scaled threshold ``threshold / s`` (after rounding when
            ``threshold_bits`` is set), None for the readout.
    """

    name: str
    bits: int
    scale: float
    max_abs_error: float
    neuron: str | None = None
    threshold_int: float | None = None


@dataclass
class QuantResult:
    """The quantized graph and the per-layer report."""

    graph: Any
    layers: list[LayerQuant] = field(default_factory=list)

    def lines(self) -> list[str]:
        """One report line per quantized layer."""
        out = []
        for q in self.layers:
            thr = "" if q.threshold_int is None else f", threshold -> {q.threshold_int:g} ({q.neuron})"
            out.append(f"  {q.name}: {q.bits}-bit, scale {q.scale:.3g}, max |error| {q.max_abs_error:.3g}{thr}")
        return out


def _feeds(graph: Any) -> dict[str, str | None]:
    """weighted node -> the neuron node it feeds through stateless nodes (None: readout)."""
    succ: dict[str, list[str]] = {}
    for a, b in graph.edges:
        succ.setdefault(a, []).append(b)
    out: dict[str, str | None] = {}
    for name, node in graph.nodes.items():
        if type(node).__name__ not in _WEIGHTED:
            continue
        target = None
        stack = list(succ.get(name, []))
        while stack:
            s = stack.pop()
            t = type(graph.nodes[s]).__name__
            if t in _NEURONS:
                target = s
                break
            if t in _RELAYS:
                stack.extend(succ.get(s, []))
        out[name] = target
    return out


def quantize_graph(
    graph: Any,
    weight_bits: int,
    *,
    threshold_bits: int | None = None,
    mode: str = "fake",
) -> QuantResult:
    """Post-training quantization of a NIR graph (BatchNorm already folded, as ``to_nir`` does).

    Args:
        graph: ``nir.NIRGraph``; not modified.
        weight_bits: signed weight width (e.g. 8).
        threshold_bits: width of an integer threshold register; when set, ``threshold / s`` is
            rounded to an integer and clipped to its range (None: kept exact).
        mode: ``"fake"`` (float values on the grid, same units as the input graph) or
            ``"integer"`` (integer weights/biases, thresholds in integer units).

    Returns:
        :class:`QuantResult` with the new graph (``metadata["quant_weight_bits"]`` and
        ``metadata["quant_mode"]`` set).
    """
    import nir  # noqa: F401  (the graph is a nir.NIRGraph; fail early if nir is missing)

    if mode not in ("fake", "integer"):
        raise ConfigError(f"unknown quantization mode {mode!r}; valid: fake, integer")
    q = qmax(weight_bits)
    nodes = copy.deepcopy(dict(graph.nodes))
    feeds = _feeds(graph)
    scales = {n: scale_for(nodes[n].weight, weight_bits) for n in feeds}
    # weighted layers feeding the same neuron share the largest scale
    by_neuron: dict[str, list[str]] = {}
    for n, tgt in feeds.items():
        if tgt is not None:
            by_neuron.setdefault(tgt, []).append(n)
    neuron_scale: dict[str, float] = {}
    for tgt, members in by_neuron.items():
        s = max(scales[m] for m in members)
        for m in members:
            scales[m] = s
        neuron_scale[tgt] = s
    if mode == "integer":
        preds: dict[str, list[str]] = {}
        for a, b in graph.edges:
            preds.setdefault(b, []).append(a)
        for tgt in by_neuron:
            if any(p not in feeds for p in preds.get(tgt, [])):
                raise ConfigError(
                    f"integer quantization: neuron {tgt!r} has an unweighted input edge (identity "
                    "residual) whose spikes cannot be co-scaled; use mode='fake'"
                )
    report: list[LayerQuant] = []
    for n, tgt in feeds.items():
        node = nodes[n]
        s = scales[n]
        w = np.asarray(node.weight, dtype=np.float64)
        w_int = np.clip(np.round(w / s), -q, q)
        err = float(np.max(np.abs(w - w_int * s))) if w.size else 0.0
        node.weight = (w_int if mode == "integer" else w_int * s).astype(np.float32)
        if getattr(node, "bias", None) is not None and type(node).__name__ != "Linear":
            b_int = np.round(np.asarray(node.bias, dtype=np.float64) / s)
            node.bias = (b_int if mode == "integer" else b_int * s).astype(np.float32)
        report.append(LayerQuant(n, int(weight_bits), s, err, tgt))
    for tgt, s in neuron_scale.items():
        node = nodes[tgt]
        thr = np.asarray(node.v_threshold, dtype=np.float64)
        thr_int = thr / s
        if threshold_bits is not None:
            thr_int = np.clip(np.round(thr_int), 1, qmax(threshold_bits))
        node.v_threshold = thr_int if mode == "integer" else thr_int * s
        if mode == "integer" and getattr(node, "v_reset", None) is not None:
            node.v_reset = np.asarray(node.v_reset, dtype=np.float64) / s
        for r in report:
            if r.neuron == tgt:
                r.threshold_int = float(np.max(thr_int))
    meta = dict(getattr(graph, "metadata", None) or {})
    meta.update({"quant_weight_bits": int(weight_bits), "quant_mode": mode})
    if threshold_bits is not None:
        meta["quant_threshold_bits"] = int(threshold_bits)
    new = type(graph)(nodes=nodes, edges=list(graph.edges), metadata=meta)
    return QuantResult(new, report)


# --------------------------------------------------------------------------- model level


def _bn_gain(bn: nn.Module | None, like: torch.Tensor) -> torch.Tensor:
    """Per-output-channel BN gain ``gamma / sqrt(running_var + eps)`` shaped to broadcast."""
    shape = (-1,) + (1,) * (like.dim() - 1)
    if bn is None:
        return torch.ones(like.shape[0], dtype=like.dtype, device=like.device).reshape(shape)
    g = bn.weight.detach() if bn.weight is not None else torch.ones_like(bn.running_var)
    g = g / torch.sqrt(bn.running_var.detach() + bn.eps)
    return g.to(like.dtype).reshape(shape)


def fake_quantize_folded(w: torch.Tensor, bn: nn.Module | None, bits: int) -> torch.Tensor:
    """Fake-quantize ``w`` so that ``w * bn_gain`` lies on a per-layer ``bits``-bit grid.

    Straight-through: the forward value is quantized, the gradient w.r.t. ``w`` is identity.
    ``w``: weight ``[C_out, ...]``; returns a tensor of the same shape.
    """
    g = _bn_gain(bn, w)
    g_safe = torch.where(g == 0, torch.ones_like(g), g)
    folded = w * g_safe
    q = qmax(bits)
    s = folded.detach().abs().max() / q
    s = torch.where(s > 0, s, torch.ones_like(s))
    x = folded / s
    xq = torch.clamp(straight_through(x, torch.round(x)), -q, q)
    return xq * s / g_safe


class _FakeQuant(nn.Module):
    """Parametrization ``W -> fake_quantize_folded(W, bn, bits)``; holds BN by reference."""

    def __init__(self, bits: int, bn: nn.Module | None) -> None:
        super().__init__()
        self.bits = int(bits)
        self._bn = (bn,)  # a tuple, so the BN is not registered as a submodule

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return fake_quantize_folded(w, self._bn[0], self.bits)


@torch.no_grad()
def quantize_model(model: nn.Module, bits: int) -> nn.Module:
    """Post-training fake quantization of a model's weights (a copy; the model is unchanged).

    Each Conv/Linear weight is replaced by the value whose BN-folded version lies on a
    per-layer ``bits``-bit grid (the same grid as :func:`quantize_graph` on the exported graph,
    biases excepted). Evaluate the copy in ``eval()`` mode.
    """
    qm = copy.deepcopy(model)
    for mod, bn in weight_bn_pairs(qm):
        mod.weight.copy_(fake_quantize_folded(mod.weight, bn, bits))
    return qm


def _state_dict_plain_names(module, state_dict, prefix, local_metadata) -> None:
    """``X.parametrizations.weight.original`` -> ``X.weight`` (raw weights, plain model keys)."""
    for key in [k for k in state_dict if k.startswith(prefix) and ".parametrizations." in k]:
        if key.endswith(".original"):
            head, _, rest = key.partition(".parametrizations.")
            state_dict[f"{head}.{rest[: -len('.original')]}"] = state_dict.pop(key)


def add_qat(model: nn.Module, bits: int) -> int:
    """Register straight-through fake quantization on every Conv/Linear weight of ``model``.

    Returns the number of parametrized layers. Idempotent. The model's ``state_dict`` keeps
    plain keys (a post-hook renames them) and ``load_state_dict`` accepts plain keys.
    """
    qmax(bits)
    n = 0
    for mod, bn in weight_bn_pairs(model):
        if parametrize.is_parametrized(mod, "weight"):
            continue
        parametrize.register_parametrization(mod, "weight", _FakeQuant(bits, bn))
        n += 1
    if not getattr(model, "_trt_nm_qat_hooks", False):
        model.register_state_dict_post_hook(_state_dict_plain_names)

        def _plain_to_param(module, state_dict, prefix, *args) -> None:
            for name, sub in module.named_modules():
                base = f"{prefix}{name}." if name else prefix
                if parametrize.is_parametrized(sub, "weight") and f"{base}weight" in state_dict:
                    state_dict[f"{base}parametrizations.weight.original"] = state_dict.pop(f"{base}weight")

        model.register_load_state_dict_pre_hook(_plain_to_param)
        model._trt_nm_qat_hooks = True
    return n


def remove_qat(model: nn.Module, bake: bool = True) -> None:
    """Remove the QAT parametrizations; ``bake=True`` keeps the quantized values as weights."""
    for mod, _ in weight_bn_pairs(model):
        if parametrize.is_parametrized(mod, "weight"):
            parametrize.remove_parametrizations(mod, "weight", leave_parametrized=bake)


__all__ = [
    "LayerQuant",
    "QuantResult",
    "add_qat",
    "fake_quantize_folded",
    "qmax",
    "quantize_graph",
    "quantize_model",
    "remove_qat",
    "scale_for",
]
