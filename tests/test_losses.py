"""TRT / TET / SDT against independent implementations of their formulas."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import trt_nm.losses as losses_mod
import trt_nm.losses.regularizer as reg_mod
from trt_nm.errors import ConfigError
from trt_nm.losses import Loss, ce_loss, sdt_loss, tet_loss, trt_loss


def reference_trt(outputs, targets, named_params, lamb, decay, eps, eta):
    """The paper's formula written the slow, literal way: a loop over t and over parameters."""
    T, _, C = outputs.shape
    onehot = F.one_hot(targets, C).to(outputs.dtype)
    total = 0.0
    for t in range(1, T + 1):
        o = outputs[t - 1]
        r = 0.0
        for name, w in named_params:
            if name.endswith("bias"):
                continue
            r = r + (lamb * w**2 / (1 + (math.exp(decay * (t - 1)) - 1) * (w.abs() + eps))).sum()
        total = total + (1 - eta) * F.cross_entropy(o, targets) + eta * F.mse_loss(o, onehot) + r
    return total / T


def small_net() -> nn.Module:
    net = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(16, 5))
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.7)
    return net.double()


@pytest.mark.parametrize(
    "T,lamb,decay,eta",
    [(1, 1e-5, 0.5, 0.05), (4, 1e-2, 0.25, 0.3), (6, 5e-5, 0.5, 0.001), (10, 0.3, 1.0, 1.0)],
)
def test_trt_equals_the_formula(T, lamb, decay, eta):
    net = small_net()
    out = torch.randn(T, 8, 5, dtype=torch.float64) * 3
    y = torch.randint(0, 5, (8,))
    got = trt_loss(out, y, net.named_parameters(), lamb=lamb, decay=decay, eta=eta)
    want = reference_trt(out, y, list(net.named_parameters()), lamb, decay, 1e-5, eta)
    assert abs(got.item() - want.item()) <= 1e-6 * max(1.0, abs(want.item()))


def test_trt_float32_matches_within_1e6_relative():
    net = small_net().float()
    out = torch.randn(4, 16, 5)
    y = torch.randint(0, 5, (16,))
    got = trt_loss(out, y, net.named_parameters(), lamb=1e-3)
    want = reference_trt(out.double(), y, [(n, p.double()) for n, p in net.named_parameters()], 1e-3, 0.5, 1e-5, 0.05)
    assert got.item() == pytest.approx(want.item(), rel=1e-6)


def test_trt_gradient_matches_the_formula_including_abs_w():
    net = small_net()
    ref = small_net()
    ref.load_state_dict(net.state_dict())
    out = torch.randn(5, 4, 5, dtype=torch.float64)
    y = torch.randint(0, 5, (4,))
    trt_loss(out, y, net.named_parameters(), lamb=0.1, decay=0.5, eta=0.2).backward()
    reference_trt(out, y, list(ref.named_parameters()), 0.1, 0.5, 1e-5, 0.2).backward()
    for (n, p), (_, q) in zip(net.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-9, atol=1e-12, msg=n)


def test_trt_regularizes_batchnorm_weights_not_biases():
    net = small_net()
    out = torch.zeros(3, 2, 5, dtype=torch.float64)
    y = torch.zeros(2, dtype=torch.long)
    trt_loss(out, y, net.named_parameters(), lamb=1.0, eta=0.0).backward()
    assert net[1].weight.grad.abs().sum() > 0  # BatchNorm weight is regularized
    for bias in (net[0].bias, net[1].bias, net[3].bias):  # biases are not
        assert bias.grad is None or torch.count_nonzero(bias.grad) == 0


@pytest.mark.parametrize("T", [1, 3, 8])
def test_trt_without_regularizer_and_mse_is_mean_per_timestep_ce(T):
    out = torch.randn(T, 6, 4)
    y = torch.randint(0, 4, (6,))
    want = torch.stack([F.cross_entropy(out[t], y) for t in range(T)]).mean()
    got = trt_loss(out, y, small_net().float().named_parameters(), lamb=0.0, eta=0.0)
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    assert ce_loss(out, y).item() == pytest.approx(want.item(), rel=1e-6)


def test_tet_and_sdt_formulas():
    out = torch.randn(5, 6, 4, dtype=torch.float64)
    y = torch.randint(0, 4, (6,))
    ce = torch.stack([F.cross_entropy(out[t], y) for t in range(5)]).mean()
    mse = ((out - 1.0) ** 2).mean()
    assert tet_loss(out, y, lamb=0.2).item() == pytest.approx((0.8 * ce + 0.2 * mse).item(), rel=1e-12)
    assert sdt_loss(out, y).item() == pytest.approx(F.cross_entropy(out.mean(0), y).item(), rel=1e-12)


