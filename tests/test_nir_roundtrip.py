"""Round trip model -> NIR -> file -> nir.read -> from_nir for every zoo arch and backend."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch
from test_nir_helpers import (
    assert_active,
    assert_same,
    make_input,
    make_model,
    model_spikes,
    net_spikes,
)

import trt_nm
from trt_nm.errors import NirError
from trt_nm.models import list_models
from trt_nm.neuron.backends import list_backends

BACKENDS = list_backends(available_only=True)


@pytest.mark.parametrize("arch", list_models())
def test_roundtrip_every_arch_every_backend(arch, tmp_path):
    model = make_model(arch)
    big = arch in ("vggsnn", "resnet19", "sew-resnet34")
    x = make_input(model, T=20, batch=1 if big else 2)
    ref_logits, ref = model_spikes(model, x)
    assert_active(ref)
    graph = trt_nm.to_nir(model)
    path = tmp_path / f"{arch}.nir"
    trt_nm.write_nir(graph, path, compression=None if big else "gzip")
    raw = nir.read(path)  # nir itself reads our file, with its own type checking
    assert set(raw.nodes) == set(graph.nodes)
    read = trt_nm.read_nir(path)
    for backend in BACKENDS:
        net = trt_nm.from_nir(read, backend=backend)
        logits, got = net_spikes(net, x)
        assert_same(ref, got)
        torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=0)
        if backend != "torch":
            assert any(type(m).__module__.startswith("trt_nm.neuron.backends") and
                       getattr(m, "backend_name", "") == backend for _, m in net.neurons())


@pytest.mark.parametrize("backend", BACKENDS)
def test_export_from_every_backend_is_identical(backend):
    model = make_model("cnn-small", backend=backend)
    ref = trt_nm.to_nir(make_model("cnn-small", backend="torch"))
    graph = trt_nm.to_nir(model)
    assert list(graph.nodes) == list(ref.nodes) and graph.edges == ref.edges
    for name, node in graph.nodes.items():
        for f in ("weight", "bias", "tau", "r", "v_threshold"):
            if hasattr(node, f):
                np.testing.assert_array_equal(getattr(node, f), getattr(ref.nodes[name], f))


def test_graph_conventions():
    model = make_model("resnet19", T=6)
    g = trt_nm.to_nir(model, dt=1e-3)
    m = g.metadata
    assert m["producer"] == "trt_nm" and m["dt"] == 1e-3 and m["T"] == 6 and m["reset"] == "zero"
    assert m["surrogate"] == "triangle" and m["arch"] == "resnet19" and m["num_classes"] == 10
    lif = g.nodes["body_1_lif1"] if "body_1_lif1" in g.nodes else g.nodes["body_3_lif1"]
    assert isinstance(lif, nir.LIF) and lif.tau.shape == (128, 8, 8)
    np.testing.assert_allclose(lif.tau, 1e-3 / 0.5)
    np.testing.assert_allclose(lif.r, lif.tau / 1e-3)
    assert not lif.v_leak.any() and not lif.v_reset.any()
    kinds = {type(n).__name__ for n in g.nodes.values()}
    assert "BatchNorm" not in str(kinds) and {"Conv2d", "AvgPool2d", "Flatten", "Affine", "LIF"} <= kinds
    conv = g.nodes["body_0"]
    assert conv.bias.any(), "BatchNorm must be folded into the conv bias"
    # residual: the second neuron of a block sums conv2 and the shortcut
    assert sorted(a for a, b in g.edges if b == "body_3_lif2") == ["body_3_conv2", "body_3_lif1"] or \
        len([a for a, b in g.edges if b == "body_3_lif2"]) == 2
    flat = next(n for n in g.nodes.values() if isinstance(n, nir.Flatten))
    assert flat.start_dim == 0


def test_realistic_bn_float64_roundtrip(tmp_path):
    """Non-dyadic weights and BN with eps (folding rounding): exact in float64."""
    model = make_model("cnn-small", exact=False).double()
    x = make_input(model).double()
    ref_logits, ref = model_spikes(model, x)
    assert_active(ref)
    path = tmp_path / "m.nir"
    trt_nm.write_nir(trt_nm.to_nir(model), path)
    net = trt_nm.from_nir(path, backend="snntorch", dtype=torch.float64)
    logits, got = net_spikes(net, x)
    assert_same(ref, got)
    torch.testing.assert_close(logits, ref_logits, atol=1e-9, rtol=0)


def test_subtract_reset_needs_explicit_option(tmp_path):
    model = make_model("mlp")
    sub = trt_nm.models.build_from_spec({**model.spec, "neuron": {**model.spec["neuron"], "reset": "subtract"}})
    sub.load_state_dict(model.state_dict())
    sub.eval()
    for bn_s, bn_m in zip([m for m in sub.modules() if isinstance(m, torch.nn.BatchNorm1d)],
                          [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]):
        bn_s.eps = bn_m.eps
    with pytest.raises(NirError, match="subtract"):
        trt_nm.to_nir(sub)
    g = trt_nm.to_nir(sub, reset_mode="metadata")
    assert g.metadata["reset"] == "subtract"
    trt_nm.write_nir(g, tmp_path / "s.nir")
    x = make_input(sub)
    ref_logits, ref = model_spikes(sub, x)
    assert_active(ref)
    for backend in BACKENDS:
        net = trt_nm.from_nir(tmp_path / "s.nir", backend=backend)
        logits, got = net_spikes(net, x)
        assert_same(ref, got)
        torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=0)


def test_dt_from_metadata_and_override():
    model = make_model("mlp")
    g = trt_nm.to_nir(model, dt=2e-3)
    x = make_input(model)
    ref_logits, ref = model_spikes(model, x)
    net = trt_nm.from_nir(g, backend="torch")
    assert net.dt == 2e-3
    assert_same(ref, net_spikes(net, x)[1])
    wrong = trt_nm.from_nir(g, backend="torch", dt=1e-3)  # beta = 1 - dt/tau changes
    assert wrong.dt == 1e-3
    assert not torch.equal(net_spikes(wrong, x)[0], ref_logits)
