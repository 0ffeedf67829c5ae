"""trt-nm report / simulate: files, spike counts vs forward hooks, and bad input."""

from __future__ import annotations

import json

import nir
import numpy as np
import torch

from trt_nm.models import build_model
from trt_nm.nir.io import to_nir, write_nir
from trt_nm.report.build import build_report, load_split, parse_exit_option, write_report
from trt_nm.training.checkpoint import save_checkpoint


def _model():
    torch.manual_seed(0)
    m = build_model("mlp", input_size=(28, 28), hidden=(32,), T=3).eval()
    with torch.no_grad():
        m.body[1].weight.mul_(6.0)  # make the untrained net fire
    return m


def test_report_files_and_hook_counts(tmp_path):
    model = _model()
    graph = to_nir(model)
    rep = build_report(graph, dataset="mnist5k", T=3, limit=40, calib_limit=40,
                       exits=[parse_exit_option("calibrate:1"), parse_exit_option("confidence:0.5")],
                       targets=["cmos45nm", "loihi"])
    # spike counts in the report equal spikes counted by forward hooks on the same model
    ds = load_split("mnist5k", "test", 3, limit=40)
    x = torch.stack([ds[i][0] for i in range(len(ds))]).transpose(0, 1)
    counted = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: counted.__setitem__(n, float(o.sum())))
             for n, m in model.neurons()]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    layer_spikes = {r["name"]: r["spikes"] for r in rep["layers"] if "spikes" in r}
    assert set(layer_spikes) == {n.replace(".", "_") for n in counted}
    for n, s in counted.items():
        assert layer_spikes[n.replace(".", "_")] * 40 == s
    assert sum(counted.values()) > 0
    assert len(rep["accuracy_per_timestep"]) == 3 and len(rep["early_exit"]) == 4
    paths = write_report(rep, tmp_path / "rep")
    data = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert data["counting_rule"] and data["dataset"]["calib_split"] == "val"
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "Early exit" in md and "Energy per inference" in md and "ANN comparison" in md
    for key in ("accuracy_vs_timestep", "exit_tradeoff", "spikes_per_layer", "energy_per_target"):
        assert paths[key].read_bytes()[:4] == b"\x89PNG"


def test_cli_report_and_bad_input(tmp_path, cli, capsys):
    from trt_nm.cli.main import main

    model = _model()
    nir_path = write_nir(to_nir(model), tmp_path / "m.nir")
    save_checkpoint(tmp_path / "m.pt", {"model": model.state_dict(), "model_spec": model.spec, "epoch": 0})
    r = cli("report", str(nir_path), "--dataset", "mnist5k", "--limit", "30", "--out", str(tmp_path / "out"),
            "--exit", "calibrate:0.5", "--exit", "margin:2", "--target", "cmos45nm", "--no-plots")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / "report.json").exists() and "report written" in r.stdout
    assert main(["simulate", str(tmp_path / "m.pt"), "--dataset", "mnist5k", "--limit", "30", "--exit", "entropy:0.3"]) == 0
    assert "exit entropy:0.3" in capsys.readouterr().out

    def bad(*args, match):
        capsys.readouterr()
        assert main(list(args)) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and match in lines[0], lines

    (tmp_path / "afile").write_text("keep me")
    bad("report", str(nir_path), "--limit", "8", "--out", str(tmp_path / "afile"), match="is a file")
    assert (tmp_path / "afile").read_text() == "keep me"
    bad("simulate", str(nir_path), "--limit", "8", "--exit", "confidence=0.9", match="exit spec")
    bad("simulate", str(nir_path), "--limit", "8", "--exit", "calibrate:x", match="exit spec")
    bad("simulate", str(nir_path), "--limit", "1", "--exit", "calibrate:0.5", match="one class")
    bad("simulate", str(nir_path), "--limit", "8", "--target", "gpu", match="valid energy profiles")
    # a NIR file without dt, and one with a node the simulator cannot run
    g = to_nir(model)
    g.metadata = {k: v for k, v in g.metadata.items() if k != "dt"}
    nir.write(str(tmp_path / "nodt.nir"), g)
    bad("simulate", str(tmp_path / "nodt.nir"), "--limit", "8", "--exit", "margin:1", match="dt")
    assert main(["simulate", str(tmp_path / "nodt.nir"), "--limit", "8", "--exit", "margin:1", "--dt", "1e-4"]) == 0
    g = to_nir(model)
    g.nodes["body_3"] = nir.Delay(delay=np.ones(g.nodes["body_3"].v_threshold.shape))
    nir.write(str(tmp_path / "delay.nir"), g)
    bad("simulate", str(tmp_path / "delay.nir"), "--limit", "8", "--exit", "margin:1", match="Delay")