def test_loss_module_holds_a_frozen_config_and_validates():
    loss = Loss("trt", lamb=5e-5, eta=0.001)
    assert loss.config.lamb == 5e-5
    with pytest.raises(dataclasses.FrozenInstanceError):
        loss.config.lamb = 1.0  # frozen
    with pytest.raises(ConfigError, match="lamb"):
        Loss("trt", lamb=-1.0)
    with pytest.raises(ConfigError, match="valid losses"):
        Loss("focal")
    with pytest.raises(ConfigError):
        trt_loss(torch.randn(4, 3), torch.zeros(4, dtype=torch.long))


# --- the fast regularizer (blockwise on CPU, _foreach elsewhere) against the literal formula ---


def literal_regularizer(params, T, lamb, decay, eps):
    """``1/T sum_t sum_w lamb w^2 / (1 + (exp(decay (t-1)) - 1)(|w| + eps))`` by plain autograd ops."""
    total = 0.0
    for t in range(1, T + 1):
        for w in params:
            total = total + (lamb * w**2 / (1 + (math.exp(decay * (t - 1)) - 1) * (w.abs() + eps))).sum()
    return total / T


ODD_SHAPES = [(1,), (6, 5, 3, 3), (1001,), (37, 61), (3,), (2048,), (1023, 1)]


def odd_params(dtype, seed=0, scale=0.7):
    g = torch.Generator().manual_seed(seed)
    ps = [(torch.randn(s, generator=g, dtype=torch.float64) * scale).to(dtype) for s in ODD_SHAPES]
    ps[0].zero_()  # w = 0 exactly: |w| has no gradient there
    return [p.requires_grad_() for p in ps]


@pytest.fixture(params=["blocks", "foreach"])
def reg_path(request, monkeypatch):
    """Run the CPU block path with tiny blocks (many block boundaries) or the _foreach path."""
    if request.param == "blocks":
        monkeypatch.setattr(reg_mod, "_CPU_BLOCK", 256)
    else:
        monkeypatch.setattr(reg_mod, "_use_foreach", lambda device: True)
    return request.param


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "T,lamb,decay",
    [(1, 1e-5, 0.5), (4, 1e-5, 0.5), (6, 1e-2, 0.25), (10, 0.3, 1.0), (4, 1e-3, 0.0), (5, 1e-3, 1e-12)],
)
def test_regularizer_value_and_gradient_equal_autograd_of_the_formula(reg_path, dtype, T, lamb, decay):
    ps = odd_params(dtype)
    ref = [p.detach().clone().requires_grad_() for p in ps]
    got = losses_mod.trt_regularizer(ps, T, lamb=lamb, decay=decay, eps=1e-5)
    want = literal_regularizer(ref, T, lamb, decay, 1e-5)
    got.backward()
    want.backward()
    assert got.dtype == dtype
    tol = dict(rtol=1e-12, atol=0.0) if dtype == torch.float64 else dict(rtol=2e-6, atol=0.0)
    torch.testing.assert_close(got, want.detach(), **tol)
    for p, q in zip(ps, ref):
        assert p.grad.dtype == dtype and p.grad.shape == p.shape
        gtol = dict(rtol=1e-12, atol=1e-300) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-12)
        torch.testing.assert_close(p.grad, q.grad, **gtol)


def test_regularizer_scaled_retained_and_double_backward(reg_path):
    ps = odd_params(torch.float64, seed=1)
    ref = [p.detach().clone().requires_grad_() for p in ps]
    reg = losses_mod.trt_regularizer(ps, 4, lamb=0.1, decay=0.5, eps=1e-5)
    want = literal_regularizer(ref, 4, 0.1, 0.5, 1e-5)
    (3.0 * reg).backward(retain_graph=True)  # upstream gradient != 1
    (2.0 * reg).backward()  # second backward through the retained graph
    (5.0 * want).backward()
    for p, q in zip(ps, ref):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-12, atol=1e-300)
    # create_graph: second derivatives match too (Hessian-vector product)
    v = [torch.randn_like(p) for p in ps]
    g1 = torch.autograd.grad(losses_mod.trt_regularizer(ps, 4, lamb=0.1), ps, create_graph=True)
    g2 = torch.autograd.grad(literal_regularizer(ps, 4, 0.1, 0.5, 1e-5), ps, create_graph=True)
    h1 = torch.autograd.grad(sum((g * u).sum() for g, u in zip(g1, v)), ps)
    h2 = torch.autograd.grad(sum((g * u).sum() for g, u in zip(g2, v)), ps)
    for a, b in zip(h1, h2):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-300)


