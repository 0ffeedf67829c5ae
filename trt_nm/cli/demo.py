"""``trt-nm demo``: the whole pipeline on embedded data (no download, CPU friendly).

train cnn-small with the TRT loss on ``nmnist5k`` (the embedded digits as N-MNIST-style
saccade events, T = 8: accuracy still grows with t, so early exit has something to trade) ->
export NIR -> simulate with early exit, thresholds calibrated on the ``val`` split (never
``test``) twice: within ``--budget`` pp on val (a point estimate) and with a guarantee (loss at
most ``--eps`` with probability at least ``1 - --delta``) -> executed early exit, checked
identical to the post-hoc evaluation and timed -> report (JSON, Markdown, plots).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from trt_nm.cli import common
from trt_nm.cli.common import nonneg_float
from trt_nm.cli.simulate import print_summary
from trt_nm.config import TrainConfig
from trt_nm.errors import ConfigError
from trt_nm.nir.io import read_nir, to_nir, write_nir
from trt_nm.report.build import build_report, check_out_dir, parse_exit_option, write_report
from trt_nm.training.checkpoint import load_model
from trt_nm.training.trainer import Trainer


def run(args: argparse.Namespace) -> int:
    """``trt-nm demo``: train, export, simulate with early exit, report."""
    out = Path(args.out)
    check_out_dir(out)
    check_out_dir(out / "report")
    if args.dataset not in ("nmnist5k", "mnist5k"):
        raise ConfigError(f"demo --dataset must be nmnist5k or mnist5k (embedded), got {args.dataset!r}")
    exits = [parse_exit_option(f"calibrate:{args.budget:g}"), parse_exit_option(f"calibrate:{args.eps:g}", args.delta)]
    t0 = time.perf_counter()
    cfg = TrainConfig(
        arch="cnn-small",
        backend=args.backend,
        dataset=args.dataset,
        loss="trt",
        T=args.T,
        epochs=args.epochs,
        batch_size=64,
        lr=1e-3,
        device=args.device,
        seed=args.seed,
        out_dir=str(out),
    )
    print(f"trt-nm demo: cnn-small, TRT loss, T={cfg.T}, {cfg.epochs} epochs on {cfg.dataset} (embedded), "
          f"backend {cfg.backend}")
    print("[1/4] training")
    result = Trainer(cfg, progress=False if args.quiet else None).fit()
    print(f"best test accuracy {result.best_acc:.2f}%; checkpoints in {result.out_dir}")

    print("[2/4] exporting NIR")
    ckpt = out / "best.pt" if (out / "best.pt").exists() else out / "last.pt"
    model = load_model(ckpt).eval()
    graph = to_nir(model, dt=1e-4)
    nir_path = write_nir(graph, out / "model.nir")
    print(f"wrote {nir_path}")

    print(f"[3/4] simulating the NIR graph with early exit (calibrated on val: within {args.budget:g} pp, and "
          f"loss <= {args.eps:g} with probability >= {1 - args.delta:g}; executed exit checked against post-hoc)")
    rep = build_report(
        read_nir(nir_path), dataset=cfg.dataset, T=cfg.T, eval_split="test", calib_split="val",
        exits=exits,
        source={"source": str(nir_path), "kind": "nir", "checkpoint": str(ckpt)},
    )
    print_summary(rep)

    print("[4/4] writing the report")
    paths = write_report(rep, out / "report")
    print(f"demo finished in {time.perf_counter() - t0:.0f} s")
    print(f"report: {paths['md']}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``demo`` subcommand."""
    p = sub.add_parser("demo", help="train TRT on embedded nmnist5k -> NIR -> simulate with early exit -> report")
    p.add_argument("--out", default="runs/demo", help="run directory (default runs/demo)")
    p.add_argument("--dataset", default="nmnist5k", help="nmnist5k (default: events) or mnist5k (static digits)")
    p.add_argument("--epochs", type=common.epochs, default=2)
    p.add_argument("-T", "--T", dest="T", type=common.timesteps, default=8)
    p.add_argument("--backend", default="torch")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=common.seed, default=0)
    p.add_argument("--budget", type=nonneg_float, default=0.5, help="accuracy budget (pp) for exit calibration")
    p.add_argument("--eps", type=nonneg_float, default=0.02,
                   help="guaranteed calibration: loss at most EPS, a fraction (default 0.02 = 2 pp)")
    p.add_argument("--delta", type=float, default=0.1, help="... with probability at least 1 - DELTA (default 0.1)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)
