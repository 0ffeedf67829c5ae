"""The zoo package (trt_nm.models): registry, and the BatchNorm folding rule of conv_bn."""

from __future__ import annotations

import pytest
import torch

from trt_nm.errors import ConfigError
from trt_nm.models import (
    BasicBlock,
    SEWBlock,
    SpikingModel,
    build_from_spec,
    build_model,
    get_model_entry,
    list_models,
    randomize_batchnorm,
    register_model,
)
from trt_nm.models.bn_fold import conv_bn, folded_params


def test_registry_lists_families_and_rejects_unknown_names():
    assert list_models() == ["cnn-small", "mlp", "resnet19", "sew-resnet34", "vggsnn"]
    assert get_model_entry("resnet19").default_input_size == (32, 32)
    with pytest.raises(ConfigError, match="valid models"):
        build_model("resnet999")
    assert callable(register_model) and BasicBlock is not SEWBlock


def test_build_from_spec_rebuilds_the_same_parameters():
    torch.manual_seed(0)
    model = build_model("mlp", input_size=(6, 6), hidden=(8,), T=2)
    again = build_from_spec(model.spec)
    assert isinstance(again, SpikingModel)
    assert [(k, v.shape) for k, v in model.state_dict().items()] == [
        (k, v.shape) for k, v in again.state_dict().items()
    ]


@pytest.mark.parametrize("arch,size", [("cnn-small", (8, 8)), ("resnet19", (8, 8)), ("mlp", (6, 6))])
def test_eval_mode_uses_the_folded_arithmetic_whatever_the_grad_mode(arch, size):
    """Eval mode computes the exported (folded) arithmetic with and without autograd, bit for
    bit, and gradients still reach every weight; train mode runs the plain bn(conv(x))."""
    torch.manual_seed(3)
    model = build_model(arch, input_size=size, in_channels=2, T=3, neuron={"threshold": 0.2})
    model = randomize_batchnorm(model).eval()
    x = (torch.rand(3, 4, 2, *size) < 0.5).float() * 2.0
    with torch.no_grad():
        ref = model(x)
    out = model(x)
    assert out.requires_grad and torch.equal(out.detach(), ref)
    out.square().sum().backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is not None for g in grads.values()), [n for n, g in grads.items() if g is None]
    # the fold is recomputed at every call: a changed weight changes the output at once
    first_bn = next(m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm))
    with torch.no_grad():
        first_bn.running_mean.sub_(2.0)  # every neuron of the first layer now fires
        changed = model(x)
    assert not torch.equal(changed, ref)


def test_folded_gradient_equals_the_unfolded_one():
    """In eval mode d/dW of the folded layer equals d/dW of bn(conv(x)) (up to rounding)."""
    torch.manual_seed(4)
    conv = torch.nn.Conv2d(2, 3, 3, bias=True).double()
    bn = torch.nn.BatchNorm2d(3).double().eval()
    randomize_batchnorm(bn)
    x = torch.randn(5, 2, 6, 6, dtype=torch.float64)
    conv_bn(conv, bn, x).sin().sum().backward()
    got = [p.grad.clone() for p in (conv.weight, conv.bias, bn.weight, bn.bias)]
    for p in (conv.weight, conv.bias, bn.weight, bn.bias):
        p.grad = None
    bn(conv(x)).sin().sum().backward()
    want = [p.grad for p in (conv.weight, conv.bias, bn.weight, bn.bias)]
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    w, b = folded_params(conv, bn)
    assert not w.requires_grad and not b.requires_grad
