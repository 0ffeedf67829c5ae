"""Smoke test of the machinery of bench/does_trt_help.py (protocol, cache, statistics, report)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dth():
    spec = importlib.util.spec_from_file_location(
        "does_trt_help", ROOT / "bench" / "does_trt_help.py"
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules["does_trt_help"] = mod
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop("does_trt_help", None)


def _tiny(dth):
    return {
        **dth.QUICK,
        "sizes": [48],
        "epochs": {"48": 2},
        "seeds": [0, 1],
        "lambdas": [1e-2],
        "decays": [0.5],
        "test_limit": 60,
        "val_limit": 40,
        "fisher_batches": 1,
        "sharp_samples": 16,
        "sharp_iters": 2,
    }


def test_protocol_runs_resumes_and_is_byte_identical(dth, tmp_path):
    threads, determ = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    proto = _tiny(dth)
    try:
        dth.run_all(proto, tmp_path / "a", None, verbose=False)
        dth.run_all(proto, tmp_path / "b", None, verbose=False)
        cells = sorted(p.name for p in (tmp_path / "a" / "cells").glob("*.json"))
        assert len(cells) == 2 * 5  # seeds x (tet, sdt, ce, trt0, one TRT setting)
        for name in cells:
            assert (tmp_path / "a" / "cells" / name).read_bytes() == (
                tmp_path / "b" / "cells" / name
            ).read_bytes()
        # resumable: a cached run is not retrained (its file is left untouched)
        victim = tmp_path / "a" / "cells" / cells[0]
        victim.write_text(victim.read_text())
        mtime = victim.stat().st_mtime_ns
        dth.run_all(proto, tmp_path / "a", None, verbose=False)
        assert victim.stat().st_mtime_ns == mtime
        md_a = dth.report(tmp_path / "a", plots=False)
        md_b = dth.report(tmp_path / "b", plots=False)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(determ)
    assert md_a == md_b
    assert (tmp_path / "a" / "summary.json").read_bytes() == (
        tmp_path / "b" / "summary.json"
    ).read_bytes()
    assert "TRT λ=1e-02 δ=0.5" in md_a and "vs" in md_a
    run = dth.json.loads((tmp_path / "a" / "cells" / cells[0]).read_text())
    for key in (
        "final_test_acc",
        "best_test_acc",
        "gap_pp",
        "centroid_last",
        "top_eigenvalue",
        "exit_mean_t",
        "epoch_train_99",
        "history",
    ):
        assert key in run
    assert "seconds" not in (tmp_path / "a" / "cells" / cells[0]).read_text()
    # the TRT regularizer's share is recorded for TRT and zero otherwise
    trt = dth.json.loads(
        (tmp_path / "a" / "cells" / "mnist5k_n48_trt-l1e-02-d0.5_s0.json").read_text()
    )
    ce = dth.json.loads((tmp_path / "a" / "cells" / "mnist5k_n48_ce_s0.json").read_text())
    assert 0 < trt["reg_share_first_epoch"] < 1 and ce["reg_share_first_epoch"] == 0


def test_paired_statistics(dth):
    a = [1.0, 2.0, 3.5, 4.0, 6.0]
    b = [0.5, 1.0, 3.0, 2.0, 4.5]
    r = dth.paired(a, b)
    d = [x - y for x, y in zip(a, b, strict=True)]
    mean = sum(d) / 5
    sd = math.sqrt(sum((v - mean) ** 2 for v in d) / 4)
    assert r["mean"] == pytest.approx(mean)
    assert r["ci_high"] - r["mean"] == pytest.approx(2.776 * sd / math.sqrt(5), rel=1e-3)
    scipy = pytest.importorskip("scipy.stats")
    assert r["p_t"] == pytest.approx(scipy.ttest_rel(a, b).pvalue, rel=1e-6)
    assert r["p_wilcoxon"] == pytest.approx(scipy.wilcoxon(a, b, method="exact").pvalue, rel=1e-6)
    # five seeds all in one direction: the smallest two-sided exact Wilcoxon p is 2/32
    assert dth.wilcoxon_exact_p([1, 2, 3, 4, 5]) == pytest.approx(0.0625)
    assert dth.holm([0.01, 0.04, None, 0.03]) == [0.03, 0.06, None, 0.06]


def test_t_fallback_matches_table(dth, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_scipy(name, *args, **kwargs):
        if name.startswith("scipy"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_scipy)
    assert dth._t975(4) == 2.776
    assert 2 * dth._t_sf(2.776, 4) == pytest.approx(0.05, abs=5e-4)
