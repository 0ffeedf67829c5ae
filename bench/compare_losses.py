"""Does TRT help? Train one architecture with TRT, TET and SDT on the same data, seeds and budget.

For every (dataset, loss, seed) the script trains with :class:`trt_nm.training.trainer.Trainer` and
measures, on the final weights:

* test accuracy after the last epoch and the best over epochs (%), per-timestep test accuracy;
* train-test gap: accuracy on the training samples used (eval mode) minus test accuracy (pp);
* Fisher information centroid (:mod:`trt_nm.analysis.fisher`, recorded after the first and the
  last epoch on ``--fisher-batches`` training batches);
* sharpness: top Hessian eigenvalue of the SDT loss (CE of the time-averaged output, the same
  objective for every run) on the first ``--sharp-samples`` training samples, and the mean loss
  rise along a filter-normalised random direction for |alpha| <= 0.5
  (:mod:`trt_nm.analysis.sharpness`);
* early-exit operating point (:mod:`trt_nm.early_exit`): the confidence threshold calibrated on
  the ``val`` split for <= ``--budget`` pp accuracy loss, applied to the test split (mean
  timesteps, test accuracy, test accuracy loss).

Writes ``results.json`` (every run) and ``table.md`` (mean +- std over seeds) into ``--out``.
Deterministic: fixed seeds, ``torch.use_deterministic_algorithms(True)``, a fixed number of
CPU threads; rerunning on the same machine gives the same numbers.

Usage::

    python bench/compare_losses.py --dataset mnist5k --out runs/compare_mnist5k
    python bench/compare_losses.py --quick --out /tmp/cmp   # smoke test (seconds)
    python bench/compare_losses.py --device cuda --arch resnet19 --dataset cifar10 ...
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

from trt_nm.analysis.fisher import FisherRecorder
from trt_nm.analysis.sharpness import analyze_sharpness
from trt_nm.config import TrainConfig
from trt_nm.datasets import dataset_info, get_dataset
from trt_nm.early_exit import calibrate, evaluate_exit
from trt_nm.errors import TrtNmError
from trt_nm.losses import Loss
from trt_nm.metrics.accuracy import cumulative_mean
from trt_nm.training.trainer import Trainer, evaluate, resolve_device, to_time_major

QUICK = {"epochs": 1, "train_limit": 64, "test_limit": 50, "val_limit": 50, "seeds": "0,1",
         "fisher_batches": 1, "sharp_samples": 16, "sharp_iters": 2, "slice_points": 3, "batch_size": 32}
#: the budget of the published table: about 15 minutes per dataset on a busy 2-core CPU
DEFAULTS = {"epochs": 3, "train_limit": 600, "test_limit": 500, "val_limit": 400, "seeds": "0,1,2",
            "fisher_batches": 4, "sharp_samples": 64, "sharp_iters": 6, "slice_points": 5, "batch_size": 32}


def _logits(model: torch.nn.Module, ds, device: torch.device, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cumulative-mean logits ``[T, N, C]`` and labels ``[N]`` of a whole split (eval mode)."""
    model.eval()
    outs, ys = [], []
    with torch.no_grad():
        for x, y in torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False):
            outs.append(model(to_time_major(x.to(device))).float().cpu())
            ys.append(y)
    return cumulative_mean(torch.cat(outs, 1)), torch.cat(ys)


def _stage(args: argparse.Namespace, what: str, since: float) -> None:
    if args.verbose:
        sys.stderr.write(f"  {what}: {time.perf_counter() - since:.1f}s\n")
        sys.stderr.flush()


