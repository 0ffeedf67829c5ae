"""``trt-nm demo``: the main job on the embedded default data (no download, CPU friendly)."""

from __future__ import annotations

import argparse

from ._common import positive_int


def run(args: argparse.Namespace) -> int:
    from trt_nm.config import TrainConfig
    from trt_nm.train import Trainer

    cfg = TrainConfig(
        arch="cnn-small",
        backend=args.backend,
        dataset="mnist5k",
        loss="trt",
        T=args.T,
        epochs=args.epochs,
        batch_size=64,
        lr=1e-3,
        device=args.device,
        seed=args.seed,
        out_dir=args.out,
    )
    print(f"trt-nm demo: cnn-small, TRT loss, T={cfg.T}, {cfg.epochs} epochs on mnist5k (embedded), backend {cfg.backend}")
    result = Trainer(cfg, progress=False if args.quiet else None).fit()
    print("per-timestep test accuracy (mean of the first t outputs):")
    for t, acc in enumerate(result.final_acc_per_t, start=1):
        print(f"  t={t}: {acc:6.2f}%")
    print(f"best test accuracy {result.best_acc:.2f}%; run directory {result.out_dir}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("demo", help="train cnn-small with TRT on the embedded mnist5k digits")
    p.add_argument("--out", default="runs/demo", help="run directory (default runs/demo)")
    p.add_argument("--epochs", type=positive_int, default=4)
    p.add_argument("-T", "--T", dest="T", type=positive_int, default=4)
    p.add_argument("--backend", default="torch")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)
