"""Xylo conformance against the vendor's own software (rockpool 3.1.0 + xylosim 0.1.3, built
once from XyloChip.vendor into the cached vendor venv): trt_nm's exact simulation agrees with
XyloSim spike for spike and Vmem for Vmem, network.nir maps to spec.npz, and every violation
exporters/xylo.py --check plants is one the vendor mapper rejects too."""

from __future__ import annotations

import numpy as np
import pytest
from test_chip_xylo import PLANTED, xylo_graph

from trt_nm.chip import get_chip
from trt_nm.chip.base import ChipNet
from trt_nm.chip.deploy import compare, deploy, verify
from trt_nm.chip.train import default_config, train_chip
from trt_nm.chip.vendor import run_runner, vendor_map, vendor_python, vendor_records
from trt_nm.exporters import get_exporter
from trt_nm.exporters.nir104 import write_nir104
from trt_nm.exporters.xylo import rockpool_graph

pytestmark = pytest.mark.vendor
CHIP = get_chip("xylo")


@pytest.fixture(scope="module", autouse=True)
def _venv():
    vendor_python(CHIP)  # build once (about 2 minutes), cached afterwards


def random_net(rng, hidden, n_in=16, n_out=8, thr_hi=2000):
    """Integer network on Xylo's grids (each neuron's largest |weight| is 127)."""
    arrays, names, fan = {}, [], n_in
    sizes = [*hidden, n_out]
    for k, n in enumerate(sizes):
        nm = "out" if k == len(sizes) - 1 else f"h{k}"
        names.append(nm)
        w = rng.integers(-127, 128, size=(fan, n))
        w[rng.integers(0, fan, n), np.arange(n)] = rng.choice([-127, 127], n)
        arrays[f"{nm}.weight"] = w
        arrays[f"{nm}.threshold"] = rng.integers(1, thr_hi if nm != "out" else 32768, n)
        arrays[f"{nm}.dash_syn"] = rng.integers(1, 8, n)
        arrays[f"{nm}.dash_mem"] = rng.integers(1, 8, n)
        fan = n
    meta = {"layers": names, "n_in": n_in, "hidden": list(hidden), "n_out": n_out,
            "delay": len(hidden), "dt": 1e-3, "flush_steps": 2, "readout": "Vmem_out"}
    return ChipNet("xylo", arrays, meta)


def _deploy_net(net, x, out_dir):
    records = CHIP.simulate(net, x)
    CHIP.write(net, out_dir)
    np.savez(out_dir / "expected.npz", x=x, **records)
    return records


@pytest.mark.parametrize("hidden,thr_hi,x_hi,seed", [
    ((64,), 2000, 16, 0),      # one hidden layer
    ((40, 24), 2000, 16, 1),   # two layers: 40 -> 24 in weights_rec, one more step of delay
    ((50,), 300, 20, 2),       # low thresholds: multi-spike caps, int16 saturation, > 15 events
    ((30, 30), 100, 16, 3),
])
def test_random_integer_nets_agree_with_xylosim(tmp_path, hidden, thr_hi, x_hi, seed):
    rng = np.random.default_rng(seed)
    net = random_net(rng, hidden, thr_hi=thr_hi)
    x = rng.integers(0, x_hi, size=(14, 24, 16))
    records = _deploy_net(net, x, tmp_path)
    vendor = vendor_records(CHIP, tmp_path)
    rows = compare(records, vendor)
    assert {r.name for r in rows} >= {"out", "layer:hidden", "layer:out_spikes"}
    assert all(r.exact for r in rows), [r.line() for r in rows]
    assert records["layer:hidden"].max() > 1  # several spikes per step were exercised
    if thr_hi <= 300:
        assert np.abs(records["out"]).max() >= 32767  # saturation was exercised


def test_trained_net_deploys_and_verifies(tmp_path):
    cfg = default_config("xylo", epochs=2, train_limit=600, out_dir=str(tmp_path / "run"))
    train_chip(cfg, log=lambda *_: None)
    dep = deploy(tmp_path / "run" / "last.pt", "xylo", tmp_path / "dep", samples=96)
    assert dep.x.shape[1] >= 64
    lines: list[str] = []
    assert verify(dep, log=lines.append), lines
    vendor = vendor_records(CHIP, dep.out_dir)
    ours = 100.0 * float((CHIP.predict(dep.records["out"]) == dep.y).mean())
    theirs = 100.0 * float((CHIP.predict(vendor["out"]) == dep.y).mean())
    assert ours == theirs and ours > 40.0  # far above chance (12.5 %, 8 classes)
    for k, v in dep.records.items():
        assert np.array_equal(vendor[k], v), k


def test_runner_refuses_a_nir_file_that_is_not_spec(tmp_path):
    rng = np.random.default_rng(4)
    net = random_net(rng, (16,))
    _deploy_net(net, rng.integers(0, 16, size=(6, 2, 16)), tmp_path)
    other = random_net(np.random.default_rng(5), (16,))
    CHIP.write(other, tmp_path / "other")
    (tmp_path / "other" / "network.nir").replace(tmp_path / "network.nir")
    proc = run_runner(CHIP, str(tmp_path), str(tmp_path / "r.npz"))
    assert proc.returncode == 2
    assert "does not give spec.npz" in proc.stderr and "weights_in" in proc.stderr


def test_deployed_nir_is_accepted_by_the_mapper(tmp_path):
    net = random_net(np.random.default_rng(6), (20, 12))
    CHIP.write(net, tmp_path)
    ok, msg = vendor_map(CHIP, tmp_path / "network.nir")
    assert ok, msg


def test_fitting_export_is_accepted_by_both(tmp_path):
    res = get_exporter("xylo").export(xylo_graph(hidden=(32, 16)), tmp_path / "fits.nir")
    assert res.report.fits
    ok, msg = vendor_map(CHIP, res.paths[0])
    assert ok, msg


@pytest.mark.parametrize("name", sorted(PLANTED))
def test_planted_violation_rejected_by_check_and_mapper(tmp_path, name):
    make, words = PLANTED[name]
    graph = make()
    report = get_exporter("xylo").check(graph)
    assert not report.fits and any(words in v.message() for v in report.violations)
    path = write_nir104(rockpool_graph(graph), tmp_path / f"{name}.nir")
    ok, msg = vendor_map(CHIP, path)
    assert not ok, f"the vendor mapper accepted {name}"
    assert "rockpool syns61201.mapper" in msg
