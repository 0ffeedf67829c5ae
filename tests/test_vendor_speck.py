"""Speck against sinabs 3.1.3 itself (the cached vendor venv, built on first use, ~80 s).

Conformance: random integer nets and a briefly trained net, deployed and run through sinabs'
discretized ``DynapcnnNetwork`` forward, agree spike for spike with trt_nm's simulation on
every layer; check parity: each planted design-rule violation makes trt_nm's ``--check`` exit 3
AND sinabs' mapper reject the graph. (samna's specksim cannot be installed offline; sinabs'
software forward is the vendor reference.)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from trt_nm.chip import get_chip
from trt_nm.exporters.nir104 import write_nir104

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_chip_speck import PLANTED, planted_graph, random_net  # noqa: E402

pytestmark = pytest.mark.vendor
CHIP = get_chip("speck")


@pytest.fixture(scope="module")
def vendor():
    from trt_nm.chip.vendor import vendor_python

    return vendor_python(CHIP)


def _deploy_and_run(net, x, out_dir: Path) -> tuple[dict, dict]:
    from trt_nm.chip.vendor import vendor_records

    records = CHIP.simulate(net, x)
    CHIP.write(net, out_dir)
    np.savez(out_dir / "expected.npz", x=x, **records)
    return records, vendor_records(CHIP, out_dir)


ARCHS = [
    [("conv", 8, 3, 2, 0, 2), ("conv", 16, 3, 1, 0, 1), ("dense", 10)],
    [("conv", 4, 5, 1, 2, 4), ("conv", 6, 3, 2, 1, 1), ("dense", 7)],
    [("conv", 6, 1, 1, 0, 2), ("conv", 5, 4, 3, 0, 1), ("conv", 4, 1, 1, 0, 1), ("dense", 3)],
]


@pytest.mark.parametrize("arch", range(len(ARCHS)))
def test_random_integer_nets_agree_spike_for_spike(vendor, tmp_path, arch):
    net = random_net(ARCHS[arch], seed=10 + arch, thr_range=(10, 300))
    x = np.random.default_rng(arch).integers(0, 6, (6, 64, 2, 34, 34))
    ours, theirs = _deploy_and_run(net, x, tmp_path)
    for k in ours:
        assert k in theirs, k
        assert theirs[k].shape == ours[k].shape, k
        assert np.array_equal(theirs[k], ours[k]), f"{k}: {(theirs[k] != ours[k]).sum()} values differ"
    assert ours["out"].sum() > 0 and all(v.sum() > 0 for k, v in ours.items())
    assert json.loads(str(theirs["discretized_unchanged"])) is True
    mem = json.loads(str(theirs["memory_summary"]))
    table = json.loads((tmp_path / "memory_summary.json").read_text())
    for row in table["layers"]:
        assert mem["kernel"][row["name"]] == row["kernel"] and mem["neuron"][row["name"]] == row["neuron"]
    cores = json.loads(str(theirs["cores"]))
    for row, spec in zip(cores, net.meta["layers"]):
        assert row["threshold_high"] == int(net.arrays[f"{spec['name']}.threshold"])
        assert row["threshold_low"] == -row["threshold_high"] and not row["return_to_zero"]
    assert json.loads(str(theirs["versions"]))["sinabs"] == "3.1.3"


def test_trained_net_deploys_and_verifies(vendor, tmp_path):
    from trt_nm.chip.deploy import deploy, verify
    from trt_nm.chip.train import ChipTrainConfig, train_chip

    cfg = ChipTrainConfig(target="speck", task=CHIP.task, epochs=1, batch_size=32, train_limit=256,
                          test_limit=64, out_dir=str(tmp_path / "run"))
    train_chip(cfg, log=lambda *a: None)
    dep = deploy(tmp_path / "run" / "last.pt", "speck", tmp_path / "dep", samples=64)
    lines: list[str] = []
    assert verify(dep, log=lines.append), "\n".join(lines)
    report = json.loads((tmp_path / "dep" / "verify.json").read_text())
    assert report["agree"] and report["records"]["out"][1] == dep.records["out"].size
    assert dep.x.shape[1] >= 64
    acc = [ln for ln in lines if "accuracy:" in ln][0]
    ours, theirs = (float(p.split()[-1].rstrip("%")) for p in acc.split(","))
    assert ours == theirs


def _check(path: Path, capsys) -> tuple[int, str]:
    """What ``trt-nm export ... --target speck --check`` does with the graph in ``path``
    (``run_target``: prepare/quantize, check; exit code 3 on a violation)."""
    import argparse

    import nir

    from trt_nm.exporters.cli import run_target

    graph = nir.read(str(path), type_check=False)
    args = argparse.Namespace(target="speck", check=True, convert=[], quantize=None, out=None, dt=None)
    code = run_target(args, graph, None)
    return code, capsys.readouterr().out


def test_ok_graph_fits_both(vendor, tmp_path, capsys):
    from trt_nm.chip.vendor import vendor_map

    path = write_nir104(planted_graph("ok"), tmp_path / "ok.nir")
    accepted, msg = vendor_map(CHIP, path)
    assert accepted, msg
    code, text = _check(path, capsys)
    assert code == 0, text


@pytest.mark.parametrize("kind", sorted(PLANTED))
def test_planted_violation_rejected_by_both(vendor, tmp_path, kind, capsys):
    from trt_nm.chip.vendor import vendor_map

    path = write_nir104(planted_graph(kind), tmp_path / f"{kind}.nir")
    accepted, msg = vendor_map(CHIP, path)
    assert not accepted, f"sinabs accepted {kind}: {msg}"
    assert "sinabs rejects" in msg
    if kind == "non_square_kernel":  # nir 1.0.8 reads a 3x2 conv's output shape as 6x6
        from trt_nm.exporters import get_exporter

        report = get_exporter("speck").check(planted_graph(kind))
        code, text = (0 if report.fits else 3), report.text()
    else:
        code, text = _check(path, capsys)
    assert code == 3, text
    assert PLANTED[kind] in text


def test_exporter_file_of_a_per_neuron_shaped_graph_is_accepted(vendor, tmp_path):
    """trt_nm graphs carry per-neuron (uniform) threshold arrays and r = 1/dt; the exporter
    writes them with one threshold per layer, which sinabs maps."""
    import nir

    from trt_nm.chip.vendor import vendor_map
    from trt_nm.exporters import get_exporter
    from trt_nm.exporters.speck import expand_neurons

    g = expand_neurons(planted_graph("ok"))
    nodes = dict(g.nodes)
    for name in ("l0_if", "l1_if", "l2_if"):
        thr = np.asarray(nodes[name].v_threshold, np.float32) * 1e-4
        nodes[name] = nir.IF(r=np.full_like(thr, 1e4), v_threshold=thr, v_reset=np.zeros_like(thr))
    g = nir.NIRGraph(nodes=nodes, edges=list(g.edges), metadata={**g.metadata, "dt": 1e-4}, type_check=False)
    assert np.asarray(g.nodes["l0_if"].v_threshold).shape == (8, 16, 16)
    res = get_exporter("speck").export(g, tmp_path / "model.speck.nir")
    accepted, msg = vendor_map(CHIP, res.paths[0])
    assert accepted, msg