def test_regularizer_mixed_precision_frozen_params_and_no_grad(reg_path):
    ps = odd_params(torch.float32, seed=2)
    half = [p.detach().to(torch.bfloat16).requires_grad_() for p in ps[:3]]
    frozen = ps[3].detach().clone()  # requires_grad=False: value only
    reg = losses_mod.trt_regularizer([*half, frozen, *ps[4:]], 4, lamb=1e-2)
    want = literal_regularizer([p.float() for p in half] + [frozen, *ps[4:]], 4, 1e-2, 0.5, 1e-5)
    assert reg.dtype == torch.float32
    torch.testing.assert_close(reg, want.detach(), rtol=2e-6, atol=0.0)
    reg.backward()
    for p in half:
        assert p.grad.dtype == torch.bfloat16
    with torch.no_grad():
        v = losses_mod.trt_regularizer(ps, 4, lamb=1e-2)
    assert not v.requires_grad
    torch.testing.assert_close(v, literal_regularizer(ps, 4, 1e-2, 0.5, 1e-5).detach(), rtol=2e-6, atol=0.0)


# --- the per-element maths written once (factor, its derivative, the gradient) against the
# --- double-backward oracle: the value by plain autograd ops, differentiated by autograd


def oracle_regularizer(params, co):
    """``k sum_w w^2 F(|w|)`` with plain differentiable ops, one term of F at a time."""
    total = torch.zeros((), dtype=torch.float64)
    for w in params:
        aw = w.abs()
        f = torch.full_like(w, float(co.n0))
        for m, b, s in co.terms:
            f = f + s / (aw * m + b)
        total = total + (w * w * f).sum()
    return total * co.k


@pytest.mark.parametrize("T,decay", [(1, 0.5), (4, 0.5), (10, 1.0), (5, 1e-12), (3, 0.0)])
def test_factor_and_derivative_against_autograd_oracle(T, decay):
    co = reg_mod.RegularizerTerms.build(T, 0.1, decay, 1e-5)
    a = (torch.rand(1000, dtype=torch.float64) * 3).requires_grad_()
    want = sum(1.0 / (1.0 + math.expm1(decay * t) * (a + 1e-5)) for t in range(T))
    torch.testing.assert_close(reg_mod.factor(a.detach(), co), want.detach(), rtol=1e-13, atol=0.0)
    (dwant,) = torch.autograd.grad(want.sum(), a)
    torch.testing.assert_close(reg_mod.factor_derivative(a.detach(), co), dwant, rtol=1e-12, atol=1e-300)
    # the TensorList layout gives the same numbers
    parts = reg_mod.TensorList([a.detach()[:300], a.detach()[300:]])
    torch.testing.assert_close(torch.cat(reg_mod.factor(parts, co).tensors), reg_mod.factor(a.detach(), co),
                               rtol=0.0, atol=0.0)


def test_element_gradient_against_autograd_oracle():
    co = reg_mod.RegularizerTerms.build(6, 0.3, 0.25, 1e-5)
    ps = odd_params(torch.float64, seed=3)
    g_want = torch.autograd.grad(oracle_regularizer([ps[1]], co), ps[1])[0]
    w = ps[1].detach()
    a = w.abs()
    got = reg_mod.element_gradient(w, a, reg_mod.factor(a, co), reg_mod.factor_derivative(a, co), co)
    torch.testing.assert_close(got, g_want, rtol=1e-12, atol=1e-300)
    total = reg_mod.trt_regularizer(ps, 6, lamb=0.3, decay=0.25)
    torch.testing.assert_close(total, oracle_regularizer(ps, co).detach(), rtol=1e-12, atol=0.0)


def test_loss_registry_lists_and_rejects_names():
    assert {"trt", "tet", "sdt", "ce"} <= set(losses_mod.list_losses())
    assert losses_mod.get_loss("trt").fn is trt_loss
    with pytest.raises(ConfigError, match="valid losses: ce, sdt, tet, trt"):
        losses_mod.get_loss("focal")
