"""``trt-nm report``: report.json, report.md and PNG plots for a NIR graph or checkpoint.

``--target NAME`` (repeatable, default all) takes the names of ``trt-nm targets``; every
target's constraint check runs on the graph and its energy rows say "check fails: <first
violation>" when the check rejects the model (see :mod:`trt_nm.report.targets`).
:mod:`trt_nm.report.build` is imported on use (it needs the optional ``nir`` package).
"""

from __future__ import annotations

import argparse

from trt_nm.cli.simulate import add_sim_args, print_summary, report_from_args
from trt_nm.errors import ConfigError


def run(args: argparse.Namespace) -> int:
    """Simulate, then write the report directory; returns 0."""
    from trt_nm.report.build import check_out_dir, write_report

    check_out_dir(args.out)  # fail before simulating: a file, under a file, not writable
    rep = report_from_args(args, default_exit="calibrate:0.5")
    print_summary(rep)
    try:
        paths = write_report(rep, args.out, plots=not args.no_plots)
    except OSError as exc:  # checked writable above; e.g. the disk filled up meanwhile
        raise ConfigError(f"cannot write the report to {args.out}: {exc.strerror or exc}") from None
    print(f"report written to {paths['md']} (+ report.json and {len(paths) - 2} plots in {args.out})")
    return 0


def register(sub) -> None:
    p = sub.add_parser("report", help="write report.json, report.md and plots (accuracy, exit, spikes, energy)")
    add_sim_args(p)
    p.add_argument("--out", required=True, help="report directory")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.set_defaults(func=run)
