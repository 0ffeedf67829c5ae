"""``trt-nm analyze`` and ``bench/compare_losses.py --quick`` end to end (issue 8)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from trt_nm.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    from trt_nm.config import TrainConfig
    from trt_nm.training.trainer import Trainer

    out = tmp_path_factory.mktemp("run")
    cfg = TrainConfig(epochs=1, train_limit=64, test_limit=32, batch_size=32, T=2, device="cpu",
                      out_dir=str(out), fisher_epochs=(1,))
    Trainer(cfg, progress=False, log=lambda *a: None).fit()
    return out


def test_analyze_fisher_cli(run_dir, tmp_path, capsys):
    out = tmp_path / "a"
    assert main(["analyze", "fisher", str(run_dir / "last.pt"), "--dataset", "mnist5k",
                 "--batches", "2", "--batch-size", "16", "--out", str(out)]) == 0
    data = json.loads((out / "fisher.json").read_text())
    rec = data["records"][0]
    assert len(rec["trace"]) == 2 and rec["batches"] == 2 and rec["samples"] == 32
    assert 1.0 <= rec["centroid"] <= 2.0
    assert (out / "fisher.png").stat().st_size > 1000
    assert "information centroid" in capsys.readouterr().out


def test_analyze_fisher_during_training(run_dir, tmp_path, capsys):
    assert main(["analyze", "fisher", str(run_dir), "--during-training", "--out", str(tmp_path)]) == 0
    assert "epoch 1:" in capsys.readouterr().out
    assert (tmp_path / "fisher_during_training.png").is_file()


def test_analyze_sharpness_cli(run_dir, tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["analyze", "sharpness", str(run_dir), "--samples", "16", "--batch-size", "16",
                 "--iters", "2", "--points", "3", "--grid", "2", "--out", str(out)]) == 0
    data = json.loads((out / "sharpness.json").read_text())
    assert data["samples"] == 16 and len(data["slice_1d"]) == 3 and len(data["surface_2d"]) == 2
    assert data["power_iterations"] >= 1
    assert (out / "sharpness.png").stat().st_size > 1000
    assert "top Hessian eigenvalue" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["analyze", "fisher", "{missing}"],
        ["analyze", "fisher", "{bad}"],
        ["analyze", "fisher", "{run}", "--dataset", "nosuch"],
        ["analyze", "sharpness", "{run}", "--loss", "nosuch"],
        ["analyze", "fisher", "{empty}", "--during-training"],
    ],
)
def test_analyze_errors_are_one_line(argv, run_dir, tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    empty = tmp_path / "empty"
    empty.mkdir()
    subs = {"{missing}": str(tmp_path / "nope.pt"), "{bad}": str(bad), "{run}": str(run_dir), "{empty}": str(empty)}
    assert main([subs.get(a, a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("trt-nm: error:") and err.count("\n") == 1
    assert bad.read_bytes() == b"not a checkpoint"  # nothing destroyed


def _bench():
    spec = importlib.util.spec_from_file_location("compare_losses", ROOT / "bench" / "compare_losses.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_compare_losses_quick_is_reproducible(tmp_path):
    bench = _bench()
    args = ["--quick", "--losses", "trt,sdt", "--seeds", "0"]
    assert bench.main([*args, "--out", str(tmp_path / "a")]) == 0
    assert bench.main([*args, "--out", str(tmp_path / "b")]) == 0
    a = json.loads((tmp_path / "a" / "results.json").read_text())["runs"]
    b = json.loads((tmp_path / "b" / "results.json").read_text())["runs"]
    drop = {"train_seconds", "history"}
    assert [{k: v for k, v in r.items() if k not in drop} for r in a] == [
        {k: v for k, v in r.items() if k not in drop} for r in b
    ]
    r = a[0]
    assert {"final_test_acc", "best_test_acc", "gap_pp", "test_acc_per_t", "centroid_last",
            "top_eigenvalue", "exit_mean_t"} <= set(r)
    assert 1.0 <= r["exit_mean_t"] <= 4.0 and 1.0 <= r["centroid_last"] <= 4.0
    table = (tmp_path / "a" / "table.md").read_text()
    assert "| mnist5k | TRT |" in table and "| mnist5k | SDT |" in table
    assert bench.main(["--quick", "--losses", "nosuch", "--out", str(tmp_path / "c")]) == 2
