"""``trt-nm targets [NAME]``: every hardware target, one line each (exit 0).

Each line: canonical name, chip, export format and toolchain (or "energy-only"), whether a
constraint check exists, energy per synaptic op / per neuron update / per inference with its
source (or "not published"; "PROVISIONAL" for estimates), the weight width QAT trains for,
and the aliases. With ``NAME`` (a target or alias) the full constraint profile and energy
profile of that target are printed instead. These are the names ``export``, ``simulate`` and
``report --target`` accept. ``trt_nm.exporters`` is imported on use (it needs ``nir``).
"""

from __future__ import annotations

import argparse

from trt_nm.exporters.targets import get_target, list_aliases, list_targets
from trt_nm.nir.nodes import CHIP_NEURON_KINDS, chip_neuron

#: targets with a chip-exact neuron (hardware-aware training and ``trt-nm deploy``)
CHIP_TARGETS = frozenset(k.chip for k in CHIP_NEURON_KINDS.values())


def run(args: argparse.Namespace) -> int:
    """Print the target list (or one target's details); returns 0."""
    if args.name is not None:
        t = get_target(args.name)
        print(t.line())
        if t.profile is not None:
            print(t.profile.describe())
        if t.name in CHIP_TARGETS:
            print(chip_neuron(t.name).describe())
            print(f"  train: trt-nm train --target {t.name}; deploy: trt-nm deploy CKPT --target "
                  f"{t.name} --out DIR [--verify]")
        if t.energy_profile is not None:
            e = t.energy_profile
            print(f"energy profile {e.name} ({e.status}): {e.summary()}")
            print(f"  source: {e.source}")
            if e.note:
                print(f"  note: {e.note}")
        return 0
    for name in list_targets():
        print(get_target(name).line())
    aliases = ", ".join(f"{a} -> {t}" for a, t in list_aliases().items())
    if aliases:
        print(f"aliases: {aliases}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("targets", help="list hardware targets: export, check, energy (with sources), QAT bits, aliases")
    p.add_argument("name", nargs="?", default=None, metavar="NAME", help="show one target in detail")
    p.set_defaults(func=run)