def test_report_flags_targets_whose_check_rejects_the_model(tmp_path):
    """mlp on 28x28 MNIST: 784 inputs > Xylo's 16, LIF neurons on IF-only Speck. Their rows say
    "check fails: <first violation>" wherever energy is shown; Speck has no published energy."""
    graph = to_nir(_model())
    rep = build_report(graph, dataset="mnist5k", T=3, limit=16, exits=[parse_exit_option("margin:1")],
                       targets=["xylo", "speck", "cmos45nm", "loihi"])
    rows = rep["targets"]
    assert list(rows) == ["xylo", "speck", "generic45nm", "loihi"]  # the alias resolved
    assert rows["xylo"]["fits"] is False and rows["xylo"]["check"].startswith("check fails: ")
    assert rows["xylo"]["check"] == "check fails: " + rows["xylo"]["violations"][0]
    assert rows["speck"]["fits"] is False and rows["speck"]["energy"] == "not published"
    assert rows["generic45nm"]["fits"] is True and rows["generic45nm"]["check"] == "fits"
    assert rows["loihi"]["fits"] is None and "energy-only" in rows["loihi"]["check"]
    for point in [rep["full_T"], *rep["early_exit"]]:
        assert set(point["energy"]) == {"xylo", "generic45nm", "loihi"}  # no number for speck
        assert point["energy"]["xylo"]["check"] == rows["xylo"]["check"]
        assert point["energy"]["xylo"]["status"] == "provisional"
    assert rep["energy_profiles"]["generic45nm"]["name"] == "cmos45nm"
    paths = write_report(rep, tmp_path / "rep")
    md = paths["md"].read_text()
    xylo_row = next(line for line in md.splitlines() if line.startswith("| xylo |"))
    assert "provisional" in xylo_row and rows["xylo"]["check"] in xylo_row
    speck_row = next(line for line in md.splitlines() if line.startswith("| speck |"))
    assert speck_row.count("not published") >= 2 and "check fails" in speck_row
    assert paths["energy_per_target"].read_bytes()[:4] == b"\x89PNG"
    data = json.loads(paths["json"].read_text())
    assert data["targets"]["xylo"]["check"].startswith("check fails")


def test_exit_options_are_checked_one_line(tmp_path, capsys):
    """Out-of-range thresholds, EPS and delta are one-line errors naming the valid range,
    before any model is loaded."""
    from trt_nm.cli.main import main

    nir_path = write_nir(to_nir(_model()), tmp_path / "m.nir")
    cases = [(["--exit", "confidence:2"], "(0, 1]"), (["--exit", "confidence:-0.5"], "(0, 1]"),
             (["--exit", "entropy:-1"], ">= 0, finite"), (["--exit", "margin:inf"], ">= 0, finite"),
             (["--exit", "calibrate:1", "--delta", "0.1"], "[0, 1)"),
             (["--exit", "calibrate:-0.1", "--delta", "0.1"], "[0, 1)"),
             (["--exit", "calibrate:0.05", "--delta", "1.5"], "(0, 1)"),
             (["--exit", "calibrate:0.05", "--delta", "0"], "(0, 1)"),
             (["--exit", "calibrate:0.05", "--delta", "nan"], "(0, 1)"),
             (["--exit", "margin:2", "--delta", "0.1"], "calibrate:EPS")]
    for args, words in cases:
        capsys.readouterr()
        assert main(["simulate", str(nir_path), "--limit", "8", *args]) == 2, args
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and words in lines[0], (args, lines)


def test_guaranteed_calibration_in_cli_and_report(tmp_path, capsys):
    """--exit calibrate:EPS --delta D: the CLI and the report show EPS, D, the bound and the
    measured losses; executed exit is run and checked identical; a collapse to t = 1 is said."""
    from trt_nm.cli.main import main

    nir_path = write_nir(to_nir(_model()), tmp_path / "m.nir")
    out = tmp_path / "rep"
    assert main(["report", str(nir_path), "--limit", "60", "--out", str(out), "--exit", "calibrate:0.3:confidence",
                 "--delta", "0.2", "--exit", "margin:1", "--target", "cmos45nm"]) == 0
    text = capsys.readouterr().out
    assert "guarantee: EPS 0.3, delta 0.2, bound" in text and "executed:" in text
    data = json.loads((out / "report.json").read_text())
    row = data["early_exit"][0]
    g = row["guarantee"]
    assert g["eps"] == 0.3 and g["delta"] == 0.2 and g["n"] == 60 and 0 <= g["bound"] < 1
    assert g["val_loss_pp"] == row["calibration"]["accuracy_loss_pp"] and g["test_loss_pp"] == row["accuracy_loss_pp"]
    assert g["val_loss_pp"] / 100 <= g["bound"]
    for e in data["early_exit"]:
        assert e["executed"]["identical_to_post_hoc"] and e["executed"]["samples_per_s"] > 0
    md = (out / "report.md").read_text()
    assert "| EPS | delta |" in md and "0.3 (30 pp)" in md and "bound on the loss" in md
    assert "binomial standard error" in md and "+- s.e. (pp)" in md
    if row["calibration"]["mean_timesteps"] == 1.0:  # this untrained net: flat accuracy over t
        assert "collapsed to a single step" in md and "collapsed to a single step" in row["note"]


def test_plots_log_spikes_and_coinciding_points(tmp_path):
    from trt_nm.report.plots import exit_row_colors, write_plots

    rep = build_report(to_nir(_model()), dataset="mnist5k", T=3, limit=40, calib_limit=40, executed=False,
                       exits=[parse_exit_option("calibrate:5"), parse_exit_option("confidence:0.1")],
                       targets=["cmos45nm", "xylo"])
    assert all("executed" not in e for e in rep["early_exit"])
    colors = exit_row_colors(rep)
    kinds = [e["kind"] for e in rep["early_exit"]]
    assert len(set(colors)) == len(colors)  # rows of one kind get shades of its colour
    assert colors[kinds.index("entropy")] != colors[kinds.index("margin")]
    for log in (None, True, False):
        paths = write_plots(rep, tmp_path / str(log), spikes_log=log)
        assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths.values())
