"""Loihi 2 against Lava itself (lava-nc 0.10.0 fixed-point models, lava-dl 0.6.0 netx loader) in
the cached vendor venv: random integer networks and a briefly trained one agree spike for
spike over >= 64 samples, and what our checks refuse Lava's netx loader refuses too (or, for
the register widths Lava's CPU simulation does not enforce, the test pins that it accepts)."""

from __future__ import annotations

import argparse

import nir
import numpy as np
import pytest

from trt_nm.chip import get_chip
from trt_nm.chip.base import ChipNet
from trt_nm.chip.deploy import compare, deploy, verify
from trt_nm.chip.loihi2 import DU, DV, VTH_MAX, _unpack, write_netx
from trt_nm.chip.train import ChipTrainConfig, train_chip
from trt_nm.chip.vendor import run_runner, vendor_python, vendor_records
from trt_nm.exporters import get_exporter
from trt_nm.exporters.cli import run_target
from trt_nm.exporters.loihi2 import write_netx_from_nir

pytestmark = pytest.mark.vendor
CHIP = get_chip("loihi2")
DT = 1e-4


@pytest.fixture(scope="module", autouse=True)
def _venv():
    vendor_python(CHIP)  # builds the cached venv on first use (about 30 s)


def _net(sizes, vth, seed=0, lo=-128, hi=128):
    rng = np.random.default_rng(seed)
    L = len(sizes) - 1
    arrays = {f"w{i}": rng.integers(lo, hi, (sizes[i + 1], sizes[i])) for i in range(L)}
    arrays.update(vth=np.array(vth), du=np.full(L, DU), dv=np.full(L, DV))
    names = [f"h{i + 1}" for i in range(L - 1)] + ["out"]
    return ChipNet("loihi2", arrays, {"layers": names, "sizes": list(sizes), "flush": L})


def _agree(net, x, tmp_path):
    """simulate vs Lava on the written netx file; returns (records, vendor records)."""
    rec = CHIP.simulate(net, x)
    CHIP.write(net, tmp_path)
    np.savez(tmp_path / "expected.npz", x=x, **rec)
    ven = vendor_records(CHIP, tmp_path)
    rows = compare(rec, ven)
    assert {r.name for r in rows} == set(rec)
    assert all(r.exact for r in rows), [r.line() for r in rows]
    return rec, ven


@pytest.mark.parametrize("sizes,vth,density,lo,flush", [
    ([784, 64, 10], [300, 200], 0.2, -128, 2),      # the default task's shape
    ([100, 32, 16, 8], [60, 40, 20], 0.3, -128, 3),  # three weight layers
    ([2000, 16, 4], [VTH_MAX, 100000], 0.9, -20, 0),  # u wraps, v clips; no flush steps given
    ([50, 20, 6], [30, 1], 0.5, 0, 2),              # excitatory-only layers, rescaled by netx
])
def test_random_integer_nets_agree_with_lava(tmp_path, sizes, vth, density, lo, flush):
    net = _net(sizes, vth, seed=len(sizes) + len(vth), lo=lo)
    rng = np.random.default_rng(7)
    x = (rng.random((8 + flush, 64, sizes[0])) < density).astype(np.int64)
    if flush:
        x[-flush:] = 0
    rec, ven = _agree(net, x, tmp_path)
    assert rec["out"].sum() > 0 or rec[f"layer:h{len(sizes) - 2}"].sum() > 0
    assert float(ven["seconds"]) > 0


def test_trained_net_deploys_and_verifies(tmp_path):
    cfg = ChipTrainConfig(target="loihi2", task=CHIP.task, epochs=2, batch_size=32,
                          train_limit=1024, test_limit=64, out_dir=str(tmp_path / "run"))
    train_chip(cfg, log=lambda *_: None)
    dep = deploy(tmp_path / "run" / "last.pt", "loihi2", tmp_path / "dep", samples=64)
    assert dep.x.shape == (8 + CHIP.flush, 64, 1, 28, 28)
    lines: list[str] = []
    assert verify(dep, log=lines.append), lines
    ven = vendor_records(CHIP, dep.out_dir)
    assert np.array_equal(ven["out"], dep.records["out"])
    assert np.array_equal(ven["layer:h1"], dep.records["layer:h1"])
    vacc = 100.0 * float((CHIP.predict(ven["out"]) == dep.y).mean())
    assert vacc == dep.accuracy and dep.accuracy > 20.0


# ---------------------------------------------------------------------- check parity
def _lava_load(path) -> tuple[int, str]:
    proc = run_runner(CHIP, "load", str(path))
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def _args(**kw):
    base = dict(target="loihi2", check=True, convert=[], quantize=None, out=None, dt=None)
    base.update(kw)
    return argparse.Namespace(**base)


def _lif(n, beta=0.5, thr=1.0):
    tau = np.full(n, DT / (1 - beta))
    return nir.LIF(tau=tau, r=tau / DT, v_leak=np.zeros(n), v_threshold=np.full(n, thr),
                   v_reset=np.zeros(n))


