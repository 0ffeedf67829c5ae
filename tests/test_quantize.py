"""Post-training quantization (graph and model) and QAT (trt_nm.quantize)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_targets import conv_graph, mlp_graph

from trt_nm.errors import ConfigError
from trt_nm.models import build_model
from trt_nm.models.bn_fold import weight_bn_pairs
from trt_nm.quantize import (
    add_qat,
    fake_quantize_folded,
    quantize_graph,
    quantize_model,
    remove_qat,
)
from trt_nm.training.qat import QATCallback


def test_graph_weights_on_grid_and_thresholds_coscaled():
    g = mlp_graph(hidden=(64,))
    q = quantize_graph(g, 8, mode="integer")
    w = np.asarray(q.graph.nodes["fc0"].weight)
    assert np.array_equal(w, np.round(w)) and np.abs(w).max() == 127
    s = q.layers[0].scale
    assert np.allclose(q.graph.nodes["lif0"].v_threshold, 1.0 / s)
    assert q.graph.metadata["quant_weight_bits"] == 8
    assert np.asarray(g.nodes["fc0"].weight).max() != w.max()  # input untouched


def test_fake_and_integer_graphs_spike_alike():
    from trt_nm.sim.engine import simulate

    torch.manual_seed(0)
    g = conv_graph(ch=4, size=8)
    x = (torch.rand(6, 8, 2, 8, 8) < 0.5).float()
    fake = simulate(quantize_graph(g, 8).graph, x, record=True).spike_trains["lif"]
    integer = simulate(quantize_graph(g, 8, mode="integer").graph, x, record=True).spike_trains["lif"]
    flt = simulate(g, x, record=True).spike_trains["lif"]
    assert (fake == integer).float().mean() > 0.999
    assert (fake == flt).float().mean() > 0.97  # 8-bit rounding flips few spikes
    low = simulate(quantize_graph(g, 3).graph, x, record=True).spike_trains["lif"]
    assert (low == flt).float().mean() < (fake == flt).float().mean()


def test_bad_bits_and_mode():
    with pytest.raises(ConfigError):
        quantize_graph(mlp_graph(), 1)
    with pytest.raises(ConfigError):
        quantize_graph(mlp_graph(), 8, mode="int")


def _model():
    torch.manual_seed(0)
    m = build_model("cnn-small", num_classes=10, in_channels=1, T=2, input_size=(8, 8))
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_var.uniform_(0.5, 2.0)
            mod.weight.data.uniform_(0.5, 1.5)
    return m


def test_folded_weights_land_on_grid():
    m = _model()
    conv, bn = weight_bn_pairs(m)[0]
    assert bn is not None
    wq = fake_quantize_folded(conv.weight, bn, 8)
    g = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).reshape(-1, 1, 1, 1)
    folded = (wq * g).detach()
    s = folded.abs().max() / 127
    assert torch.allclose(folded / s, torch.round(folded / s), atol=1e-3)


def test_qat_straight_through_and_plain_state_dict():
    m = _model()
    n = add_qat(m, 4)
    assert n == 4 and add_qat(m, 4) == 0
    x = torch.rand(2, 3, 1, 8, 8)
    m.train()
    m(x).sum().backward()
    first = weight_bn_pairs(m)[0][0]
    assert first.parametrizations.weight.original.grad is not None
    sd = m.state_dict()
    assert not any("parametrizations" in k for k in sd)
    plain = _model()
    plain.load_state_dict(sd)  # loads into a model without QAT
    m.load_state_dict(sd)  # and back into the QAT model
    m.eval()
    qm = quantize_model(plain, 4).eval()
    assert torch.allclose(m(x), qm(x), atol=1e-5)
    remove_qat(m)
    assert not any("parametrizations" in k for k in m.state_dict())


def test_qat_callback_targets():
    assert QATCallback("loihi2").bits == 8
    with pytest.raises(ConfigError, match="valid targets"):
        QATCallback("nope")
    with pytest.raises(ConfigError, match="floating-point"):
        QATCallback("generic45nm")
