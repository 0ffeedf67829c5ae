"""BatchNorm folding: the one place its maths lives.

Inference uses ``conv'(x) = conv(x, w * k) + (b - mean) * k + beta`` with
``k = gamma / sqrt(running_var + eps)``, computed in float64 and rounded once to the layer's
dtype. The NIR exporter writes these weights, and the zoo models evaluate with them (eval mode,
no autograd), so a model, its NIR file, the simulator and ``from_nir`` on every backend share
one arithmetic: identical spikes, not just close ones. Computing ``bn(conv(x))`` instead rounds
differently in the last bit, which flips the rare spike whose membrane sits within ~1e-7 of the
threshold. With autograd on (training, Fisher/sharpness analysis) the unfolded, differentiable
``bn(conv(x))`` runs.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from trt_nm.errors import ConfigError

_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Linear)


def weight_bn_pairs(model: nn.Module) -> list[tuple[nn.Module, nn.Module | None]]:
    """Every Conv/Linear module with the BatchNorm that directly follows it (or None), in the
    children order of its parent (the order a zoo block applies them)."""
    pairs: list[tuple[nn.Module, nn.Module | None]] = []
    seen: set[int] = set()
    for mod in model.modules():
        children = list(mod.children())
        for i, c in enumerate(children):
            if isinstance(c, _WEIGHTED) and id(c) not in seen:
                nxt = children[i + 1] if i + 1 < len(children) else None
                bn = nxt if isinstance(nxt, nn.modules.batchnorm._BatchNorm) else None
                pairs.append((c, bn))
                seen.add(id(c))
    return pairs


def folded_params(layer: nn.Module, bn: nn.Module | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(weight, bias)`` of ``bn(layer(x))`` as one layer, in the layer's dtype and device
    (float64 maths, rounded once). ``bn=None`` returns the layer's own parameters."""
    w = layer.weight.detach()
    b = None if layer.bias is None else layer.bias.detach()
    if bn is None:
        return w, b
    if bn.running_mean is None or bn.running_var is None:
        raise ConfigError("cannot fold a BatchNorm without running statistics")
    f64 = torch.float64
    var = bn.running_var.detach().to(f64)
    scale = torch.ones_like(var) if bn.weight is None else bn.weight.detach().to(f64)
    shift = torch.zeros_like(var) if bn.bias is None else bn.bias.detach().to(f64)
    k = scale / torch.sqrt(var + bn.eps)
    w64 = w.to(f64) * k.reshape(-1, *([1] * (w.dim() - 1)))
    b0 = torch.zeros_like(k) if b is None else b.to(f64)
    b64 = (b0 - bn.running_mean.detach().to(f64)) * k + shift
    return w64.to(w.dtype), b64.to(w.dtype)


def _key(layer: nn.Module, bn: nn.Module) -> tuple:
    ts = [layer.weight, layer.bias, bn.weight, bn.bias, bn.running_mean, bn.running_var]
    return (bn.eps, *((None,) if t is None else (t.data_ptr(), t._version, t.dtype, t.device) for t in ts))


def _cached_folded(layer: nn.Module, bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    if torch.compiler.is_compiling():  # traced: recompute (cheap, and no Python-side cache)
        return folded_params(layer, bn)
    key = _key(layer, bn)
    hit = bn.__dict__.get("_trt_nm_folded")
    if hit is None or hit[0] != key:
        hit = (key, folded_params(layer, bn))
        bn.__dict__["_trt_nm_folded"] = hit
    return hit[1]


def _apply(layer: nn.Module, w: torch.Tensor, b: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    if isinstance(layer, nn.Linear):
        return F.linear(x, w, b)
    if layer.padding_mode != "zeros":  # pragma: no cover - zoo layers pad with zeros
        return layer._conv_forward(x, w, b)
    fn = F.conv2d if isinstance(layer, nn.Conv2d) else F.conv1d
    return fn(x, w, b, layer.stride, layer.padding, layer.dilation, layer.groups)


def conv_bn(layer: nn.Module, bn: nn.Module | None, x: torch.Tensor) -> torch.Tensor:
    """``bn(layer(x))``; folded (see the module docstring) when evaluating without autograd."""
    if bn is None:
        return layer(x)
    if bn.training or torch.is_grad_enabled() or bn.running_var is None or not isinstance(layer, _WEIGHTED):
        return bn(layer(x))
    w, b = _cached_folded(layer, bn)
    return _apply(layer, w, b, x)


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (eval mode) with every BatchNorm folded into the preceding
    convolution/linear layer and left as an exact identity (gain 1, shift 0, ``eps`` 0): its
    arithmetic is that of the NIR export in every mode, with autograd too."""
    folded = copy.deepcopy(model).eval()
    for layer, bn in weight_bn_pairs(folded):
        if bn is None:
            continue
        w, b = folded_params(layer, bn)
        layer.weight.copy_(w)
        if layer.bias is None:
            layer.bias = nn.Parameter(b)
        else:
            layer.bias.copy_(b)
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0)
        bn.eps = 0.0
        if bn.weight is not None:
            bn.weight.fill_(1.0)
        if bn.bias is not None:
            bn.bias.zero_()
    return folded


__all__ = ["weight_bn_pairs", "folded_params", "conv_bn", "fold_batchnorm"]
