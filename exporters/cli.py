"""``trt-nm export CHECKPOINT --target NAME [--check] [--convert C ...] [--quantize BITS]``.

``trt_nm/cli/export.py`` builds the graph and calls :func:`run_target` when ``--target`` is
given. Target names (and aliases) are those of :mod:`trt_nm.exporters.targets`, shared with
``simulate``/``report``; an energy-only target (no exporter) is a one-line error. Exit codes:
0 fits / exported, 3 the graph violates the target's constraints (every violation and the
resource estimate are printed), 2 user errors (raised as ``TrtNmError`` and printed by the CLI
as one line).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trt_nm.atomic import check_writable
from trt_nm.errors import ConfigError
from trt_nm.exporters.base import TargetViolation
from trt_nm.exporters.targets import get_target


def default_output(checkpoint_path: str | Path | None, target: str) -> Path:
    """``<checkpoint stem>.<target>.nir`` beside the checkpoint (``model.<target>.nir`` if none)."""
    if checkpoint_path is None:
        return Path(f"model.{target}.nir")
    p = Path(checkpoint_path)
    if p.is_dir():
        return p / f"model.{target}.nir"
    return p.with_name(f"{p.stem}.{target}.nir")


def run_target(args: argparse.Namespace, graph: object, checkpoint_path: str | Path | None) -> int:
    """Check ``graph`` against ``args.target`` (``args.check``) or export the target's file.

    ``args`` attributes: ``target`` (str: a target name or alias), ``check`` (bool),
    ``convert`` (list of conversion names or None), ``quantize`` (bits or None: the target's
    width), ``out`` (path or None), ``dt`` (seconds or None: from the graph's metadata).
    Unknown and energy-only targets raise ConfigError (exit code 2).
    """
    exporter = get_target(args.target).get_exporter()
    convert = list(getattr(args, "convert", None) or [])
    quantize = getattr(args, "quantize", None)
    dt = getattr(args, "dt", None)
    prepared, qlines = exporter.prepare(graph, convert=convert, quantize=quantize)
    report = exporter.check(prepared, dt=dt)
    if convert:
        print(f"conversions applied: {', '.join(convert)}")
    if qlines:
        print("quantization (per-layer scale, co-scaled thresholds):")
        print("\n".join(qlines))
    print(report.text())
    if getattr(args, "check", False):
        return 0 if report.fits else 3
    if not report.fits:
        sys.stderr.write(
            f"trt-nm: error: not exported: {len(report.violations)} violation(s) of target "
            f"{exporter.name} (listed above)\n"
        )
        return 3
    out = Path(args.out) if getattr(args, "out", None) else default_output(checkpoint_path, exporter.name)
    check_writable(out, what="--out")  # ``trt-nm export`` checked it before loading; API callers
    try:
        paths = exporter.write(prepared, out)
    except TargetViolation as exc:  # pragma: no cover - write() does not check
        print(exc.report.text())
        return 3
    except OSError as exc:  # writable a moment ago; e.g. the disk filled up meanwhile
        raise ConfigError(f"cannot write {out}: {exc.strerror or exc}") from None
    fmt = exporter.profile.file_format
    for p in paths:
        print(f"wrote {p} ({fmt}, for {exporter.profile.toolchain})")
    return 0
