"""Target profiles, constraint checks, conversions and target files (trt_nm.exporters)."""

from __future__ import annotations

import argparse

import nir
import numpy as np
import pytest
import torch

from trt_nm.errors import ConfigError
from trt_nm.exporters import TargetViolation, get_exporter, list_exporters
from trt_nm.exporters.cli import run_target
from trt_nm.exporters.convert import avgpool_to_sumpool, leak_to_iaf
from trt_nm.exporters.layers import analyze_graph
from trt_nm.exporters.nir104 import schema_problems, write_nir104

DT = 1e-4


def _neuron(shape, beta=0.5, kind="LIF"):
    thr = np.ones(shape)
    if kind == "IF":
        return nir.IF(r=np.full(shape, 1.0 / DT), v_threshold=thr, v_reset=np.zeros(shape))
    tau = np.full(shape, DT / (1 - beta))
    return nir.LIF(tau=tau, r=tau / DT, v_leak=np.zeros(shape), v_threshold=thr, v_reset=np.zeros(shape))


def mlp_graph(n_in=16, hidden=(32,), n_out=8, beta=0.5, kind="LIF", reset="zero", seed=0,
              neuron_readout=False, bias=True):
    """Input -> (Affine -> neuron)* -> Affine [-> neuron] -> Output, trt_nm conventions
    (``neuron_readout``: the readout is a neuron layer, as Xylo and Speck need)."""
    rng = np.random.default_rng(seed)
    nodes = {"input": nir.Input(input_type={"input": np.array([n_in])})}
    edges, prev, width = [], "input", n_in
    for i, h in enumerate(hidden):
        nodes[f"fc{i}"] = nir.Affine(weight=rng.normal(0, 1.5 / np.sqrt(width), (h, width)).astype(np.float32),
                                     bias=(rng.normal(0, 0.1, h) * bias).astype(np.float32))
        nodes[f"lif{i}"] = _neuron((h,), beta, kind)
        edges += [(prev, f"fc{i}"), (f"fc{i}", f"lif{i}")]
        prev, width = f"lif{i}", h
    nodes["out"] = nir.Affine(weight=rng.normal(0, 1 / np.sqrt(width), (n_out, width)).astype(np.float32),
                              bias=np.zeros(n_out, np.float32))
    nodes["output"] = nir.Output(output_type={"output": np.array([n_out])})
    edges.append((prev, "out"))
    if neuron_readout:
        nodes["ro"] = _neuron((n_out,), beta, kind)
        edges += [("out", "ro"), ("ro", "output")]
    else:
        edges.append(("out", "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": DT, "reset": reset, "producer": "trt_nm"})


def conv_graph(c_in=2, size=16, ch=4, k=3, pool="SumPool2d", beta=0.5, kind="LIF", reset="zero", n_out=8, seed=0,
               neuron_readout=False):
    """Input -> Conv2d -> neuron -> pool(2) -> Flatten -> Affine [-> neuron] -> Output."""
    rng = np.random.default_rng(seed)
    nodes = {
        "input": nir.Input(input_type={"input": np.array([c_in, size, size])}),
        "conv": nir.Conv2d(input_shape=(size, size), weight=rng.normal(0, 0.5, (ch, c_in, k, k)).astype(np.float32),
                           stride=1, padding=k // 2, dilation=1, groups=1, bias=np.zeros(ch, np.float32)),
        "lif": _neuron((ch, size, size), beta, kind),
    }
    pool_cls = getattr(nir, pool)
    nodes["pool"] = pool_cls(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))
    half = size // 2
    nodes["pool"].input_type = {"input": np.array([ch, size, size])}
    nodes["pool"].output_type = {"output": np.array([ch, half, half])}
    nodes["flat"] = nir.Flatten(input_type={"input": np.array([ch, half, half])}, start_dim=0, end_dim=-1)
    nodes["fc"] = nir.Affine(weight=rng.normal(0, 0.1, (n_out, ch * half * half)).astype(np.float32),
                             bias=np.zeros(n_out, np.float32))
    nodes["output"] = nir.Output(output_type={"output": np.array([n_out])})
    edges = [("input", "conv"), ("conv", "lif"), ("lif", "pool"), ("pool", "flat"), ("flat", "fc")]
    if neuron_readout:
        nodes["ro"] = _neuron((n_out,), beta, kind)
        edges += [("fc", "ro"), ("ro", "output")]
    else:
        edges.append(("fc", "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": DT, "reset": reset, "producer": "trt_nm"})


#: a graph built to fit each target
FITS = {
    "loihi2": lambda: mlp_graph(),  # netx has no pooling layer
    "spinnaker2": lambda: conv_graph(reset="subtract"),
    "generic45nm": lambda: conv_graph(pool="AvgPool2d"),
    "speck": lambda: conv_graph(kind="IF", reset="subtract", neuron_readout=True),
    "xylo": lambda: mlp_graph(n_in=16, hidden=(64,), n_out=8, reset="subtract", neuron_readout=True, bias=False),
}


