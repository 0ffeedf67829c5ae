"""``trt-nm simulate``: run a NIR graph (or checkpoint) on a dataset split with early exit.

``--target NAME`` takes the names of ``trt-nm targets`` (the same as ``export --target``, plus
the energy-only targets and the aliases); energy is reported per target, flagged when the
target's constraint check rejects the model. :mod:`trt_nm.report.build` and
:mod:`trt_nm.exporters` are imported on use (they need the optional ``nir`` package).
"""

from __future__ import annotations

import argparse
import json

from trt_nm.atomic import atomic_write_bytes, check_writable
from trt_nm.cli.common import positive_int
from trt_nm.errors import ConfigError
from trt_nm.limits import arg_type, check_float, check_T
from trt_nm.training.trainer import resolve_device

#: argparse types: the same bounds as the same values read from a file
T_ARG = arg_type(check_T)
DT_ARG = arg_type(check_float, name="--dt", low=0.0, low_open=True)


def add_sim_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL.nir|CHECKPOINT", help="NIR file or trt_nm checkpoint")
    p.add_argument("--dataset", default="mnist5k", help="registered dataset (default mnist5k)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--split", default="test", help="evaluated split (default test)")
    p.add_argument("--calib-split", default="val", help="held-out split for calibrate:B (default val)")
    p.add_argument("-T", "--T", dest="T", type=T_ARG, default=None,
                   help="timesteps, 1..100000 (default: graph metadata T, else 4)")
    p.add_argument("--dt", type=DT_ARG, default=None, help="time step in s, > 0 (default: graph metadata dt)")
    p.add_argument("--exit", dest="exits", action="append", default=None, metavar="SPEC",
                   help="confidence:0.9 (in (0, 1]) | entropy:0.3 (>= 0) | margin:2 (>= 0) | "
                   "calibrate:B[:KIND] (loss <= B pp on --calib-split) | with --delta: calibrate:EPS[:KIND] "
                   "(loss <= EPS, a fraction: 0.01 = 1 pp, with probability >= 1 - delta) (repeatable)")
    p.add_argument("--delta", type=float, default=None, metavar="D",
                   help="calibrate with a guarantee: loss <= EPS with probability >= 1 - D, D in (0, 1)")
    p.add_argument("--target", dest="targets", action="append", default=None, metavar="NAME",
                   help="hardware target for energy and check (repeatable; default all; "
                   "trt-nm targets lists them)")
    p.add_argument("--limit", type=positive_int, default=None, help="use only the first N samples of each split")
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--device", default="cpu")


def report_from_args(args: argparse.Namespace, *, default_exit: str) -> dict:
    """Parse exits and targets (before loading anything), load the model, build the report."""
    from trt_nm.exporters.targets import resolve_targets
    from trt_nm.report.build import build_report, load_graph, parse_exit_options

    exits = parse_exit_options(args.exits or [default_exit], args.delta)  # parse before loading
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
    from trt_nm.report.build import exit_rule_label, exit_source

    for e in rep["early_exit"]:
        print(f"exit {exit_rule_label(e):<22} ({exit_source(e)}): accuracy {e['accuracy']:.2f}% "
              f"(full T {e['full_accuracy']:.2f}%), mean timesteps {e['mean_timesteps']:.2f}, "
              f"exits per t {e['exit_histogram']}, synops/sample {e['ops']['synops']:.4g}")
        g, ex = e.get("guarantee"), e.get("executed")
        if g:
            print(f"  guarantee: EPS {g['eps']:g}, delta {g['delta']:g}, bound {g['bound']:.4f} on the loss "
                  f"({g['harm']} harmed of {g['n']}); measured loss {g['val_loss_pp']:.2f} pp "
                  f"({rep['dataset']['calib_split']}), {g['test_loss_pp']:.2f} pp ({rep['dataset']['eval_split']})")
        if ex:
            print(f"  executed: {ex['samples_per_s']:.0f} samples/s vs {ex['full_T_samples_per_s']:.0f} at full T "
                  f"({ex['speedup']:.2f}x), identical to post-hoc")
        if e.get("note"):
            print(f"  note: {e['note']}")
    from trt_nm.report.build import energy_cell

    cells = [f"{t} {energy_cell(rep, rep['full_T'], t)}" for t in rep.get("targets", {})]
    if cells:
        print("energy per inference (full T): " + "; ".join(cells))


def _chip_checkpoint(path: str) -> dict | None:
    """The loaded checkpoint when ``path`` is one written by ``train --target`` (else None)."""
    from pathlib import Path

    p = Path(path)
    if p.suffix.lower() == ".nir" or not (p.is_dir() or p.is_file()):
        return None
    from trt_nm.chip.train import is_chip_checkpoint, read_checkpoint

    try:
        data = read_checkpoint(p)
    except Exception:  # noqa: BLE001 - not a chip checkpoint: the NIR path reports its own error
        return None
    return data if is_chip_checkpoint(data) else None


def run_chip(args: argparse.Namespace, data: dict) -> dict:
    """``simulate`` of a ``--target`` checkpoint: the chip's exact integer arithmetic."""
    from trt_nm.chip.evaluate import chip_summary, summary_lines

    chip = data["chip"]
    if args.targets and any(t != chip for t in args.targets):
        raise ConfigError(f"this checkpoint was trained for {chip}; simulate it with --target {chip} (or none)")
    if args.exits:
        raise ConfigError("--exit applies to NIR graphs; a chip runs its fixed number of steps")
    s = chip_summary(data, split=args.split, limit=args.limit)
    for line in summary_lines(s):
        print(line)
    return s


def run(args: argparse.Namespace) -> int:
    if args.json:
        check_writable(args.json, what="--json")  # before simulating
    data = _chip_checkpoint(args.model)
    if data is not None:
        rep = run_chip(args, data)
    else:
        rep = report_from_args(args, default_exit="calibrate:0.5")
        print_summary(rep)
    if args.json:
        text = json.dumps(rep, indent=2)
        try:
            atomic_write_bytes(args.json, lambda fh: fh.write(text.encode()))
        except OSError as exc:  # checked writable above; e.g. the disk filled up meanwhile
            raise ConfigError(f"cannot write --json {args.json}: {exc.strerror or exc}") from None
        print(f"wrote {args.json}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("simulate", help="simulate a NIR graph on a dataset: accuracy per t, early exit, spikes")
    add_sim_args(p)
    p.add_argument("--json", default=None, metavar="PATH", help="also write all numbers as JSON")
    p.set_defaults(func=run)
