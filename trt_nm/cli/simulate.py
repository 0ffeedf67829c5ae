"""``trt-nm simulate``: run a NIR graph (or checkpoint) on a dataset split with early exit.

``--target NAME`` takes the names of ``trt-nm targets`` (the same as ``export --target``, plus
the energy-only targets and the aliases); energy is reported per target, flagged when the
target's constraint check rejects the model. :mod:`trt_nm.report.build` and
:mod:`trt_nm.exporters` are imported on use (they need the optional ``nir`` package).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from trt_nm.atomic import atomic_write_bytes
from trt_nm.cli.common import finite_float, positive_int
from trt_nm.errors import ConfigError
from trt_nm.training.trainer import resolve_device


def add_sim_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL.nir|CHECKPOINT", help="NIR file or trt_nm checkpoint")
    p.add_argument("--dataset", default="mnist5k", help="registered dataset (default mnist5k)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--split", default="test", help="evaluated split (default test)")
    p.add_argument("--calib-split", default="val", help="held-out split for calibrate:B (default val)")
    p.add_argument("-T", "--T", dest="T", type=positive_int, default=None, help="timesteps (default: graph metadata T)")
    p.add_argument("--dt", type=finite_float, default=None, help="time step in s (default: graph metadata dt)")
    p.add_argument("--exit", dest="exits", action="append", default=None, metavar="SPEC",
                   help="confidence:0.9 | entropy:0.3 | margin:2 | calibrate:0.5[:KIND] (repeatable)")
    p.add_argument("--target", dest="targets", action="append", default=None, metavar="NAME",
                   help="hardware target for energy and check (repeatable; default all; "
                   "trt-nm targets lists them)")
    p.add_argument("--limit", type=positive_int, default=None, help="use only the first N samples of each split")
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--device", default="cpu")


def report_from_args(args: argparse.Namespace, *, default_exit: str) -> dict:
    """Parse exits and targets (before loading anything), load the model, build the report."""
    from trt_nm.exporters.targets import resolve_targets
    from trt_nm.report.build import build_report, load_graph, parse_exit_option

    exits = [parse_exit_option(s) for s in (args.exits or [default_exit])]  # parse before loading
    targets = [t.name for t in resolve_targets(args.targets)] if args.targets else None
    device = resolve_device(args.device)
    graph, info = load_graph(args.model, dt=args.dt)
    return build_report(
        graph, dataset=args.dataset, data_root=args.data_root, T=args.T, dt=args.dt,
        eval_split=args.split, calib_split=args.calib_split, exits=exits, targets=targets,
        batch_size=args.batch_size, device=str(device), limit=args.limit, calib_limit=args.limit,
        source=info,
    )


def print_summary(rep: dict) -> None:
    """Accuracy, operation counts, exit rules and energy per target (full T), a few lines."""
    acc = ", ".join(f"t={t + 1}: {a:.2f}%" for t, a in enumerate(rep["accuracy_per_timestep"]))
    print(f"per-timestep accuracy ({rep['dataset']['eval_split']}, {rep['dataset']['n_eval']} samples): {acc}")
    fo = rep["full_T"]["ops"]
    print(f"full T: {fo['spikes']:.0f} spikes, {fo['synops']:.4g} synops "
          f"({fo['effective_acs']:.4g} ACs + {fo['effective_macs']:.4g} MACs) per sample, "
          f"activation sparsity {fo['activation_sparsity']:.3f}")
    for e in rep["early_exit"]:
        how = e["source"] + (f", budget {e['budget_pp']:g} pp" if e["budget_pp"] is not None else "")
        print(f"exit {e['rule']:<22} ({how}): accuracy {e['accuracy']:.2f}% "
              f"(full T {e['full_accuracy']:.2f}%), mean timesteps {e['mean_timesteps']:.2f}, "
              f"exits per t {e['exit_histogram']}, synops/sample {e['ops']['synops']:.4g}")
    from trt_nm.report.build import energy_cell

    cells = [f"{t} {energy_cell(rep, rep['full_T'], t)}" for t in rep.get("targets", {})]
    if cells:
        print("energy per inference (full T): " + "; ".join(cells))


def run(args: argparse.Namespace) -> int:
    rep = report_from_args(args, default_exit="calibrate:0.5")
    print_summary(rep)
    if args.json:
        from trt_nm.report.build import check_out_dir

        check_out_dir(Path(args.json).parent)
        if Path(args.json).is_dir():
            raise ConfigError(f"--json path is a directory: {args.json}")
        atomic_write_bytes(args.json, lambda fh: fh.write(json.dumps(rep, indent=2).encode()))
        print(f"wrote {args.json}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("simulate", help="simulate a NIR graph on a dataset: accuracy per t, early exit, spikes")
    add_sim_args(p)
    p.add_argument("--json", default=None, metavar="PATH", help="also write all numbers as JSON")
    p.set_defaults(func=run)