def _constraints(v):
    return {x.constraint for x in v}


def test_registry_and_profiles():
    assert list_exporters() == ["generic45nm", "loihi2", "speck", "spinnaker2", "xylo"]
    with pytest.raises(ConfigError, match="valid targets: generic45nm, loihi2"):
        get_exporter("truenorth")
    for name in list_exporters():
        p = get_exporter(name).profile
        assert p.sources, f"{name} profile cites no source"
        assert p.name in p.describe()
    assert get_exporter("xylo").profile.max_hidden == 1000
    assert get_exporter("xylo").profile.max_inputs == 16 and get_exporter("xylo").profile.max_outputs == 8
    assert get_exporter("speck").profile.leak is False


@pytest.mark.parametrize("name", sorted(FITS))
def test_model_built_to_fit_passes(name):
    ex = get_exporter(name)
    g, _ = ex.prepare(FITS[name]())
    report = ex.check(g)
    assert report.fits, report.text()
    assert report.resources.neurons > 0


def test_analysis_counts():
    s = analyze_graph(conv_graph(c_in=2, size=16, ch=4, k=3))
    lif, conv = s.layers["lif"], s.layers["conv"]
    assert lif.neurons == 4 * 16 * 16
    assert lif.fan_in == 2 * 3 * 3
    assert conv.synapses == 4 * 16 * 16 * 2 * 9 and conv.weights == 4 * 2 * 9
    assert lif.fan_out == 8  # through pool + flatten to the Affine's 8 outputs
    assert abs(lif.beta - 0.5) < 1e-12


# ----------------------------------------------------------------- planted violations
@pytest.mark.parametrize("name,graph,constraint", [
    ("loihi2", lambda: conv_graph(ch=17, size=250, n_out=2), "neurons/chip"),
    ("speck", lambda: conv_graph(kind="IF", ch=6, size=128, n_out=2), "neurons/core (one layer per core)"),
    ("xylo", lambda: mlp_graph(hidden=(1001,), reset="subtract"), "hidden neurons"),
    ("spinnaker2", lambda: mlp_graph(n_in=16, hidden=(2300, 2300), reset="subtract"), "cores"),
])
def test_too_many_neurons_or_synapses(name, graph, constraint):
    report = get_exporter(name).check(graph())
    assert constraint in _constraints(report.violations), report.text()
    v = next(x for x in report.violations if x.constraint == constraint)
    assert v.excess is not None and v.excess > 0
    assert str(v.limit).replace(",", "") in v.message().replace(",", "")


@pytest.mark.parametrize("name,graph,constraint", [
    ("xylo", lambda: mlp_graph(n_in=17, reset="subtract"), "input channels"),
    ("xylo", lambda: mlp_graph(n_out=9, reset="subtract"), "output neurons"),
    ("speck", lambda: conv_graph(kind="IF", k=17), "kernel size"),
])
def test_too_wide_fan_in_or_io(name, graph, constraint):
    report = get_exporter(name).check(graph())
    assert constraint in _constraints(report.violations), report.text()


def test_profiles_without_published_fan_in_say_so():
    for name in ("loihi2", "spinnaker2", "generic45nm"):
        p = get_exporter(name).profile
        assert p.max_fan_in is None and "not published / no limit" in p.describe()


@pytest.mark.parametrize("name", sorted(FITS))
def test_unsupported_layer(name):
    g = FITS[name]()
    # a Delay node is outside every target's layer set
    nodes = dict(g.nodes)
    first = [b for a, b in g.edges if a == "input"][0]
    shape = tuple(int(d) for d in g.nodes["input"].output_type["output"])
    nodes["delay"] = nir.Delay(delay=np.ones(shape))
    edges = [("input", "delay"), ("delay", first)] + [e for e in g.edges if e[0] != "input"]
    bad = nir.NIRGraph(nodes=nodes, edges=edges, metadata=g.metadata)
    report = get_exporter(name).check(bad)
    assert any(v.layer == "delay" and v.constraint == "layer type" for v in report.violations), report.text()


@pytest.mark.parametrize("name,graph", [
    ("loihi2", lambda: conv_graph(pool="AvgPool2d")),
    ("spinnaker2", lambda: conv_graph(pool="AvgPool2d")),
    ("speck", lambda: conv_graph(kind="IF", pool="AvgPool2d")),
    ("xylo", lambda: conv_graph(reset="subtract")),
])
def test_unsupported_layer_of_the_model(name, graph):
    report = get_exporter(name).check(graph())
    assert "layer type" in _constraints(report.violations)


@pytest.mark.parametrize("name,reset", [("loihi2", "subtract"), ("xylo", "zero")])
def test_unsupported_reset(name, reset):
    g = FITS[name]()
    g.metadata["reset"] = reset
    report = get_exporter(name).check(g)
    assert "reset" in _constraints(report.violations)


