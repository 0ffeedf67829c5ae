"""Does TRT help? An overfitting protocol with a lambda/delta sweep and paired tests across seeds.

The TRT paper (arXiv 2506.19256) claims that its time-decaying weight regularizer makes SNNs
overfit less and land in flatter minima. This script tests that claim where it applies: small
training sets trained far past 99 % train accuracy, TRT with lambda swept over the paper's value
and 10x / 100x / 1000x and delta in {0.25, 0.5}, against TET, SDT and per-timestep CE, with the
same seeds, initial weights and data order for every loss (paired design).

Protocol (``PROTOCOL`` below; every number is in the cached JSON):

* data: the first ``n`` samples (class-balanced prefix) of the ``train`` split of ``mnist5k``
  (direct coding) and ``nmnist5k`` (event frames), n in {300, 1000}; the full ``test`` split
  (1,000 samples); the ``val`` split (400) only for early-exit calibration.
* model: ``mlp`` (Flatten-256-BN-LIF-256-BN-LIF-Linear, the paper's LIF), T = 4, built with
  :func:`trt_nm.models.build_model` after ``torch.manual_seed(seed)``: the same initial weights
  for every loss of a seed.
* training: Adam lr 1e-3, cosine to 0 over all steps (per step), batch 32, a fixed number of
  epochs per n; the data order is drawn from a generator seeded with ``seed`` (the same batches
  for every loss of a seed). Losses are :class:`trt_nm.losses.Loss` with the library defaults
  except TRT's lambda/delta (eta 0.05, eps 1e-5; TET lambda 1e-3, phi 1).
* after every epoch (eval mode, logits averaged over T): train accuracy on the n samples, test
  accuracy; the epoch at which train accuracy first reaches 99 % is recorded; so is the TRT
  regularizer's share of the loss (mean over the epoch's steps of ``r / L``).
* at the end: final and best-over-epochs test accuracy (the paper logs the best), train-test gap,
  Fisher trace per timestep and its centroid (:func:`trt_nm.analysis.fisher.fisher_trace_per_timestep`,
  after epoch 1 and at the end), the top Hessian eigenvalue of the SDT loss on the first 256
  training samples (:func:`trt_nm.analysis.sharpness.analyze_sharpness`), and the mean exit step
  of the ``confidence`` rule calibrated on ``val`` for <= 0.5 pp (:mod:`trt_nm.early_exit`),
  applied to ``test``.
* statistics: for every TRT setting and every baseline, paired differences over seeds; mean,
  95 % t confidence interval, paired t-test p and exact Wilcoxon signed-rank p; Holm-adjusted p
  over the family of all comparisons of one metric.

Every run is cached as one JSON file under ``--out`` (default ``bench/does_trt_help``,
``cells/``); ``--run`` skips runs already cached (resumable), ``--report`` rebuilds
``summary.json``, ``table.md``, ``tables_full.md`` and the plots from the JSON alone, and with
``--readme`` rewrites the marked table in README.md. Wall-clock seconds go to ``timings.json``
only, so the results JSON is byte-identical across reruns on the same machine (one CPU thread,
``torch.use_deterministic_algorithms(True)``, floats rounded to 6 significant digits).

Usage::

    nice -n 10 python bench/does_trt_help.py --run              # everything (~45 min on 1 core)
    python bench/does_trt_help.py --report [--readme]           # tables + plots from the JSON
    python bench/does_trt_help.py --quick --run --report --out /tmp/dth   # smoke test (seconds)
    python bench/does_trt_help.py --run --only mnist5k:300      # one (dataset, n) block
    python bench/does_trt_help.py --paper-commands              # paper-scale GPU commands
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "does_trt_help"
README = HERE.parent / "README.md"
README_BEGIN = "<!-- does_trt_help:table begin (bench/does_trt_help.py --report --readme) -->"
README_END = "<!-- does_trt_help:table end -->"

PAPER_LAMBDA = 1e-5
LAMBDAS = (1e-5, 1e-4, 1e-3, 1e-2)
DECAYS = (0.25, 0.5)
BASELINES = ("tet", "sdt", "ce")
#: ablation: TRT's data terms alone, (1-eta) CE + eta MSE with lambda = 0; TRT - TRT0 isolates the regularizer
ABLATION = "trt0"
COMPARED = (*BASELINES, ABLATION)

#: the full protocol; --quick replaces it with QUICK
PROTOCOL: dict[str, Any] = {
    "datasets": ["mnist5k", "nmnist5k"],
    "sizes": [300, 1000],
    "epochs": {"300": 30, "1000": 15},
    "seeds": [0, 1, 2, 3, 4],
    "arch": "mlp",
    "T": 4,
    "batch_size": 32,
    "lr": 1e-3,
    "lambdas": list(LAMBDAS),
    "decays": list(DECAYS),
    "eta": 0.05,
    "eps": 1e-5,
    "test_limit": 0,  # 0 = the whole split
    "val_limit": 0,
    "fisher_batches": 8,
    "fisher_batch_size": 32,
    "sharp_samples": 256,
    "sharp_iters": 20,
    "sharp_tol": 1e-3,
    "exit_budget_pp": 0.5,
    "train_target": 99.0,
}
QUICK: dict[str, Any] = {
    **PROTOCOL,
    "datasets": ["mnist5k"],
    "sizes": [96],
    "epochs": {"96": 6},
    "seeds": [0, 1],
    "lambdas": [1e-5, 1e-2],
    "decays": [0.5],
    "test_limit": 200,
    "val_limit": 100,
    "fisher_batches": 2,
    "sharp_samples": 32,
    "sharp_iters": 3,
}


# ---------------------------------------------------------------------- variants
def variants(proto: dict[str, Any]) -> list[dict[str, Any]]:
    """Loss settings of the protocol: the baselines, then TRT over lambda x delta."""
    out = [{"name": b, "loss": b, "hp": {}} for b in BASELINES]
    out.append(
        {
            "name": ABLATION,
            "loss": "trt",
            "hp": {"lamb": 0.0, "decay": 0.5, "eps": proto["eps"], "eta": proto["eta"]},
        }
    )
    for lam in proto["lambdas"]:
        for dec in proto["decays"]:
            out.append(
                {
                    "name": trt_name(lam, dec),
                    "loss": "trt",
                    "hp": {"lamb": lam, "decay": dec, "eps": proto["eps"], "eta": proto["eta"]},
                }
            )
    return out


def trt_name(lam: float, dec: float) -> str:
    return f"trt-l{lam:.0e}-d{dec:g}"


def run_name(dataset: str, n: int, variant: str, seed: int) -> str:
    return f"{dataset}_n{n}_{variant}_s{seed}"


# ---------------------------------------------------------------------- JSON
def _round(x: Any, sig: int = 6) -> Any:
    """Floats to ``sig`` significant digits (recursively), so the JSON is stable text."""
    if isinstance(x, float):
        if not math.isfinite(x):
            return None
        return float(f"{x:.{sig}g}")
    if isinstance(x, dict):
        return {str(k): _round(v, sig) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_round(v, sig) for v in x]
    return x


def dumps(obj: Any) -> str:
    return json.dumps(_round(obj), sort_keys=True, indent=1) + "\n"


def write_text(path: Path, text: str) -> None:
    """Atomic write (a killed run leaves no half file behind)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


