"""``trt-nm export CHECKPOINT --format nir|onnx [--step] --out FILE``: write a trained model as
NIR or ONNX (``--step``: one timestep with the state as inputs and outputs,
:func:`trt_nm.nir.onnx_export.to_onnx_step`).

Before anything is loaded: options that would be ignored (``--convert`` without ``--target``,
``-T`` with ``--format nir``, ...) are refused and the output path is checked writable
(:func:`trt_nm.atomic.check_writable`). Before anything is written: a weight over
:data:`~trt_nm.nir.validate.OUTLIER_RATIO` (1e4) x its layer's median magnitude -- a corrupt or
bit-flipped checkpoint -- is refused (one line, exit 2) unless ``--allow-outlier-weights``.

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

from trt_nm.atomic import check_writable
from trt_nm.cli.common import positive_int
from trt_nm.cli.simulate import DT_ARG, T_ARG
from trt_nm.errors import ConfigError
from trt_nm.exporters.cli import default_output, run_target
from trt_nm.exporters.targets import get_target
from trt_nm.limits import check_T
from trt_nm.nir.io import to_nir, write_nir
from trt_nm.nir.onnx_export import to_onnx, to_onnx_step
from trt_nm.nir.validate import check_weight_magnitudes
from trt_nm.training.checkpoint import load_model


def _target_exporter(name: str) -> str:
    """Fail early (one line, exit 2) on an unknown or energy-only target; its exporter's name."""
    return get_target(name).get_exporter().name


#: options that only apply with --target, and those that only apply to --format onnx
_TARGET_ONLY = (("--check", "check"), ("--convert", "convert"), ("--quantize", "quantize"))
_ONNX_ONLY = (("-T", "T"), ("--spikes", "spikes"), ("--step", "step"))


def _given(args: argparse.Namespace, options: tuple[tuple[str, str], ...]) -> list[str]:
    return [flag for flag, attr in options if getattr(args, attr) not in (None, False, [])]


def _apply(flags: list[str]) -> str:
    return f"{', '.join(flags)} {'applies' if len(flags) == 1 else 'apply'} only"


def _check_options(args: argparse.Namespace) -> None:
    """Refuse (one line) options that would be ignored silently."""
    if args.target is None:
        orphans = _given(args, _TARGET_ONLY)
        if orphans:
            raise ConfigError(f"{_apply(orphans)} with --target NAME (trt-nm targets lists them)")
        if args.out is None:
            raise ConfigError("--out FILE is required (or --target NAME for a hardware target)")
    onnx_only = _given(args, _ONNX_ONLY)
    if onnx_only and (args.format != "onnx" or args.target is not None):
        raise ConfigError(f"{_apply(onnx_only)} to --format onnx (without --target)")
    if args.step and args.T is not None:
        raise ConfigError("-T does not apply to --step: the step model runs one timestep per call, as many as the host wants")
    if args.step and args.spikes:
        raise ConfigError("--spikes is not available with --step (the step model outputs logits and the state)")


def run(args: argparse.Namespace) -> int:
    _check_options(args)
    exporter_name = _target_exporter(args.target) if args.target is not None else None
    out: Path | None = None
    if args.target is None:
        out = check_writable(args.out, what="--out")  # before loading or converting anything
    elif not args.check:
        out = check_writable(args.out or default_output(args.checkpoint, exporter_name), what="--out")
    model = load_model(args.checkpoint).eval()
    dt = 1e-4 if args.dt is None else args.dt
    reset_mode = "metadata" if args.reset_metadata or args.format == "onnx" else "error"
    graph = to_nir(model, dt=dt, reset_mode=reset_mode)
    if not args.allow_outlier_weights:
        check_weight_magnitudes(graph, where=str(args.checkpoint))
    if args.target is not None:
        return int(run_target(args, graph, Path(args.checkpoint)) or 0)
    assert out is not None
    if args.format == "nir":
        write_nir(graph, out)
        n = sum(1 for _ in graph.nodes)
        print(f"wrote {out} (NIR, {n} nodes, {len(graph.edges)} edges, dt={dt:g} s)")
    elif args.step:
        to_onnx_step(graph, out, batch=1)
        print(f"wrote {out} (ONNX, one timestep: x and the state in, logits and the new state out; dynamic batch)")
    else:
        T = check_T(args.T if args.T is not None else model.T, where="-T" if args.T is not None else "checkpoint")
        to_onnx(graph, out, T=T, batch=1, spikes=args.spikes)
        print(f"wrote {out} (ONNX, T={T} steps, dynamic batch)")
    return 0


def register(sub) -> None:
    p = sub.add_parser("export", help="export a checkpoint as NIR or ONNX (or to a hardware target)")
    p.add_argument("checkpoint", help="checkpoint file or run directory")
    p.add_argument("--format", choices=("nir", "onnx"), default="nir")
    p.add_argument("--out", default=None, help="output file (.nir / .onnx)")
    p.add_argument("--dt", type=DT_ARG, default=None, help="NIR timestep in seconds, > 0 (default 1e-4)")
    p.add_argument("-T", "--T", dest="T", type=T_ARG, default=None,
                   help="ONNX: timesteps of the input, 1..100000 (default: the model's T)")
    p.add_argument("--spikes", action="store_true", help="ONNX: also output every layer's spikes")
    p.add_argument("--step", action="store_true",
                   help="ONNX: one timestep (x, state_in_* -> logits, state_out_*), for hosts that "
                   "run a sample step by step and stop it early")
    p.add_argument("--reset-metadata", action="store_true",
                   help="record a subtract reset in NIR metadata instead of failing")
    p.add_argument("--allow-outlier-weights", action="store_true",
                   help="export even when a layer has a weight over 1e4 x its median magnitude "
                   "(refused by default: a corrupt or bit-flipped checkpoint)")
    p.add_argument("--target", default=None, metavar="NAME",
                   help="hardware target with an exporter (trt-nm targets lists them)")
    p.add_argument("--check", action="store_true", help="target: check constraints only")
    p.add_argument("--convert", action="append", default=[], metavar="NAME",
                   help="target: conversion to apply (repeatable)")
    p.add_argument("--quantize", type=positive_int, default=None, metavar="BITS",
                   help="target: quantize weights to BITS bits")
    p.set_defaults(func=run)