def one_run(args: argparse.Namespace, dataset: str, loss: str, seed: int, device: torch.device) -> dict[str, Any]:
    out_dir = Path(args.out) / "runs" / f"{dataset}-{loss}-s{seed}"
    cfg = TrainConfig(
        arch=args.arch, dataset=dataset, loss=loss, T=args.T, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, device=str(device), seed=seed, out_dir=str(out_dir),
        train_limit=args.train_limit, test_limit=args.test_limit, data_root=args.data_root,
    )
    fisher = FisherRecorder(tuple(sorted({1, args.epochs})), batches=args.fisher_batches)
    t0 = time.perf_counter()
    trainer = Trainer(cfg, progress=False, log=lambda *a: None, callbacks=[fisher])
    result = trainer.fit()
    train_s = time.perf_counter() - t0
    _stage(args, f"trained {dataset}/{loss}/s{seed}", t0)
    model = trainer.model
    train_eval = evaluate(model, torch.utils.data.DataLoader(trainer.train_set, batch_size=256), device)
    final = result.history[-1]
    final_acc = float(final["test_acc"])
    # sharpness of one common objective on a fixed training subset
    t1 = time.perf_counter()
    sub = torch.utils.data.Subset(trainer.train_set, range(min(args.sharp_samples, len(trainer.train_set))))
    batches = list(torch.utils.data.DataLoader(sub, batch_size=args.batch_size, shuffle=False))
    sharp = analyze_sharpness(model, batches, Loss("sdt"), device=device, iters=args.sharp_iters,
                              tol=1e-3, points=args.slice_points, grid=0, seed=seed)
    _stage(args, "sharpness", t1)
    # early exit: calibrate on val, apply on test
    kw = {"encoding": cfg.encoding} if dataset_info(dataset).kind == "static" else {}
    val = get_dataset(dataset, args.data_root, "val", args.T, **kw)
    if args.val_limit:
        val = torch.utils.data.Subset(val, range(min(args.val_limit, len(val))))
    cum_val, y_val = _logits(model, val, device, 256)
    cal = calibrate("confidence", cum_val, y_val, args.budget, split="val")
    cum_test, y_test = _logits(model, trainer.test_set, device, 256)
    ex = evaluate_exit(cal.rule, cum_test, y_test)
    rec = fisher.records
    return {
        "dataset": dataset, "loss": loss, "seed": seed,
        "final_test_acc": final_acc,
        "best_test_acc": float(result.best_acc),
        "train_acc_eval": float(train_eval["acc"]),
        "gap_pp": float(train_eval["acc"]) - final_acc,
        "test_acc_per_t": [float(a) for a in result.final_acc_per_t],
        "fisher_first": rec[0]["trace"], "centroid_first": rec[0]["centroid"],
        "fisher_last": rec[-1]["trace"], "centroid_last": rec[-1]["centroid"],
        "top_eigenvalue": sharp.eigenvalue.value, "eig_converged": sharp.eigenvalue.converged,
        "slice_rise": sharp.slice_rise,
        "exit_rule": cal.rule.spec, "exit_mean_t": ex.mean_timesteps, "exit_test_acc": ex.accuracy,
        "exit_test_loss_pp": ex.accuracy_loss, "exit_val_loss_pp": cal.result.accuracy_loss,
        "train_seconds": round(train_s, 1), "history": result.history,
    }


