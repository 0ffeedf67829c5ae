"""Backend conformance: every backend reproduces the canonical neuron, forward and backward.

Parametrised over ``list_backends()``; each backend is compared with the plain-torch oracle
on the same weights over T >= 20 steps with inputs that make every layer spike and reset.
"""

from __future__ import annotations

import pytest
import torch

from trt_nm import NeuronConfig, get_backend, list_backends
from trt_nm.errors import ConfigError, MissingDependencyError
from trt_nm.models import build_model
from trt_nm.neuron.backends import register_backend
from trt_nm.neuron.backends.base import LibraryBackend

T = 24
ARCHS = [("mlp", (12, 12), 1), ("cnn-small", (12, 12), 2), ("resnet19", (8, 8), 3), ("sew-resnet34", (32, 32), 3), ("vggsnn", (16, 16), 2)]


def close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    """Equal within 1e-5 relative to the tensor's scale (float32 sums in a different order)."""
    atol = 1e-5 * max(1.0, expected.abs().max().item())
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=atol, msg=lambda m: f"{what}: {m}")


def strengthen_linear_layers(model: torch.nn.Module) -> None:
    """Scale hidden Linear weights (no BatchNorm after them) so their neurons spike too."""
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for m in linears[:-1]:
            m.weight.mul_(4.0)


def record_run(model, x):
    """Forward + backward; returns (logits, spikes per neuron layer, grads by name, input grad)."""
    spikes: dict[str, torch.Tensor] = {}
    hooks = [
        m.register_forward_hook(lambda mod, inp, out, name=name: spikes.__setitem__(name, out.detach()))
        for name, m in model.neurons()
    ]
    x = x.clone().requires_grad_(True)
    out = model(x)
    # a loss that weights every timestep and class differently
    w = torch.linspace(0.5, 1.5, out.numel()).reshape(out.shape)
    (out * w).sum().backward()
    for h in hooks:
        h.remove()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    return out.detach(), spikes, grads, x.grad.clone()


@pytest.mark.parametrize("backend", [b for b in list_backends() if b != "torch"])
@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_single_neuron_matches_oracle_forward_and_backward(backend, reset):
    cfg = NeuronConfig(reset=reset)
    x = (torch.randn(T, 16, 40) * 1.5 + 0.6).requires_grad_(True)
    ref_x = x.detach().clone().requires_grad_(True)
    s, v = get_backend(backend).neuron(cfg).run(x)
    rs, rv = get_backend("torch").neuron(cfg).run(ref_x)
    weight = torch.rand(T, 16, 40)
    (s * weight).sum().add((v * 0.3).sum()).backward()
    (rs * weight).sum().add((rv * 0.3).sum()).backward()
    assert torch.equal(s, rs)
    per_neuron = rs.sum(0)
    assert (per_neuron >= 2).any() and (per_neuron < T).all()  # spikes, resets, spikes again
    torch.testing.assert_close(v, rv, rtol=0, atol=1e-6)
    torch.testing.assert_close(x.grad, ref_x.grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", [b for b in list_backends() if b != "torch"])
@pytest.mark.parametrize("arch,size,channels", ARCHS, ids=[a[0] for a in ARCHS])
def test_model_conformance(backend, arch, size, channels):
    ref = build_model(arch, backend="torch", in_channels=channels, input_size=size, num_classes=5)
    strengthen_linear_layers(ref)
    other = build_model(arch, backend=backend, in_channels=channels, input_size=size, num_classes=5)
    other.load_state_dict(ref.state_dict())
    x = torch.rand(T, 2, channels, *size) * 2.0
    out_r, spk_r, g_r, xg_r = record_run(ref, x)
    out_o, spk_o, g_o, xg_o = record_run(other, x)
    assert spk_r.keys() == spk_o.keys() and len(spk_r) >= 2
    for name in spk_r:
        assert torch.equal(spk_r[name], spk_o[name]), f"spikes differ at {name}"
        rate = spk_r[name].mean().item()
        assert 0.0 < rate < 1.0, f"layer {name} must spike and stay silent sometimes (rate {rate})"
        assert (spk_r[name].sum(0) >= 2).any(), f"no neuron in {name} fired twice (no reset exercised)"
    torch.testing.assert_close(out_o, out_r, rtol=1e-5, atol=1e-5)
    for n in g_r:
        close(g_o[n], g_r[n], f"grad of {n}")
    close(xg_o, xg_r, "grad of the input")


def test_parameter_names_do_not_depend_on_backend():
    keys = {
        b: [(k, tuple(v.shape)) for k, v in build_model("resnet19", backend=b, input_size=(8, 8)).state_dict().items()]
        for b in list_backends()
    }
    first = next(iter(keys.values()))
    assert all(k == first for k in keys.values())
    assert not any("leaky" in k or "cell" in k for k, _ in first)


def test_unknown_backend_lists_valid_names():
    with pytest.raises(ConfigError, match="valid backends: norse, snntorch, torch"):
        get_backend("jax")


def test_missing_library_names_the_extra():
    class Ghost(LibraryBackend):
        name = "ghost"
        extra = "ghost"
        requires = "trt_nm_no_such_module"

        def neuron(self, cfg):  # pragma: no cover - never reached
            raise AssertionError

    register_backend(Ghost())
    try:
        with pytest.raises(MissingDependencyError, match=r"pip install 'trt-nm\[ghost\]'"):
            get_backend("ghost")
        assert "ghost" not in list_backends(available_only=True)
    finally:
        from trt_nm.neuron.backends import _REGISTRY

        _REGISTRY.pop("ghost")


def test_norse_rejects_what_it_cannot_express():
    with pytest.raises(ConfigError, match="norse"):
        get_backend("norse").neuron(NeuronConfig(surrogate="atan"))
    with pytest.raises(ConfigError, match="beta = 1"):
        get_backend("norse").neuron(NeuronConfig(beta=1.0))


@pytest.mark.parametrize("surrogate", ["atan", "sigmoid", "fast_sigmoid"])
def test_snntorch_uses_the_same_surrogate(surrogate):
    cfg = NeuronConfig(surrogate=surrogate)
    x = (torch.randn(T, 4, 30) + 0.7).requires_grad_(True)
    rx = x.detach().clone().requires_grad_(True)
    get_backend("snntorch").neuron(cfg)(x).sum().backward()
    get_backend("torch").neuron(cfg)(rx).sum().backward()
    torch.testing.assert_close(x.grad, rx.grad, rtol=1e-5, atol=1e-6)
