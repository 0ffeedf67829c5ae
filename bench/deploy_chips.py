"""Train with ``--target``, deploy, and verify with the vendor's simulator, for every chip.

For each chip (default: all of :func:`trt_nm.chip.list_chips`): hardware-aware training on the
chip's embedded task (``trt-nm train --target NAME``), ``trt-nm deploy --verify`` on the test
split, and one row: test accuracy in trt_nm's chip-exact simulation and in the vendor simulator,
the share of spikes that agree (output and every hidden layer the vendor exposes), energy per
inference from the target's profile, and the network's size against the chip's limits.

    python bench/deploy_chips.py                   # all chips, default epochs
    python bench/deploy_chips.py --chips xylo --epochs 1 --samples 64 --out runs/bench_deploy

Prints a Markdown table (the README's "Deploy to a chip" table) and writes ``results.json``.
Exits 1 when a chip's spikes do not all agree.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from trt_nm.chip import get_chip, list_chips
from trt_nm.chip.deploy import compare, deploy
from trt_nm.chip.evaluate import chip_summary
from trt_nm.chip.train import default_config, read_checkpoint, train_chip
from trt_nm.chip.vendor import vendor_records


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def run_chip(name: str, out: Path, epochs: int | None, samples: int) -> dict:
    chip = get_chip(name)
    t0 = time.perf_counter()
    cfg = default_config(name, epochs=epochs, out_dir=str(out / name / "run"))
    payload = train_chip(cfg, log=lambda *a: None)
    t_train = time.perf_counter() - t0
    dep = deploy(out / name / "run" / "last.pt", name, out / name / "deploy", samples=samples)
    t1 = time.perf_counter()
    vendor = vendor_records(chip, dep.out_dir)
    t_vendor = time.perf_counter() - t1
    rows = compare(dep.records, vendor)
    vacc = 100.0 * float((chip.predict(vendor["out"]) == dep.y).mean())
    summ = chip_summary(read_checkpoint(out / name / "run" / "last.pt"), limit=samples)
    sizes = {k: int(np.prod(v.shape[2:])) for k, v in dep.records.items()}
    return {
        "chip": name,
        "task": f"{chip.task.dataset} T={chip.task.T}"
                + (f" classes {len(chip.task.classes)}" if chip.task.classes else ""),
        "epochs": cfg.epochs,
        "train_s": t_train,
        "vendor_s": t_vendor,
        "samples": int(dep.x.shape[1]),
        "acc_trt_nm": dep.accuracy,
        "acc_vendor": vacc,
        "checkpoint_test_acc": payload["test_acc"],
        "agree": {r.name: [r.equal, r.total] for r in rows},
        "all_agree": all(r.exact for r in rows),
        "energy_j": summ["energy_j"],
        "energy_status": summ["energy_status"],
        "synops_per_sample": summ["synops_per_sample"],
        "neurons": sizes,
        "size": chip.size_line(dep.net),
        "manifest": dep.manifest,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--chips", default=",".join(list_chips()))
    p.add_argument("--epochs", type=int, default=None, help="default: each chip's default run")
    p.add_argument("--samples", type=int, default=256)
    p.add_argument("--out", default="runs/bench_deploy")
    args = p.parse_args(argv)
    out = Path(args.out)
    results = [run_chip(c, out, args.epochs, args.samples) for c in args.chips.split(",") if c]
    print(f"machine: {_cpu()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print("| chip | task | epochs | samples | acc trt_nm | acc vendor | spikes agree | synops / inference "
          "| energy / inference | size vs chip limits |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        agree = ", ".join(f"{k.removeprefix('layer:')} {100.0 * e / t:.2f}%" for k, (e, t) in r["agree"].items())
        energy = r["energy_status"] if r["energy_j"] is None else f"{r['energy_j'] * 1e6:.3g} uJ ({r['energy_status']})"
        syn = "n/a" if r["synops_per_sample"] is None else f"{r['synops_per_sample']:,.0f}"
        print(f"| {r['chip']} | {r['task']} | {r['epochs']} | {r['samples']} | {r['acc_trt_nm']:.2f}% "
              f"| {r['acc_vendor']:.2f}% | {agree} | {syn} | {energy} | {r['size']} |")
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0 if all(r["all_agree"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
