"""``trt-nm analyze``: the TRT paper's analyses of a trained checkpoint.

* ``trt-nm analyze fisher CHECKPOINT [--dataset NAME] [--batches 100]``: trace of the empirical
  Fisher information per timestep and its centroid (JSON + PNG).
* ``trt-nm analyze fisher RUN_DIR --during-training``: the records a training run made with
  ``trt-nm train --fisher-epochs 1,5,10`` (summarised, re-plotted).
* ``trt-nm analyze sharpness CHECKPOINT``: top Hessian eigenvalue of the training loss and
  filter-normalised 1-D/2-D loss slices (JSON + PNG).

Outputs go to ``--out`` (default: ``analysis/`` beside the checkpoint), which is checked for
writability before anything is computed. Paths stored in the checkpoint are not followed: data
comes from ``--data-root`` or the dataset's defaults. Progress bars go to stderr on a terminal
(``--quiet``: none), as in training.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch.utils.data import Dataset, Subset

from trt_nm.analysis.fisher import (
    fisher_loader,
    fisher_trace_per_timestep,
    plot_fisher,
    read_fisher_json,
    write_fisher_json,
)
from trt_nm.analysis.sharpness import analyze_sharpness, plot_sharpness, write_json
from trt_nm.atomic import check_writable
from trt_nm.cli import common
from trt_nm.cli.common import finite_float, nonneg_int, positive_int
from trt_nm.config import TrainConfig
from trt_nm.datasets import dataset_info, get_dataset
from trt_nm.errors import ConfigError, unknown_name
from trt_nm.losses import Loss, list_losses
from trt_nm.models import SpikingModel
from trt_nm.training.checkpoint import (
    load_checkpoint,
    model_from_checkpoint,
    nonfinite_weight,
    stored_config,
)
from trt_nm.training.trainer import resolve_device


def _checkpoint_path(text: str) -> Path:
    p = Path(text)
    return p / "last.pt" if p.is_dir() else p


def _out_dir(args: argparse.Namespace, ckpt: Path) -> Path:
    """The output directory, checked first (a file, under a file, not writable: one line)."""
    out = Path(args.out) if args.out else ckpt.parent / "analysis"
    return check_writable(out, directory=True, what="output")


def _load(args: argparse.Namespace) -> tuple[SpikingModel, TrainConfig | None, torch.device, Path, Path]:
    """(model on device, stored TrainConfig (validated) or None, device, checkpoint path, output dir)."""
    ckpt = _checkpoint_path(args.checkpoint)
    out = _out_dir(args, ckpt)
    device = resolve_device(args.device)
    data = load_checkpoint(ckpt)
    cfg = stored_config(data, ckpt)
    bad = nonfinite_weight(data["model"])
    if bad is not None:
        raise ConfigError(f"{ckpt}: the weights are not finite (NaN or inf in {bad}); there is nothing to analyze")
    model = model_from_checkpoint(data, ckpt).to(device)
    return model, cfg, device, ckpt, out


def _train_split(
    args: argparse.Namespace, cfg: TrainConfig | None, model: SpikingModel, limit: int | None
) -> tuple[str, Dataset]:
    """(dataset name, the training split the model fits, its first ``limit`` samples)."""
    name = args.dataset or (cfg.dataset if cfg is not None else None)
    if not name:
        raise ConfigError("the checkpoint does not name its dataset; pass --dataset NAME")
    info = dataset_info(name)
    if (info.num_classes, info.in_channels, *info.input_size) != (model.num_classes, *model.input_shape):
        raise ConfigError(
            f"dataset {name!r} ({info.in_channels}x{'x'.join(map(str, info.input_size))}, "
            f"{info.num_classes} classes) does not fit the model "
            f"({'x'.join(map(str, model.input_shape))}, {model.num_classes} classes)"
        )
    kw = {"encoding": cfg.encoding if cfg is not None else "direct"} if info.kind == "static" else {}
    # the checkpoint's data_root is not followed: --data-root or the dataset's defaults
    ds = get_dataset(name, args.data_root, "train", model.T, **kw)
    if limit is not None:
        ds = Subset(ds, range(min(limit, len(ds))))
    return name, ds


# ---------------------------------------------------------------------- fisher
def run_fisher(args: argparse.Namespace) -> int:
    """``trt-nm analyze fisher``: I_t per timestep of a checkpoint (or a run's records)."""
    if args.during_training:
        run_dir = Path(args.checkpoint)
        run_dir = run_dir if run_dir.is_dir() else run_dir.parent
        out = _out_dir(args, run_dir / "last.pt")
        data = read_fisher_json(run_dir / "fisher.json")
        records = data["records"]
        png = plot_fisher(out / "fisher_during_training.png", records, "recorded during training")
        for r in records:
            trace = " ".join(f"{v:.4g}" for v in r["trace"])
            print(f"epoch {r['epoch']}: I_t [{trace}]  centroid {r['centroid']:.3f}")
        print(f"wrote {png}")
        return 0

    model, cfg, device, ckpt, out = _load(args)
    name, ds = _train_split(args, cfg, model, None)
    loader = fisher_loader(ds, args.batch_size, seed=args.seed)
    res = fisher_trace_per_timestep(
        model, loader, device=device, max_batches=args.batches, progress=False if args.quiet else None
    )
    record = {"epoch": None, "checkpoint": str(ckpt), **res.to_dict()}
    meta = {"checkpoint": str(ckpt), "dataset": name, "T": res.T, "batch_size": args.batch_size, "seed": args.seed}
    js = write_fisher_json(out / "fisher.json", [record], meta)
    png = plot_fisher(out / "fisher.png", [record], f"{ckpt.name} on {name}")
    for t, (v, f) in enumerate(zip(res.trace, res.normalized(), strict=True)):
        print(f"t={t + 1}: I_t = {v:.6g}  ({100 * f:.1f}%)")
    print(f"information centroid {res.centroid:.3f} timesteps of {res.T} ({res.batches} batches, {res.samples} samples)")
    print(f"wrote {js} and {png}")
    return 0


# ---------------------------------------------------------------------- sharpness
def run_sharpness(args: argparse.Namespace) -> int:
    """``trt-nm analyze sharpness``: top Hessian eigenvalue and loss slices of a checkpoint."""
    model, cfg, device, ckpt, out = _load(args)
    if args.loss == "train":
        loss_name = cfg.loss if cfg is not None else "trt"
        loss_fn = Loss(loss_name, **(cfg.loss_kwargs if cfg is not None else {}))
    else:
        if args.loss not in list_losses():
            raise unknown_name("loss", args.loss, [*list_losses(), "train"])
        loss_name = args.loss
        loss_fn = Loss(loss_name)
    name, ds = _train_split(args, cfg, model, args.samples)
    loader = torch.utils.data.DataLoader(ds, batch_size=args.batch_size, shuffle=False)
    batches = list(loader)
    res = analyze_sharpness(
        model,
        batches,
        loss_fn,
        loss_name=loss_name,
        device=device,
        iters=args.iters,
        points=args.points,
        grid=args.grid,
        radius=args.radius,
        seed=args.seed,
        progress=False if args.quiet else None,
    )
    js = write_json(out / "sharpness.json", {"checkpoint": str(ckpt), "dataset": name, **res.to_dict()})
    png = plot_sharpness(out / "sharpness.png", res, f"{ckpt.name} on {name} ({res.samples} train samples)")
    state = "converged" if res.eigenvalue.converged else "not converged"
    print(f"{loss_name} loss at the solution {res.loss:.6g} on {res.samples} training samples")
    print(f"top Hessian eigenvalue {res.eigenvalue.value:.6g} ({res.eigenvalue.iterations} power iterations, {state})")
    if res.slice_rise is not None:
        print(f"mean loss rise along the filter-normalised slice for |alpha| <= {args.radius / 2:g}: {res.slice_rise:.6g}")
    print(f"wrote {js} and {png}")
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="checkpoint file or run directory (its last.pt)")
    p.add_argument("--dataset", default=None, help="registered dataset (default: the checkpoint's)")
    p.add_argument("--data-root", default=None, help="directory holding the dataset's files")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--seed", type=common.seed, default=0, help="seeds batch order / random directions")
    p.add_argument("--out", default=None, help="output directory (default: analysis/ beside the checkpoint)")
    p.add_argument("--quiet", action="store_true", help="no progress bar (shown on a terminal otherwise)")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``analyze`` subcommand (``fisher``, ``sharpness``)."""
    p = sub.add_parser("analyze", help="Fisher information per timestep, loss sharpness")
    what = p.add_subparsers(dest="analysis", metavar="ANALYSIS")
    what.required = True

    f = what.add_parser("fisher", help="trace of the empirical Fisher information per timestep")
    _common(f)
    f.add_argument("--batches", type=positive_int, default=100, help="training batches to average (100)")
    f.add_argument("--batch-size", type=common.batch_size, default=64)
    f.add_argument(
        "--during-training",
        action="store_true",
        help="summarise the records of a run trained with --fisher-epochs (CHECKPOINT = run dir)",
    )
    f.set_defaults(func=run_fisher)

    s = what.add_parser("sharpness", help="top Hessian eigenvalue and filter-normalised loss slices")
    _common(s)
    s.add_argument("--loss", default="sdt", help="loss to probe: sdt (CE of the mean output, default), ce, tet, trt, or 'train' (the run's own)")
    s.add_argument("--samples", type=positive_int, default=512, help="training samples defining the loss (512)")
    s.add_argument("--batch-size", type=common.batch_size, default=128)
    s.add_argument("--iters", type=positive_int, default=20, help="power iterations (20)")
    s.add_argument("--points", type=nonneg_int, default=21, help="points of the 1-D slice (21; 0 = none)")
    s.add_argument("--grid", type=nonneg_int, default=11, help="points per axis of the 2-D surface (11; 0 = none)")
    s.add_argument("--radius", type=finite_float, default=1.0, help="slice range [-r, r] in filter-normalised units")
    s.set_defaults(func=run_sharpness)