def _mlp(n_in=20, hidden=8, n_out=4, readout="LIF", zero=False, thr=1.0, seed=0):
    rng = np.random.default_rng(seed)
    w0 = rng.normal(0, 0.5, (hidden, n_in)).astype(np.float32)
    w1 = rng.normal(0, 0.5, (n_out, hidden)).astype(np.float32)
    if zero:
        w1[:] = 0
    nodes = {"input": nir.Input(input_type={"input": np.array([n_in])}),
             "fc0": nir.Linear(weight=w0), "lif0": _lif(hidden, thr=thr),
             "fc1": nir.Linear(weight=w1),
             "output": nir.Output(output_type={"output": np.array([n_out])})}
    if readout == "LIF":
        nodes["lif1"] = _lif(n_out)
    else:  # a leaky integrator readout: netx has no such neuron
        tau = np.full(n_out, 2 * DT)
        nodes["lif1"] = nir.LI(tau=tau, r=tau / DT, v_leak=np.zeros(n_out))
    edges = [("input", "fc0"), ("fc0", "lif0"), ("lif0", "fc1"), ("fc1", "lif1"), ("lif1", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": DT, "reset": "zero", "producer": "trt_nm"})


def _pool_graph():
    nodes = {"input": nir.Input(input_type={"input": np.array([1, 8, 8])}),
             "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                                   padding=np.array([0, 0])),
             "flat": nir.Flatten(input_type={"input": np.array([1, 4, 4])}, start_dim=0, end_dim=-1),
             "fc": nir.Linear(weight=np.random.default_rng(0).normal(0, 0.5, (4, 16)).astype(np.float32)),
             "lif": _lif(4),
             "output": nir.Output(output_type={"output": np.array([4])})}
    nodes["pool"].input_type = {"input": np.array([1, 8, 8])}
    nodes["pool"].output_type = {"output": np.array([1, 4, 4])}
    edges = [("input", "pool"), ("pool", "flat"), ("flat", "fc"), ("fc", "lif"), ("lif", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": DT, "reset": "zero", "producer": "trt_nm"})


def test_fitting_graph_passes_check_and_lava_loads_its_netx_file(tmp_path):
    g = _mlp()
    assert run_target(_args(), g, None) == 0
    res = get_exporter("loihi2").export(g, tmp_path / "g.nir")
    assert [p.suffix for p in res.paths] == [".nir", ".net"]
    code, msg = _lava_load(res.paths[1])
    assert code == 0, msg


@pytest.mark.parametrize("graph,constraint,lava_error", [
    (_pool_graph, "layer type", "NotImplementedError: pool is not implemented"),
    (lambda: _mlp(readout="LI"), "neuron model", "AttributeError"),
    (lambda: _mlp(zero=True), "weights", "OverflowError"),
])
def test_planted_violation_refused_by_check_and_by_lava(tmp_path, graph, constraint, lava_error):
    g = graph()
    report = get_exporter("loihi2").check(g)
    assert constraint in {v.constraint for v in report.violations}, report.text()
    assert run_target(_args(), g, None) == 3
    path = write_netx_from_nir(g, tmp_path / "planted.net")  # the file, written regardless
    code, msg = _lava_load(path)
    assert code == 3 and lava_error in msg, msg


def test_zero_weight_chip_net_refused_by_deploy_check_and_by_lava(tmp_path):
    net = _net([20, 8, 4], [10, 10])
    net.arrays["w1"] = np.zeros_like(net.arrays["w1"])
    assert any("all weights are 0" in line for line in CHIP.check_graph_lines(net))
    names, weights, params = _unpack(net)
    write_netx(str(tmp_path / "zero.net"), names, weights, params)
    code, msg = _lava_load(tmp_path / "zero.net")
    assert code == 3 and "OverflowError" in msg, msg


def test_unknown_neuron_type_netx_file_rejected_by_lava(tmp_path):
    import h5py

    net = _net([20, 8, 4], [10, 10])
    names, weights, params = _unpack(net)
    path = tmp_path / "alif.net"
    write_netx(str(path), names, weights, params)
    with h5py.File(path, "a") as f:
        del f["layer/2/neuron/type"]
        f["layer/2/neuron"].create_dataset("type", data=np.array([b"ALIF"]))
    code, msg = _lava_load(path)
    assert code == 3, msg


def test_register_widths_have_no_vendor_verdict(tmp_path):
    """Our checks refuse a 17-bit-overflowing threshold; Lava's CPU model accepts the file
    (it does not enforce register widths), so there is no vendor verdict to match."""
    g = _mlp(thr=3000.0)
    report = get_exporter("loihi2").check(g)
    assert "threshold (vth)" in {v.constraint for v in report.violations}, report.text()
    code, msg = _lava_load(write_netx_from_nir(g, tmp_path / "vth.net"))
    assert code == 0, msg
    net = _net([20, 8, 4], [VTH_MAX + 1, 10])
    assert any("17-bit" in line for line in CHIP.check_graph_lines(net))
    names, weights, params = _unpack(net)
    write_netx(str(tmp_path / "vth2.net"), names, weights, params)
    assert _lava_load(tmp_path / "vth2.net")[0] == 0


def test_runner_map_mode_says_lava_reads_no_nir(tmp_path):
    proc = run_runner(CHIP, "map", str(tmp_path / "any.nir"))
    assert proc.returncode == 2 and "no NIR importer" in proc.stderr