def _ms(values: list[float], digits: int = 2) -> str:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return "n/a"
    m = sum(vals) / len(vals)
    s = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def table(runs: list[dict[str, Any]], datasets: list[str], losses: list[str]) -> str:
    """Markdown table, one row per (dataset, loss), mean ± sample std over seeds."""
    head = ("| dataset | loss | final test acc % | best test acc % | train-test gap pp | test acc % per t "
            "| Fisher centroid (ep 1 -> last) | top Hessian eig | slice rise | exit: mean T (test acc loss pp) |")
    lines = [head, "|" + "|".join(["---"] * (head.count("|") - 1)) + "|"]
    for d in datasets:
        for loss in losses:
            rs = [r for r in runs if r["dataset"] == d and r["loss"] == loss]
            if not rs:
                continue
            T = len(rs[0]["test_acc_per_t"])
            per_t = " / ".join(f"{sum(r['test_acc_per_t'][t] for r in rs) / len(rs):.1f}" for t in range(T))
            lines.append(
                f"| {d} | {loss.upper()} | {_ms([r['final_test_acc'] for r in rs])} | {_ms([r['best_test_acc'] for r in rs])} "
                f"| {_ms([r['gap_pp'] for r in rs])} | {per_t} "
                f"| {_ms([r['centroid_first'] for r in rs], 3)} -> {_ms([r['centroid_last'] for r in rs], 3)} "
                f"| {_ms([r['top_eigenvalue'] for r in rs], 3)} | {_ms([r['slice_rise'] for r in rs], 4)} "
                f"| {_ms([r['exit_mean_t'] for r in rs])} ({_ms([r['exit_test_loss_pp'] for r in rs])}) |"
            )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", action="append", default=None, help="dataset (repeatable; default mnist5k)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--arch", default="cnn-small")
    p.add_argument("--losses", default="trt,tet,sdt")
    p.add_argument("--seeds", default=None, help="comma-separated seeds (default 0,1,2)")
    p.add_argument("--T", type=int, default=4)
    p.add_argument("--epochs", type=int, default=None, help="epochs per run (default 3)")
    p.add_argument("--batch-size", type=int, default=None, help="default 32")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--train-limit", type=int, default=None, help="first N training samples (default 600)")
    p.add_argument("--test-limit", type=int, default=None, help="first N test samples (default 500)")
    p.add_argument("--val-limit", type=int, default=None, help="first N val samples (default 400)")
    p.add_argument("--fisher-batches", type=int, default=None, help="training batches per Fisher record (default 4)")
    p.add_argument("--sharp-samples", type=int, default=None, help="training samples for sharpness (default 64)")
    p.add_argument("--sharp-iters", type=int, default=None, help="power iterations (default 6)")
    p.add_argument("--slice-points", type=int, default=None, help="points of the 1-D slice (default 5)")
    p.add_argument("--budget", type=float, default=0.5, help="early-exit accuracy budget, pp (0.5)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (fixed for reproducibility; 1)")
    p.add_argument("--verbose", action="store_true", help="print stage timings on stderr")
    p.add_argument("--quick", action="store_true", help="tiny smoke-test budget")
    p.add_argument("--out", default="runs/compare_losses", help="output directory (runs/ is git-ignored)")
    args = p.parse_args(argv)
    for k, v in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    args.dataset = args.dataset or ["mnist5k"]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    try:
        device = resolve_device(args.device)
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        losses = [s.strip() for s in args.losses.split(",") if s.strip()]
        for loss in losses:
            Loss(loss)
        runs = []
        for d in args.dataset:
            dataset_info(d)
            for loss in losses:
                for seed in seeds:
                    r = one_run(args, d, loss, seed, device)
                    runs.append(r)
                    _write(args, runs, losses)  # partial results survive an interrupted run
                    print(f"{d} {loss} seed {seed}: final {r['final_test_acc']:.2f}% best {r['best_test_acc']:.2f}% "
                          f"gap {r['gap_pp']:.2f}pp centroid {r['centroid_last']:.3f} eig {r['top_eigenvalue']:.4g} "
                          f"exit {r['exit_mean_t']:.2f} steps ({r['train_seconds']}s)", flush=True)
    except (TrtNmError, ValueError) as exc:
        sys.stderr.write(f"compare_losses: error: {' '.join(str(exc).split())}\n")
        return 2
    print(_write(args, runs, losses))
    return 0


def _write(args: argparse.Namespace, runs: list[dict[str, Any]], losses: list[str]) -> str:
    """Write ``results.json`` and ``table.md`` for the runs so far; return the table."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    (out / "results.json").write_text(json.dumps({"settings": settings, "runs": runs}, indent=1))
    md = table(runs, args.dataset, losses)
    (out / "table.md").write_text(md)
    return md


if __name__ == "__main__":
    sys.exit(main())
