"""Shared helpers for the NIR/ONNX tests: dyadic models whose arithmetic is exact in float32.

Weights are multiples of 2^-10, inputs multiples of 2^-4, BatchNorm has eps = 0, power-of-4
running variances and power-of-2 gammas, so every conv/linear/BN/pool result is exactly
representable: BN folding, summation order and library kernels cannot flip a spike, and the
comparisons below can demand identical spikes. BN statistics come from a calibration pass
(non-trivial means/variances) so that every layer spikes and resets.
"""

from __future__ import annotations

import torch
from torch import nn

from trt_nm.models import build_model

SIZES = {"mlp": (8, 8), "cnn-small": (16, 16), "vggsnn": (16, 16), "resnet19": (8, 8),
         "sew-resnet34": (32, 32)}


def dyadic(t: torch.Tensor, bits: int) -> torch.Tensor:
    return torch.round(t * 2.0**bits) / 2.0**bits


def make_model(arch: str, backend: str = "torch", *, exact: bool = True, T: int = 20,
               seed: int = 0):
    """A zoo model in eval mode with calibrated, non-trivial BatchNorm statistics."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = build_model(arch, backend=backend, input_size=SIZES[arch], T=T)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for p in model.parameters():
            if exact and p.dim() > 1:
                p.copy_(dyadic(p, 10))
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None
        model.train()
        model(make_input(model, T=4, batch=4, seed=seed + 1))
        model.eval()
        for bn in bns:
            c = bn.num_features
            gamma = 2.0 ** torch.randint(-1, 2, (c,), generator=g).float()
            shift = torch.rand(c, generator=g) * 0.6 + 0.1
            if exact:
                bn.eps = 0.0
                bn.running_var.copy_(4.0 ** torch.round(torch.log(bn.running_var.clamp_min(1e-6)) / torch.log(torch.tensor(4.0))))
                bn.running_mean.copy_(dyadic(bn.running_mean, 6))
                bn.weight.copy_(gamma)
                bn.bias.copy_(dyadic(shift, 6))
            else:
                bn.weight.copy_(gamma * (0.8 + 0.4 * torch.rand(c, generator=g)))
                bn.bias.copy_(shift)
    return model


def make_input(model, T: int = 20, batch: int = 2, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return dyadic(torch.rand(T, batch, *model.input_shape, generator=g), 4)


def record(modules: dict[str, nn.Module], fn) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Run ``fn()`` with forward hooks on ``modules``; returns (result, outputs per name)."""
    seen: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, out, n=n: seen.__setitem__(n, out.detach()))
             for n, m in modules.items()]
    try:
        with torch.no_grad():
            out = fn()
    finally:
        for h in hooks:
            h.remove()
    return out, seen


def model_spikes(model, x):
    """Logits and ``{nir_node_name: spikes [T, B, ...]}`` of a zoo model."""
    return record({n.replace(".", "_"): m for n, m in model.neurons()}, lambda: model(x))


def net_spikes(net, x):
    """Logits and ``{nir_node_name: spikes}`` of a from_nir network."""
    return record(dict(net.neurons()), lambda: net(x))


def assert_active(spikes: dict[str, torch.Tensor]) -> None:
    """Every layer spikes before the last step (so a reset happens) and is not saturated."""
    for name, s in spikes.items():
        assert s[:-1].sum() > 0, f"layer {name} never spikes before the last step"
        assert s.mean() < 0.999, f"layer {name} spikes at every step (no dynamics)"


def assert_same(ref: dict[str, torch.Tensor], got: dict[str, torch.Tensor]) -> None:
    assert set(ref) == set(got), (sorted(ref), sorted(got))
    for name, s in ref.items():
        assert got[name].shape == s.shape, name
        diff = int((got[name] != s).sum())
        assert diff == 0, f"layer {name}: {diff} spikes differ"
