"""``trt-nm deploy CKPT --target NAME --out DIR [--inputs F.npz] [--verify]``.

Writes what the chip's vendor toolchain loads (see :mod:`trt_nm.chip.deploy`) plus
``expected.npz`` and ``manifest.json``; ``--verify`` runs the vendor's simulator in a cached
venv and exits 0 only when every spike agrees (1 on a mismatch). A checkpoint trained without
``--target`` is refused in one line naming what differs (exit 2); a network that breaks the
chip's design rules exits 3, like ``export --check``.
"""

from __future__ import annotations

import argparse

from trt_nm.chip.deploy import MAX_SAMPLES, deploy, verify
from trt_nm.chip.registry import list_chips
from trt_nm.limits import arg_type, check_int


def _samples(value: object) -> int:
    return check_int(value, "--samples", 1, MAX_SAMPLES)


def run(args: argparse.Namespace) -> int:
    """Deploy (and verify); returns the exit code."""
    dep = deploy(args.checkpoint, args.target, args.out, inputs=args.inputs, samples=args.samples)
    print(f"deployed to {dep.chip.name} in {dep.out_dir}:")
    for name, how in dep.files.items():
        print(f"  {name}: {how}")
    acc = dep.accuracy
    extra = f", accuracy {acc:.2f}%" if acc is not None else ""
    print(f"  expected.npz: x {list(dep.x.shape)}, out {list(dep.records['out'].shape)}{extra} "
          f"(trt_nm chip-exact simulation)")
    print("  manifest.json")
    if not args.verify:
        return 0
    return 0 if verify(dep) else 1


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``deploy`` subcommand."""
    p = sub.add_parser("deploy", help="write a chip's vendor files from a --target checkpoint; --verify with the vendor simulator")
    p.add_argument("checkpoint", metavar="CKPT", help="checkpoint of `trt-nm train --target NAME` (file or run dir)")
    p.add_argument("--target", required=True, help=f"chip to deploy to: {', '.join(list_chips())}")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--inputs", default=None, metavar="FILE.npz",
                   help="integer inputs x [T, B, ...] to deploy instead of the test split")
    p.add_argument("--samples", type=arg_type(_samples), default=256,
                   help="test samples in expected.npz (default 256)")
    p.add_argument("--verify", action="store_true",
                   help="run the vendor simulator (builds its venv once) and compare every spike")
    p.set_defaults(func=run)
