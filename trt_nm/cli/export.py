"""``trt-nm export CHECKPOINT --format nir|onnx --out FILE``: write a trained model as NIR/ONNX.

With ``--target NAME`` the NIR graph is handed to the hardware targets in
:mod:`trt_nm.exporters` (``--check``, ``--convert NAME``, ``--quantize BITS``). ``NAME`` is a
name of ``trt-nm targets`` (the same names ``simulate``/``report --target`` accept); an
energy-only target (no exporter: loihi, spinnaker, truenorth) fails with a one-line error
before the checkpoint is loaded. ``trt_nm.exporters`` is imported on use: it needs the
optional ``nir`` package.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from trt_nm.cli.common import finite_float, positive_int
from trt_nm.errors import ConfigError, MissingDependencyError
from trt_nm.nir.io import to_nir, write_nir
from trt_nm.nir.onnx_export import to_onnx
from trt_nm.training.checkpoint import load_model


def _target_exporter(name: str) -> None:
    """Fail early (one line, exit 2) on an unknown or energy-only target."""
    try:
        from trt_nm.exporters.targets import get_target
    except ImportError:
        raise MissingDependencyError("hardware targets need nir: pip install 'trt-nm[nir]'") from None
    get_target(name).get_exporter()


def run(args: argparse.Namespace) -> int:
    if args.dt is not None and args.dt <= 0:
        raise ConfigError(f"--dt must be > 0 seconds, got {args.dt}")
    if args.target is None and args.out is None:
        raise ConfigError("--out FILE is required (or --target NAME for a hardware target)")
    if args.target is not None:
        _target_exporter(args.target)
    model = load_model(args.checkpoint).eval()
    dt = 1e-4 if args.dt is None else args.dt
    reset_mode = "metadata" if args.reset_metadata else "error"
    if args.target is not None:
        graph = to_nir(model, dt=dt, reset_mode=reset_mode)
        from trt_nm.exporters.cli import run_target

        return int(run_target(args, graph, Path(args.checkpoint)) or 0)
    out = Path(args.out)
    if args.format == "nir":
        graph = to_nir(model, dt=dt, reset_mode=reset_mode)
        write_nir(graph, out)
        n = sum(1 for _ in graph.nodes)
        print(f"wrote {out} (NIR, {n} nodes, {len(graph.edges)} edges, dt={dt:g} s)")
    else:
        T = args.T or model.T
        to_onnx(model, out, T=T, batch=1, spikes=args.spikes, dt=dt)
        print(f"wrote {out} (ONNX, unrolled over T={T}, dynamic batch)")
    return 0


def register(sub) -> None:
    p = sub.add_parser("export", help="export a checkpoint as NIR or ONNX (or to a hardware target)")
    p.add_argument("checkpoint", help="checkpoint file or run directory")
    p.add_argument("--format", choices=("nir", "onnx"), default="nir")
    p.add_argument("--out", default=None, help="output file (.nir / .onnx)")
    p.add_argument("--dt", type=finite_float, default=None, help="NIR timestep in seconds (default 1e-4)")
    p.add_argument("-T", "--T", dest="T", type=positive_int, default=None,
                   help="ONNX: timesteps to unroll (default: the model's T)")
    p.add_argument("--spikes", action="store_true", help="ONNX: also output every layer's spikes")
    p.add_argument("--reset-metadata", action="store_true",
                   help="record a subtract reset in NIR metadata instead of failing")
    p.add_argument("--target", default=None, metavar="NAME",
                   help="hardware target with an exporter (trt-nm targets lists them)")
    p.add_argument("--check", action="store_true", help="target: check constraints only")
    p.add_argument("--convert", action="append", default=[], metavar="NAME",
                   help="target: conversion to apply (repeatable)")
    p.add_argument("--quantize", type=positive_int, default=None, metavar="BITS",
                   help="target: quantize weights to BITS bits")
    p.set_defaults(func=run)