# ---------------------------------------------------------------------- data
_DATA: dict[tuple[str, str, int], tuple[torch.Tensor, torch.Tensor]] = {}


def split_tensors(
    dataset: str, split: str, T: int, limit: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``x [N, T, ...]`` float32 and ``y [N]`` of the first ``limit`` samples (0 = all)."""
    from trt_nm.datasets import dataset_info, get_dataset

    key = (dataset, split, T)
    if key not in _DATA:
        kw = {"encoding": "direct"} if dataset_info(dataset).kind == "static" else {}
        ds = get_dataset(dataset, None, split, T, **kw)
        xs, ys = zip(*(ds[i] for i in range(len(ds))), strict=True)
        _DATA[key] = (
            torch.stack([torch.as_tensor(x, dtype=torch.float32) for x in xs]),
            torch.tensor([int(y) for y in ys], dtype=torch.long),
        )
    x, y = _DATA[key]
    return (x[:limit], y[:limit]) if limit else (x, y)


def batches(x: torch.Tensor, y: torch.Tensor, bs: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x[i : i + bs], y[i : i + bs]) for i in range(0, len(y), bs)]


# ---------------------------------------------------------------------- one run
def logits(model: torch.nn.Module, x: torch.Tensor, bs: int = 500) -> torch.Tensor:
    """Per-timestep logits ``[T, N, C]`` of ``x [N, T, ...]`` in eval mode."""
    model.eval()
    with torch.no_grad():
        return torch.cat([model(x[i : i + bs].transpose(0, 1)) for i in range(0, len(x), bs)], 1)


def accuracy(out: torch.Tensor, y: torch.Tensor) -> float:
    """% correct of the time-averaged logits (the paper's inference)."""
    return 100.0 * float((out.mean(0).argmax(1) == y).double().mean())


def one_run(
    proto: dict[str, Any], dataset: str, n: int, var: dict[str, Any], seed: int
) -> dict[str, Any]:
    from trt_nm.analysis.fisher import fisher_trace_per_timestep
    from trt_nm.analysis.sharpness import analyze_sharpness
    from trt_nm.datasets import dataset_info
    from trt_nm.early_exit import calibrate, evaluate_exit
    from trt_nm.losses import Loss, regularized_parameters, trt_regularizer
    from trt_nm.metrics.accuracy import cumulative_mean
    from trt_nm.models import build_model

    T, bs = proto["T"], proto["batch_size"]
    epochs = int(proto["epochs"][str(n)])
    xtr, ytr = split_tensors(dataset, "train", T, n)
    if len(ytr) < n:
        raise SystemExit(f"{dataset} has only {len(ytr)} training samples, asked for {n}")
    xte, yte = split_tensors(dataset, "test", T, proto["test_limit"])
    xva, yva = split_tensors(dataset, "val", T, proto["val_limit"])
    info = dataset_info(dataset)

    torch.manual_seed(seed)
    model = build_model(
        proto["arch"],
        num_classes=info.num_classes,
        in_channels=info.in_channels,
        T=T,
        input_size=tuple(info.input_size),
    )
    loss_fn = Loss(var["loss"], **var["hp"])
    opt = torch.optim.Adam(model.parameters(), lr=proto["lr"])
    steps_per_epoch = math.ceil(n / bs)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(
        opt, T_max=epochs * steps_per_epoch, eta_min=0.0
    )
    order = torch.Generator()
    order.manual_seed(seed)
    hp = var["hp"]

    def fisher() -> dict[str, Any]:
        g = torch.Generator()
        g.manual_seed(seed)
        perm = torch.randperm(n, generator=g)
        fb = batches(xtr[perm], ytr[perm], proto["fisher_batch_size"])
        r = fisher_trace_per_timestep(model, fb, max_batches=proto["fisher_batches"])
        return {"trace": list(r.trace), "centroid": r.centroid}

    history: list[dict[str, Any]] = []
    fisher_first: dict[str, Any] = {}
    for epoch in range(1, epochs + 1):
        model.train()
        perm = torch.randperm(n, generator=order)
        tot = shares = 0.0
        for i in range(0, n, bs):
            idx = perm[i : i + bs]
            out = model(xtr[idx].transpose(0, 1))
            loss = loss_fn(out, ytr[idx], model.named_parameters())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach())
            if hp.get("lamb"):
                with torch.no_grad():
                    reg = trt_regularizer(
                        regularized_parameters(model.named_parameters()),
                        T,
                        lamb=hp["lamb"],
                        decay=hp["decay"],
                        eps=hp["eps"],
                    )
                shares += float(reg) / max(float(loss.detach()), 1e-12)
        train_acc = accuracy(logits(model, xtr), ytr)
        test_out = logits(model, xte)
        history.append(
            {
                "epoch": epoch,
                "loss": tot / steps_per_epoch,
                "reg_share": shares / steps_per_epoch,
                "train_acc": train_acc,
                "test_acc": accuracy(test_out, yte),
            }
        )
        if epoch == 1:
            fisher_first = fisher()

    final = history[-1]
    reached = [h["epoch"] for h in history if h["train_acc"] >= proto["train_target"]]
    best = max(history, key=lambda h: (h["test_acc"], -h["epoch"]))
    fisher_last = fisher()
    sub = batches(xtr[: proto["sharp_samples"]], ytr[: proto["sharp_samples"]], 128)
    sharp = analyze_sharpness(
        model,
        sub,
        Loss("sdt"),
        iters=proto["sharp_iters"],
        tol=proto["sharp_tol"],
        points=0,
        grid=0,
        seed=seed,
    )
    cal = calibrate(
        "confidence", cumulative_mean(logits(model, xva)), yva, proto["exit_budget_pp"], split="val"
    )
    cum_test = cumulative_mean(test_out)
    ex = evaluate_exit(cal.rule, cum_test, yte)
    per_t = [100.0 * float((cum_test[t].argmax(1) == yte).double().mean()) for t in range(T)]
    return {
        "dataset": dataset,
        "n": n,
        "variant": var["name"],
        "loss": var["loss"],
        "hp": hp,
        "seed": seed,
        "epochs": epochs,
        "steps": epochs * steps_per_epoch,
        "epoch_train_99": reached[0] if reached else None,
        "final_train_acc": final["train_acc"],
        "final_test_acc": final["test_acc"],
        "best_test_acc": best["test_acc"],
        "best_epoch": best["epoch"],
        "gap_pp": final["train_acc"] - final["test_acc"],
        "test_acc_per_t": per_t,
        "fisher_first": fisher_first["trace"],
        "centroid_first": fisher_first["centroid"],
        "fisher_last": fisher_last["trace"],
        "centroid_last": fisher_last["centroid"],
        "top_eigenvalue": sharp.eigenvalue.value,
        "eig_iterations": sharp.eigenvalue.iterations,
        "eig_converged": sharp.eigenvalue.converged,
        "sdt_loss_train": sharp.loss,
        "exit_rule": cal.rule.spec,
        "exit_mean_t": ex.mean_timesteps,
        "exit_test_acc": ex.accuracy,
        "exit_test_loss_pp": ex.accuracy_loss,
        "exit_val_loss_pp": cal.result.accuracy_loss,
        "reg_share_first_epoch": history[0]["reg_share"],
        "reg_share_last_epoch": final["reg_share"],
        "history": history,
    }


def plan(
    proto: dict[str, Any], only: list[str] | None = None
) -> list[tuple[str, int, dict[str, Any], int]]:
    out = []
    for d in proto["datasets"]:
        for n in proto["sizes"]:
            if only and f"{d}:{n}" not in only:
                continue
            for seed in proto["seeds"]:  # seed-major: partial results already pair up
                for var in variants(proto):
                    out.append((d, n, var, seed))
    return out


def run_all(proto: dict[str, Any], out: Path, only: list[str] | None, verbose: bool = True) -> None:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    cells = out / "cells"
    write_text(out / "protocol.json", dumps(proto))
    tpath = out / "timings.json"
    timings = json.loads(tpath.read_text()) if tpath.exists() else {}
    todo = plan(proto, only)
    t_start = time.perf_counter()
    for k, (d, n, var, seed) in enumerate(todo, 1):
        name = run_name(d, n, var["name"], seed)
        path = cells / f"{name}.json"
        if path.exists():
            continue
        t0 = time.perf_counter()
        r = one_run(proto, d, n, var, seed)
        dt = time.perf_counter() - t0
        write_text(path, dumps(r))
        timings[name] = round(dt, 2)
        timings["_total_s"] = round(
            sum(v for kk, v in timings.items() if not kk.startswith("_")), 1
        )
        write_text(tpath, json.dumps(timings, sort_keys=True, indent=1) + "\n")
        if verbose:
            print(
                f"[{k}/{len(todo)}] {name}: train {r['final_train_acc']:.1f}% (99% at ep {r['epoch_train_99']}) "
                f"test {r['final_test_acc']:.1f}% best {r['best_test_acc']:.1f}% gap {r['gap_pp']:.1f} "
                f"IC {r['centroid_last']:.2f} eig {r['top_eigenvalue']:.3g} exit {r['exit_mean_t']:.2f} "
                f"share {r['reg_share_last_epoch']:.3f} ({dt:.1f}s, {time.perf_counter() - t_start:.0f}s)",
                flush=True,
            )


# ---------------------------------------------------------------------- statistics
#: two-sided 95 % Student t quantiles t_{0.975, df} (any statistics table, e.g. NIST/SEMATECH
#: e-Handbook of Statistical Methods, section 1.3.6.7.2); used only when scipy is missing
T975 = {
    1: 12.706,
    2: 4.303,
    3: 3.182,
    4: 2.776,
    5: 2.571,
    6: 2.447,
    7: 2.365,
    8: 2.306,
    9: 2.262,
    10: 2.228,
    11: 2.201,
    12: 2.179,
    13: 2.160,
    14: 2.145,
    15: 2.131,
    19: 2.093,
    29: 2.045,
}


def _t_sf(t: float, df: int) -> float:
    """Upper tail P(T > t) of Student's t (scipy, else Simpson's rule on the density)."""
    try:
        from scipy import stats

        return float(stats.t.sf(t, df))
    except ImportError:
        c = math.gamma((df + 1) / 2) / (math.sqrt(df * math.pi) * math.gamma(df / 2))
        f = lambda u: c * (1 + u * u / df) ** (-(df + 1) / 2)  # noqa: E731
        a, m = 0.0, 2000
        h = abs(t) / m
        s = f(a) + f(abs(t)) + sum((4 if i % 2 else 2) * f(i * h) for i in range(1, m))
        upper = 0.5 - s * h / 3
        return upper if t >= 0 else 1 - upper


def _t975(df: int) -> float:
    try:
        from scipy import stats

        return float(stats.t.ppf(0.975, df))
    except ImportError:
        return T975.get(df) or T975[max(k for k in T975 if k <= df)]


def wilcoxon_exact_p(d: list[float]) -> float | None:
    """Exact two-sided Wilcoxon signed-rank p (zeros dropped, average ranks for ties)."""
    d = [v for v in d if abs(v) > 1e-12]
    n = len(d)
    if n == 0:
        return None
    order = sorted(range(n), key=lambda i: abs(d[i]))
    ranks = [0.0] * n
    i = 0
    while i < n:
        j = i
        while j + 1 < n and abs(abs(d[order[j + 1]]) - abs(d[order[i]])) < 1e-12:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    w_plus = sum(r for r, v in zip(ranks, d, strict=True) if v > 0)
    total = sum(ranks)
    # enumerate all 2^n sign patterns (n <= ~20 seeds)
    count = 0
    extreme = 0
    dev = abs(w_plus - total / 2)
    for mask in range(1 << n):
        w = sum(ranks[k] for k in range(n) if mask >> k & 1)
        count += 1
        if abs(w - total / 2) >= dev - 1e-9:
            extreme += 1
    return extreme / count


def paired(a: list[float], b: list[float]) -> dict[str, Any]:
    """Paired comparison of ``a - b`` over seeds: mean, sd, 95 % t CI, t-test p, Wilcoxon p."""
    d = [x - y for x, y in zip(a, b, strict=True)]
    n = len(d)
    mean = sum(d) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in d) / (n - 1)) if n > 1 else 0.0
    if n < 2:
        return {
            "n": n,
            "mean": mean,
            "sd": sd,
            "ci_low": None,
            "ci_high": None,
            "t": None,
            "p_t": None,
            "p_wilcoxon": None,
        }
    se = sd / math.sqrt(n)
    half = _t975(n - 1) * se
    if se > 0:
        t = mean / se
        p = min(1.0, 2 * _t_sf(abs(t), n - 1))
    else:
        t, p = (0.0, 1.0) if mean == 0 else (math.copysign(math.inf, mean), 0.0)
    return {
        "n": n,
        "mean": mean,
        "sd": sd,
        "ci_low": mean - half,
        "ci_high": mean + half,
        "t": t if math.isfinite(t) else None,
        "p_t": p,
        "p_wilcoxon": wilcoxon_exact_p(d),
    }


