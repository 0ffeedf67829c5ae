"""The ``trt-nm`` command line.

Subcommands live one per module in :mod:`trt_nm.cli`; each module defines
``register(subparsers)`` which adds its parser and sets ``func(args) -> int``.
Errors a user can cause (:class:`~trt_nm.errors.TrtNmError`, bad arguments) print one line
on stderr and exit with code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from trt_nm.errors import TrtNmError
from trt_nm.sim.allocator import apply_from_env
from trt_nm.version import __version__

#: subcommands, one module each in this package (``register(subparsers)`` adds the parser)
COMMANDS = ("analyze", "datasets", "demo", "deploy", "export", "inspect", "report", "simulate", "targets", "train")
#: the subcommands that run the NIR simulator on large batches (see :func:`main`)
SIMULATING = frozenset({"demo", "report", "simulate"})


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="trt-nm",
        description="Train SNNs with the TRT loss, export through NIR, exit early, count spikes.",
    )
    parser.add_argument("--version", action="version", version=f"trt-nm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    sub.required = True
    for mod in COMMANDS:
        importlib.import_module(f"trt_nm.cli.{mod}").register(sub)
    return parser


def _one_line(msg: str) -> str:
    return " ".join(str(msg).split())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``trt-nm`` and ``python -m trt_nm``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in SIMULATING:
        # The simulator's CPU loops allocate multi-MiB tensors per step; glibc hands them back
        # to the OS, so each call page-faults (measured: cnn-small conv1 in a loop, 7.3 ms vs
        # 0.6 ms per call with freed memory retained; trt_nm.sim.allocator). Only the commands
        # that simulate change the process's malloc settings; TRT_NM_MALLOC=default opts out.
        apply_from_env()
    try:
        return int(args.func(args) or 0)
    except TrtNmError as exc:
        sys.stderr.write(f"trt-nm: error: {_one_line(exc)}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("trt-nm: interrupted\n")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
