"""Executed early exit vs full T: samples/s side by side in one run.

For every configuration (architecture x dataset x T) the script trains a small model with the
TRT loss (cached under ``bench/out/early_exit_speed/``, so a second run only measures), exports
it to NIR, calibrates an exit rule on the ``val`` split (``--exit``, default ``calibrate:0.5``:
the confidence rule with the fewest mean timesteps within 0.5 pp of full T on val) and then runs
the ``test`` split through the same :class:`trt_nm.sim.Simulator` twice per repeat, interleaved:

* full T: ``sim(x)`` (every sample runs all T steps; the engine's fast paths, including the
  direct-coded prefix computed once);
* executed exit: ``sim.run_exit(x, rule)`` (samples leave the batch at their exit step).

A direct-coded split (the same frame at every step, ``mnist5k``) is passed as one frame
expanded over time (``x[:1].expand(T, ...)``, stride 0), which the simulator recognises without
comparing T frames (in both runs). It checks that the executed exit steps and predictions equal
the post-hoc evaluation of the same rule on the full run, and prints one row per
configuration: mean exit step, samples/s of both, the measured speed-up, the target
``0.8 x T / mean exit step``, and the ``ceiling``: the speed-up any executed exit could reach
when the full run's cost is ``P + T*S`` (``P``: the work done once per sample whatever T -- a
direct-coded input's stateless prefix, per-call overhead; ``S``: one step), measured from full
runs at T and at 1 step: ``(P + T*S) / (P + m*S)``. The script exits with status 1 when a row
misses the target.

    python bench/early_exit_speed.py [--quick] [--arch mlp,cnn-small] [--dataset mnist5k,nmnist5k]
                                     [--T 4,8,20] [--exit calibrate:0.5[:KIND]|KIND:TH] [--repeats 9]
                                     [--batch 1000] [--epochs 2] [--train-limit N] [--cache DIR]

``--quick``: T = 4 and 8, models trained for one epoch, 5 repeats (2 min 23 s on the 2-core
machine, training included).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def _csv(kind):
    return lambda text: [kind(v) for v in text.split(",") if v]


def _train(arch: str, dataset: str, T: int, epochs: int, train_limit: int | None, cache: Path) -> Path:
    """A TRT-trained checkpoint for (arch, dataset, T), trained once into ``cache``."""
    from trt_nm.config import TrainConfig
    from trt_nm.training.trainer import Trainer

    out = cache / f"{arch}_{dataset}_T{T}_e{epochs}_n{train_limit or 'all'}"
    for name in ("best.pt", "last.pt"):
        if (out / name).exists():
            return out / name
    cfg = TrainConfig(arch=arch, dataset=dataset, loss="trt", T=T, epochs=epochs, batch_size=64, lr=1e-3,
                      device="cpu", seed=0, out_dir=str(out), train_limit=train_limit)
    t0 = time.perf_counter()
    res = Trainer(cfg, progress=False).fit()
    print(f"  trained {arch} on {dataset} T={T} ({epochs} epoch(s), {train_limit or 'all'} samples): "
          f"test {res.best_acc:.1f}% in {time.perf_counter() - t0:.0f} s", flush=True)
    return out / "best.pt" if (out / "best.pt").exists() else out / "last.pt"


def _split(dataset: str, split: str, T: int) -> tuple[torch.Tensor, torch.Tensor]:
    from torch.utils.data import DataLoader

    from trt_nm.report.build import load_split
    from trt_nm.sim.frames import _frames_identical

    xs, ys = [], []
    for x, y in DataLoader(load_split(dataset, split, T), batch_size=500, shuffle=False):
        xs.append(x)
        ys.append(torch.as_tensor(y).reshape(-1))
    x = torch.cat(xs).transpose(0, 1).contiguous()
    if _frames_identical(x):  # direct coding: one frame expanded over time, as the simulator takes it
        x = x[:1].expand(x.shape)
    return x, torch.cat(ys)


def _batches(sim, x: torch.Tensor, batch: int, fn) -> list:
    return [fn(sim, x[:, b:b + batch]) for b in range(0, x.shape[1], batch)]


def _best(fn, repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure(arch: str, dataset: str, T: int, args) -> dict:
    from trt_nm.early_exit import calibrate, evaluate_exit
    from trt_nm.nir.io import to_nir
    from trt_nm.report.build import parse_exit_option
    from trt_nm.sim import Simulator, concat_exit_runs, concat_results
    from trt_nm.training.checkpoint import load_model

    ckpt = _train(arch, dataset, T, args.epochs, args.train_limit, args.cache)
    graph = to_nir(load_model(ckpt).eval(), dt=1e-4)
    sim = Simulator(graph)
    xv, yv = _split(dataset, "val", T)
    xt, yt = _split(dataset, "test", T)
    opt = parse_exit_option(args.exit)
    if opt.rule is not None:
        rule = opt.rule
    else:  # the calibrated rule kind with the fewest mean timesteps on val
        cv = concat_results(_batches(sim, xv, args.batch, lambda s, x: s(x, count_ops=False))).cum_logits.float()
        cals = [calibrate(k, cv, yv, opt.budget, split="val") for k in opt.kinds]
        rule = min(cals, key=lambda c: (c.result.mean_timesteps, -c.result.accuracy)).rule
    full = concat_results(_batches(sim, xt, args.batch, lambda s, x: s(x)))
    post = evaluate_exit(rule, full.cum_logits.float().cpu(), yt)
    run = concat_exit_runs(_batches(sim, xt, args.batch, lambda s, x: s.run_exit(x, rule)))
    idx = (post.exit_steps - 1).view(1, -1, 1).expand(1, -1, full.cum_logits.shape[-1])
    identical = (torch.equal(run.exit_steps, post.exit_steps)
                 and torch.equal(run.predictions, full.cum_logits.gather(0, idx)[0].argmax(-1).cpu()))
    x1 = xt[:1].contiguous()  # the first step only: P + S
    t_full = t_exit = t_one = math.inf
    for _ in range(args.repeats):  # interleaved: the same load on both
        t_full = min(t_full, _best(lambda: _batches(sim, xt, args.batch, lambda s, x: s(x)), 1))
        t_exit = min(t_exit, _best(lambda: _batches(sim, xt, args.batch, lambda s, x: s.run_exit(x, rule)), 1))
        t_one = min(t_one, _best(lambda: _batches(sim, x1, args.batch, lambda s, x: s(x)), 1))
    n = int(yt.numel())
    m = post.mean_timesteps
    S = max((t_full - t_one) / (T - 1), 1e-12) if T > 1 else t_full
    P = max(t_one - S, 0.0)
    speedup = t_full / t_exit
    target = 0.8 * T / m
    return {
        "arch": arch, "dataset": dataset, "T": T, "rule": f"{rule.kind}:{rule.threshold:.3g}",
        "acc_full": post.full_accuracy, "acc_exit": post.accuracy, "mean_exit": m,
        "full_sps": n / t_full, "exit_sps": n / t_exit, "speedup": speedup, "target": target,
        "ceiling": t_full / (P + m * S), "prefix_share": P / t_one if t_one > 0 else 0.0,
        "identical": identical, "ok": identical and speedup >= target,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="T=4,8, one training epoch, 5 repeats (< ~5 min)")
    p.add_argument("--arch", type=_csv(str), default=["mlp", "cnn-small"])
    p.add_argument("--dataset", type=_csv(str), default=["mnist5k", "nmnist5k"])
    p.add_argument("--T", type=_csv(int), default=None, help="default 4,8,20 (--quick: 4,8)")
    p.add_argument("--exit", default="calibrate:0.5:confidence", help="exit rule (calibrated on val)")
    p.add_argument("--repeats", type=int, default=None, help="default 9 (--quick: 5)")
    p.add_argument("--batch", type=int, default=1000, help="samples per simulator call (default: the whole split)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default 2; --quick: 1)")
    p.add_argument("--train-limit", type=int, default=None, help="training samples (default all 3,600)")
    p.add_argument("--cache", type=Path, default=HERE / "out" / "early_exit_speed", help="checkpoint cache")
    args = p.parse_args(argv)
    args.T = args.T or ([4, 8] if args.quick else [4, 8, 20])
    args.repeats = args.repeats or (5 if args.quick else 9)
    args.epochs = args.epochs or (1 if args.quick else 2)
    args.cache.mkdir(parents=True, exist_ok=True)

    from trt_nm.sim.allocator import retain_freed_memory

    retain_freed_memory()  # as the trt-nm CLI does
    t0 = time.perf_counter()
    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; load average {load0:.2f} at start")
    print(f"exit rule: {args.exit} on val; test split in batches of {args.batch}; best of {args.repeats} "
          f"interleaved repeats; models: TRT, {args.epochs} epoch(s), {args.train_limit or 'all'} training samples")
    rows = []
    for dataset in args.dataset:
        for arch in args.arch:
            for T in args.T:
                rows.append(measure(arch, dataset, T, args))
                r = rows[-1]
                print(f"  {arch} {dataset} T={T}: x{r['speedup']:.2f} (target x{r['target']:.2f})", flush=True)
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print()
    print("| arch | dataset | T | rule (val) | acc full T % | acc exit % | mean exit step | full T samples/s | "
          "exit samples/s | speed-up | target 0.8T/m | ceiling | identical | meets target |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['arch']} | {r['dataset']} | {r['T']} | `{r['rule']}` | {r['acc_full']:.2f} | {r['acc_exit']:.2f} | "
              f"{r['mean_exit']:.2f} | {r['full_sps']:.0f} | {r['exit_sps']:.0f} | **{r['speedup']:.2f}x** | "
              f"{r['target']:.2f}x | {r['ceiling']:.2f}x | {'yes' if r['identical'] else 'NO'} | "
              f"{'yes' if r['ok'] else 'no'} |")
    print()
    print("ceiling = (P + T*S) / (P + m*S) from full runs at T and at 1 step; P / (P + S) = share of a "
          "1-step run done once per sample (direct-coded prefix, overhead): "
          + ", ".join(f"{r['arch']}/{r['dataset']} T={r['T']}: {r['prefix_share']:.2f}" for r in rows))
    print(f"load average {load0:.2f} at start, {load1:.2f} at end; {time.perf_counter() - t0:.0f} s in all")
    missed = [r for r in rows if not r["ok"]]
    if missed:
        print(f"{len(missed)} of {len(rows)} rows miss the target: "
              + ", ".join(f"{r['arch']}/{r['dataset']} T={r['T']}" for r in missed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