def test_speck_refuses_leak_unless_converted(tmp_path):
    ex = get_exporter("speck")
    g = conv_graph(kind="LIF", reset="subtract", neuron_readout=True)
    report = ex.check(g)
    assert {"leak", "neuron model"} <= _constraints(report.violations)
    with pytest.raises(TargetViolation):
        ex.export(g, tmp_path / "speck.nir")
    assert not (tmp_path / "speck.nir").exists()
    res = ex.export(g, tmp_path / "speck.nir", convert=["leak-to-iaf"])
    assert res.report.fits and (tmp_path / "speck.nir").exists()


def test_xylo_leak_must_be_bitshift():
    kw = dict(reset="subtract", neuron_readout=True, bias=False)
    report = get_exporter("xylo").check(mlp_graph(beta=0.3, **kw))
    assert "leak" in _constraints(report.violations)
    assert get_exporter("xylo").check(mlp_graph(beta=0.75, **kw)).fits


# ----------------------------------------------------------------- conversions (simulator)
def _run(graph, x):
    from trt_nm.sim.engine import simulate

    return simulate(graph, x, record=True)


def test_avgpool_to_sumpool_is_exact():
    torch.manual_seed(0)
    g = conv_graph(pool="AvgPool2d", ch=4, size=8)
    x = (torch.rand(6, 3, 2, 8, 8) < 0.4).float() * 2.0
    a, b = _run(g, x), _run(avgpool_to_sumpool(g), x)
    assert torch.allclose(a.logits, b.logits, atol=1e-5)
    assert type(avgpool_to_sumpool(g).nodes["pool"]).__name__ == "SumPool2d"
    assert type(g.nodes["pool"]).__name__ == "AvgPool2d"  # input graph untouched


def test_leak_to_iaf_changes_dynamics_as_the_simulator_shows():
    g = mlp_graph(hidden=(64,))
    x = torch.rand(8, 4, 16)
    a, b = _run(g, x), _run(leak_to_iaf(g), x)
    assert type(leak_to_iaf(g).nodes["lif0"]).__name__ == "IF"
    assert b.spikes["lif0"].sum() > a.spikes["lif0"].sum()  # no leak: more spikes


# ----------------------------------------------------------------- files
def test_speck_and_xylo_files_follow_nir_104_schema(tmp_path):
    for name in ("speck", "xylo"):
        res = get_exporter(name).export(FITS[name](), tmp_path / f"{name}.nir")
        assert schema_problems(res.paths[0]) == []
    # a nir 1.0.8 file with LIF nodes is not readable by nir 1.0.4 (v_reset etc.)
    nir.write(tmp_path / "new.nir", mlp_graph())
    assert any("v_reset" in p for p in schema_problems(tmp_path / "new.nir"))


def test_nir104_refuses_nonzero_reset(tmp_path):
    g = mlp_graph()
    g.nodes["lif0"].v_reset = np.full(32, 0.5)
    with pytest.raises(ConfigError, match="v_reset"):
        write_nir104(g, tmp_path / "x.nir")
    assert not (tmp_path / "x.nir").exists()


def test_loihi2_file_reads_back_with_quantized_weights(tmp_path):
    res = get_exporter("loihi2").export(mlp_graph(), tmp_path / "l.nir")
    assert [p.name for p in res.paths] == ["l.nir", "l.net"]  # NIR + the netx file Lava loads
    back = nir.read(res.paths[0])
    w = np.asarray(back.nodes["fc0"].weight, dtype=np.float64)
    s = np.abs(w).max() / 127
    assert np.allclose(w / s, np.round(w / s), atol=1e-3)


def _args(**kw):
    base = dict(target="loihi2", check=True, convert=[], quantize=None, out=None, dt=None)
    base.update(kw)
    return argparse.Namespace(**base)


def test_run_target_exit_codes(tmp_path, capsys):
    assert run_target(_args(), mlp_graph(), None) == 0
    assert run_target(_args(), conv_graph(pool="AvgPool2d"), None) == 3
    out = capsys.readouterr().out
    assert "VIOLATION pool: layer type is AvgPool2d" in out and "resources:" in out
    # SpiNNaker2 takes sum pooling: the explicit conversion makes the graph fit
    s2 = dict(target="spinnaker2")
    assert run_target(_args(**s2), conv_graph(pool="AvgPool2d"), None) == 3
    assert run_target(_args(convert=["avgpool-to-sumpool"], **s2), conv_graph(pool="AvgPool2d"), None) == 0
    dest = tmp_path / "m.nir"
    dest.write_bytes(b"keep")
    assert run_target(_args(check=False, out=str(dest)), conv_graph(pool="AvgPool2d"), None) == 3
    assert dest.read_bytes() == b"keep"  # refused: existing file untouched
    assert run_target(_args(check=False, out=str(dest)), mlp_graph(), None) == 0
    assert nir.read(dest).nodes["fc0"] is not None