def holm(ps: list[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values (None stays None)."""
    idx = sorted((p, i) for i, p in enumerate(ps) if p is not None)
    m = len(idx)
    out: list[float | None] = [None] * len(ps)
    running = 0.0
    for k, (p, i) in enumerate(idx):
        running = max(running, min(1.0, (m - k) * p))
        out[i] = running
    return out


# ---------------------------------------------------------------------- report
METRICS = (
    "final_test_acc",
    "best_test_acc",
    "gap_pp",
    "centroid_last",
    "top_eigenvalue",
    "exit_mean_t",
)


def load_runs(out: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((out / "cells").glob("*.json"))]


def _mean_sd(v: list[float]) -> tuple[float, float]:
    m = sum(v) / len(v)
    return m, (math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0)


def summarize(proto: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-cell statistics and paired comparisons (deterministic given the runs)."""
    by: dict[tuple[str, int, str], dict[int, dict[str, Any]]] = {}
    for r in runs:
        by.setdefault((r["dataset"], int(r["n"]), r["variant"]), {})[int(r["seed"])] = r
    cells, comps = [], []
    for d in proto["datasets"]:
        for n in proto["sizes"]:
            for var in variants(proto):
                rs = by.get((d, n, var["name"]), {})
                if not rs:
                    continue
                seeds = sorted(rs)
                row: dict[str, Any] = {
                    "dataset": d,
                    "n": n,
                    "variant": var["name"],
                    "seeds": seeds,
                    "epochs": rs[seeds[0]]["epochs"],
                    "steps": rs[seeds[0]]["steps"],
                }
                for m in METRICS + (
                    "final_train_acc",
                    "reg_share_first_epoch",
                    "reg_share_last_epoch",
                    "centroid_first",
                ):
                    row[m] = _mean_sd([float(rs[s][m]) for s in seeds])
                e99 = [rs[s]["epoch_train_99"] for s in seeds]
                row["epoch_train_99"] = (
                    _mean_sd([float(e) for e in e99]) if None not in e99 else None
                )
                row["epoch_train_99_max"] = max(e99) if None not in e99 else None
                row["all_reached_99"] = all(
                    rs[s]["final_train_acc"] >= proto["train_target"] for s in seeds
                )
                row["eig_converged"] = sum(bool(rs[s]["eig_converged"]) for s in seeds)
                cells.append(row)
            for var in variants(proto):
                if var["loss"] != "trt" or var["name"] == ABLATION:
                    continue
                a = by.get((d, n, var["name"]), {})
                for b_name in COMPARED:
                    b = by.get((d, n, b_name), {})
                    seeds = sorted(set(a) & set(b))
                    if len(seeds) < 2:
                        continue
                    comp = {
                        "dataset": d,
                        "n": n,
                        "trt": var["name"],
                        "baseline": b_name,
                        "seeds": seeds,
                    }
                    for m in METRICS:
                        comp[m] = paired(
                            [float(a[s][m]) for s in seeds], [float(b[s][m]) for s in seeds]
                        )
                    comps.append(comp)
    for m in METRICS:
        adj = holm([c[m]["p_t"] for c in comps])
        for c, p in zip(comps, adj, strict=True):
            c[m]["p_t_holm"] = p
    return {"protocol": proto, "cells": cells, "comparisons": comps, "n_runs": len(runs)}


def _f(ms: tuple[float, float] | list[float] | None, digits: int = 2) -> str:
    if ms is None:
        return "n/a"
    return f"{ms[0]:.{digits}f} ± {ms[1]:.{digits}f}"


def _label(name: str) -> str:
    if name.startswith("trt-"):
        lam, dec = name[5:].split("-d")
        return f"TRT λ={float(lam):.0e} δ={dec}"
    if name == ABLATION:
        return "TRT λ=0 (CE+MSE)"
    return name.upper()


def _p(p: float | None) -> str:
    if p is None:
        return "n/a"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def _ci(c: dict[str, Any], digits: int = 2) -> str:
    if c["ci_low"] is None:
        return f"{c['mean']:+.{digits}f}"
    star = "**" if c.get("p_t_holm") is not None and c["p_t_holm"] < 0.05 else ""
    return (
        f"{star}{c['mean']:+.{digits}f} [{c['ci_low']:+.{digits}f}, {c['ci_high']:+.{digits}f}] "
        f"p={_p(c['p_t'])}{star}"
    )


def cell_table(summary: dict[str, Any], keep=lambda row: True) -> str:
    head = (
        "| dataset | n | loss | epochs (steps) | 99 % train at epoch | final train % | final test % "
        "| best test % | gap pp | reg share (ep 1 -> last) | Fisher IC (ep 1 -> last) "
        "| top Hessian eig | exit mean T |"
    )
    lines = [head, "|" + "|".join(["---"] * (head.count("|") - 1)) + "|"]
    for c in summary["cells"]:
        if not keep(c):
            continue
        share = (
            "-"
            if not c["variant"].startswith("trt-")
            else f"{100 * c['reg_share_first_epoch'][0]:.2g} % -> {100 * c['reg_share_last_epoch'][0]:.2g} %"
        )
        e99 = (
            "never"
            if c["epoch_train_99"] is None
            else f"{c['epoch_train_99'][0]:.1f} (max {c['epoch_train_99_max']})"
        )
        lines.append(
            f"| {c['dataset']} | {c['n']} | {_label(c['variant'])} | {c['epochs']} ({c['steps']}) | {e99} "
            f"| {_f(c['final_train_acc'])} | {_f(c['final_test_acc'])} | {_f(c['best_test_acc'])} "
            f"| {_f(c['gap_pp'])} | {share} | {_f(c['centroid_first'])} -> {_f(c['centroid_last'])} "
            f"| {_f(c['top_eigenvalue'], 1)} | {_f(c['exit_mean_t'])} |"
        )
    return "\n".join(lines) + "\n"


def comparison_table(
    summary: dict[str, Any], metrics=("final_test_acc", "gap_pp"), keep=lambda c: True
) -> str:
    names = {
        "final_test_acc": "final test acc, pp",
        "best_test_acc": "best test acc, pp",
        "gap_pp": "gap, pp",
        "centroid_last": "Fisher IC",
        "top_eigenvalue": "top eig",
        "exit_mean_t": "exit mean T",
    }
    head = (
        "| dataset | n | TRT | vs | "
        + " | ".join(f"Δ {names[m]} [95 % CI] p" for m in metrics)
        + " |"
    )
    lines = [head, "|" + "|".join(["---"] * (head.count("|") - 1)) + "|"]
    for c in summary["comparisons"]:
        if not keep(c):
            continue
        digits = {"top_eigenvalue": 1}
        lines.append(
            f"| {c['dataset']} | {c['n']} | {_label(c['trt'])[4:]} | {_label(c['baseline'])} | "
            + " | ".join(_ci(c[m], digits.get(m, 2)) for m in metrics)
            + " |"
        )
    return "\n".join(lines) + "\n"


def wide_table(summary: dict[str, Any], metric: str, keep=lambda c: True, digits: int = 2) -> str:
    """One row per TRT setting, one column per compared loss: paired difference of ``metric``."""
    head = "| dataset | n | TRT | " + " | ".join(f"vs {_label(b)}" for b in COMPARED) + " |"
    lines = [head, "|" + "|".join(["---"] * (head.count("|") - 1)) + "|"]
    rows: dict[tuple[str, int, str], dict[str, Any]] = {}
    for c in summary["comparisons"]:
        if keep(c):
            rows.setdefault((c["dataset"], c["n"], c["trt"]), {})[c["baseline"]] = c[metric]
    for (d, n, trt), by in rows.items():
        cols = [_ci(by[b], digits) if b in by else "n/a" for b in COMPARED]
        lines.append(f"| {d} | {n} | {_label(trt)[4:]} | " + " | ".join(cols) + " |")
    return "\n".join(lines) + "\n"


def readme_table(summary: dict[str, Any]) -> str:
    """The README block: per-(dataset, n) rows of the compared losses and TRT at delta 0.5, then
    the paired differences of the final test accuracy."""
    keep_cell = lambda c: c["variant"] in COMPARED or c["variant"].endswith("-d0.5")  # noqa: E731
    keep_comp = lambda c: c["trt"].endswith("-d0.5")  # noqa: E731
    seeds = summary["protocol"]["seeds"]
    return (
        cell_table(summary, keep_cell)
        + "\n"
        + f"Paired differences of the final test accuracy, TRT − other loss, pp, over the same {len(seeds)} seeds "
        "(same initial weights and batches): mean [95 % t CI] and paired t-test p; **bold** where the "
        f"Holm-adjusted p < 0.05 over all {len(summary['comparisons'])} comparisons. The train-test gap "
        "differences are the negatives of these wherever train accuracy is 100 %:\n\n"
        + wide_table(summary, "final_test_acc", keep_comp)
    )


def plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    blocks = [(d, n) for d in summary["protocol"]["datasets"] for n in summary["protocol"]["sizes"]]
    panels = (
        ("final_test_acc", "final test accuracy %"),
        ("gap_pp", "train-test gap, pp"),
        ("top_eigenvalue", "top Hessian eigenvalue (SDT loss)"),
        ("centroid_last", "Fisher centroid (timesteps)"),
    )
    fig, axes = plt.subplots(
        len(panels), len(blocks), figsize=(3.6 * len(blocks), 2.9 * len(panels)), squeeze=False
    )
    colors = {"tet": "tab:green", "sdt": "tab:orange", "ce": "tab:gray", ABLATION: "tab:purple"}
    for j, (d, n) in enumerate(blocks):
        cells = {c["variant"]: c for c in summary["cells"] if c["dataset"] == d and c["n"] == n}
        for i, (metric, ylabel) in enumerate(panels):
            ax = axes[i][j]
            for dec, marker in zip(summary["protocol"]["decays"], "os^", strict=False):
                pts = [
                    (lam, cells[trt_name(lam, dec)][metric])
                    for lam in summary["protocol"]["lambdas"]
                    if trt_name(lam, dec) in cells
                ]
                if pts:
                    ax.errorbar(
                        [p[0] for p in pts],
                        [p[1][0] for p in pts],
                        yerr=[p[1][1] for p in pts],
                        marker=marker,
                        capsize=3,
                        label=f"TRT δ={dec:g}",
                    )
            for b in COMPARED:
                if b in cells:
                    m, s = cells[b][metric]
                    ax.axhline(m, color=colors[b], ls="--", lw=1, label=b.upper())
                    ax.axhspan(m - s, m + s, color=colors[b], alpha=0.1)
            ax.set_xscale("log")
            if i == len(panels) - 1:
                ax.set_xlabel("λ (paper: 1e-5)")
            ax.set_ylabel(ylabel)
            if i == 0:
                ax.set_title(f"{d}, n = {n}")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle("TRT λ sweep vs baselines (mean ± sd over seeds; mlp, T = 4)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=72, metadata={"Software": None})
    plt.close(fig)


def report(out: Path, readme: bool = False, plots: bool = True) -> str:
    proto = json.loads((out / "protocol.json").read_text())
    runs = load_runs(out)
    summary = summarize(proto, runs)
    write_text(out / "summary.json", dumps(summary))
    expected = len(plan(proto))
    missing = [
        run_name(d, n, v["name"], s)
        for d, n, v, s in plan(proto)
        if not (out / "cells" / f"{run_name(d, n, v['name'], s)}.json").exists()
    ]
    note = f"{len(runs)} of {expected} runs cached" + (
        f"; missing: {', '.join(missing[:8])}" + (" ..." if len(missing) > 8 else "")
        if missing
        else ""
    )
    md = readme_table(summary)
    write_text(out / "table.md", md)
    names = {
        "final_test_acc": "final test accuracy, pp",
        "best_test_acc": "best-over-epochs test accuracy (what the paper reports), pp",
        "gap_pp": "train-test gap, pp (negative = TRT overfits less)",
        "centroid_last": "Fisher information centroid after training, timesteps",
        "top_eigenvalue": "top Hessian eigenvalue of the SDT loss (negative = TRT flatter)",
        "exit_mean_t": "mean exit step at <= 0.5 pp (confidence rule, calibrated on val)",
    }
    full = (
        "# Full tables (generated by `python bench/does_trt_help.py --report`)\n\n"
        + note
        + "\n\n## Cells (mean ± sd over seeds)\n\n"
        + cell_table(summary)
        + "".join(
            f"\n## Paired differences TRT − other: {names[m]}\n\n"
            "mean [95 % t CI] p (paired t-test); **bold**: Holm-adjusted p < 0.05 over the "
            f"{len(summary['comparisons'])} comparisons of this metric\n\n"
            + wide_table(summary, m, digits=3 if m in ("centroid_last", "top_eigenvalue") else 2)
            for m in METRICS
        )
    )
    write_text(out / "tables_full.md", full)
    if plots:
        plot(summary, out / "acc_gap_vs_lambda.png")
    if readme:
        text = README.read_text()
        if README_BEGIN not in text or README_END not in text:
            raise SystemExit(f"README.md lacks the markers {README_BEGIN!r} ... {README_END!r}")
        head, rest = text.split(README_BEGIN, 1)
        _, tail = rest.split(README_END, 1)
        write_text(README, head + README_BEGIN + "\n" + md + README_END + tail)
    print(note)
    return md


# ---------------------------------------------------------------------- paper scale
PAPER_COMMANDS = """\
# Paper-scale runs on a GPU with the official hyperparameters (ZBX05/Temporal-Regularization-Training
# @ 95b5ecb: 300 epochs, batch 64, Adam lr 1e-3, cosine to 0, AMP, seed 42). The paper reports the
# best test accuracy over epochs; log.csv of each run has the per-epoch test accuracy (final and best).
# For a paired test run every line for --seed 0 1 2 3 4 (same seeds for TRT and the baselines).
for SEED in 42; do
  for LOSS in trt tet sdt; do
    HP=""; [ $LOSS = trt ] && HP="--lamb 1e-5 --decay 0.25 --eta 0.05"
    trt-nm train --arch resnet19 --dataset cifar10 --data-root DATA -T 6 --epochs 300 --batch-size 64 \\
      --optimizer adam --lr 1e-3 --scheduler cosine --amp fp16 --device cuda --seed $SEED \\
      --loss $LOSS $HP --out runs/cifar10_resnet19_${LOSS}_s$SEED
    HP=""; [ $LOSS = trt ] && HP="--lamb 5e-5 --decay 0.5 --eta 0.001"
    trt-nm train --arch vggsnn --dataset cifar10dvs --data-root DATA -T 10 --epochs 300 --batch-size 64 \\
      --optimizer adam --lr 1e-3 --scheduler cosine --amp fp16 --device cuda --seed $SEED \\
      --loss $LOSS $HP --out runs/cifar10dvs_vggsnn_${LOSS}_s$SEED
  done
done
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--run", action="store_true", help="train every missing run (resumable from the cache)"
    )
    p.add_argument(
        "--report", action="store_true", help="tables and plots from the cached JSON only"
    )
    p.add_argument(
        "--readme", action="store_true", help="with --report: rewrite the marked README table"
    )
    p.add_argument("--quick", action="store_true", help="tiny smoke-test protocol (seconds)")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument(
        "--only",
        action="append",
        default=None,
        metavar="DATASET:N",
        help="restrict --run to blocks",
    )
    p.add_argument(
        "--out",
        default=None,
        help=f"cache/output folder (default {DEFAULT_OUT.relative_to(HERE.parent)})",
    )
    p.add_argument(
        "--paper-commands", action="store_true", help="print the paper-scale GPU commands"
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.paper_commands:
        print(PAPER_COMMANDS, end="")
        return 0
    if not (args.run or args.report):
        print("nothing to do: pass --run and/or --report (see --help)", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else DEFAULT_OUT
    if args.quick and args.out is None:
        out = Path("runs/does_trt_help_quick")
    if args.readme and (args.quick or args.out):
        print("--readme only with the default protocol and folder", file=sys.stderr)
        return 2
    proto = QUICK if args.quick else PROTOCOL
    if args.run:
        pfile = out / "protocol.json"
        if pfile.exists() and pfile.read_text() != dumps(proto):
            print(
                f"{pfile} holds a different protocol; use another --out or delete the folder",
                file=sys.stderr,
            )
            return 2
        run_all(proto, out, args.only)
    if args.report:
        print(report(out, readme=args.readme, plots=not args.no_plots))
    return 0


if __name__ == "__main__":
    sys.exit(main())
