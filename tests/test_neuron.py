"""The canonical neuron and the surrogate registry."""

from __future__ import annotations

import math

import pytest
import torch

from trt_nm import LIF, NeuronConfig, get_surrogate, lif_step, list_surrogates, spike
from trt_nm.errors import ConfigError


def test_lif_step_matches_hand_computation_over_resets():
    cfg = NeuronConfig()  # beta 0.5, threshold 1, zero reset
    xs = [0.6, 0.6, 0.6, 1.5, 0.2, 0.9, 0.0]
    v, spikes, mems = torch.zeros(1), [], []
    for x in xs:
        s, v = lif_step(torch.tensor([x]), v, cfg)
        spikes.append(int(s.item()))
        mems.append(round(v.item(), 6))
    # h: 0.6 -> 0.9 -> 1.05 (spike, reset 0) -> 1.5 (spike) -> 0.2 -> 1.0 (not > 1) -> 0.5
    assert spikes == [0, 0, 1, 1, 0, 0, 0]
    assert mems == [0.6, 0.9, 0.0, 0.0, 0.2, 1.0, 0.5]


def test_subtract_reset_keeps_the_excess():
    cfg = NeuronConfig(reset="subtract")
    s, v = lif_step(torch.tensor([2.5]), torch.zeros(1), cfg)
    assert s.item() == 1 and v.item() == pytest.approx(1.5)
    s, v = lif_step(torch.tensor([0.0]), v, cfg)  # 0.75: no spike
    assert s.item() == 0 and v.item() == pytest.approx(0.75)


def test_module_runs_time_major_and_returns_state():
    x = torch.rand(7, 3, 5) * 2
    lif = LIF(NeuronConfig())
    spikes, v = lif.run(x)
    assert spikes.shape == x.shape and v.shape == x.shape[1:]
    assert torch.equal(lif(x), spikes)
    # continuing from the returned state equals running the whole sequence at once
    s1, v1 = lif.run(x[:4])
    s2, _ = lif.run(x[4:], v1)
    assert torch.equal(torch.cat([s1, s2]), spikes)


def test_reset_gradient_is_not_detached():
    # d v_next / d x through the spike: v = h (1 - s); with the triangle surrogate at h = 1.2
    cfg = NeuronConfig()
    x = torch.tensor([1.2], requires_grad=True)
    s, v = lif_step(x, torch.zeros(1), cfg)
    v.backward()
    # dv/dh = (1 - s) - h * ds/dh = 0 - 1.2 * (1 - |0.2|) = -0.96
    assert x.grad.item() == pytest.approx(-0.96)


@pytest.mark.parametrize("name", ["triangle", "atan", "sigmoid", "fast_sigmoid"])
def test_surrogates_forward_heaviside_backward_formula(name):
    x = torch.linspace(-2, 2, 41, dtype=torch.float64, requires_grad=True)
    y = spike(x, name)
    assert torch.equal(y.detach(), (x > 0).double())
    y.sum().backward()
    s = get_surrogate(name)
    k = s.default_scale
    xd = x.detach()
    expected = {
        "triangle": (1 / k) ** 2 * torch.clamp(k - xd.abs(), min=0),
        "atan": (k / 2) / (1 + (math.pi / 2 * k * xd) ** 2),
        "sigmoid": k * torch.sigmoid(k * xd) * (1 - torch.sigmoid(k * xd)),
        "fast_sigmoid": 1 / (k * xd.abs() + 1) ** 2,
    }[name]
    torch.testing.assert_close(x.grad, expected)


def test_registry_lists_and_rejects_unknown():
    assert {"triangle", "atan", "sigmoid"} <= set(list_surrogates())
    with pytest.raises(ConfigError, match="valid surrogates"):
        get_surrogate("nope")


@pytest.mark.parametrize(
    "kwargs",
    [{"beta": 0.0}, {"beta": 1.5}, {"threshold": 0}, {"reset": "soft"}, {"surrogate": "x"}, {"beta": float("nan")}],
)
def test_neuron_config_rejects_bad_values(kwargs):
    with pytest.raises(ConfigError):
        NeuronConfig(**kwargs)


def test_from_tau_is_the_papers_neuron():
    assert NeuronConfig.from_tau(2.0).beta == 0.5
    with pytest.raises(ConfigError):
        NeuronConfig.from_tau(0.5)
