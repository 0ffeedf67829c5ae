"""``trt-nm deploy``: write what a chip's vendor toolchain loads, and prove it with that toolchain.

:func:`deploy` takes a checkpoint trained with ``--target NAME``, puts it on the chip's integer
grids (:meth:`Chip.integerize`), refuses it if it breaks a design rule, runs the chip-exact
simulation on integer inputs (the test split, or ``--inputs``) and writes into ``DIR``:

* the vendor files (:meth:`Chip.write`: a NIR file for rockpool or sinabs, ``spec.npz`` for
  XyloSim, a lava-dl netx HDF5 file for Lava);
* ``expected.npz``: ``x`` (integer inputs ``[T, B, ...]`` as the chip receives them), ``out``
  (trt_nm's chip-exact output ``[T_out, B, ...]`` as the vendor simulator reports it), ``y``
  (labels, when known) and ``layer:NAME`` (each hidden layer's spikes);
* ``manifest.json``: target, tool versions, shapes, T, delays, how each file is loaded.

:func:`verify` runs the vendor simulator on ``expected.npz`` in its cached venv
(:mod:`trt_nm.chip.vendor`) and compares every record, spike for spike.
"""

from __future__ import annotations

import io
import json
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trt_nm.atomic import atomic_write_bytes, atomic_write_text, check_writable
from trt_nm.chip.base import LAYER_PREFIX, Chip, ChipNet
from trt_nm.chip.registry import get_chip
from trt_nm.chip.train import is_chip_checkpoint, load_split, read_checkpoint
from trt_nm.chip.vendor import vendor_records
from trt_nm.errors import ConfigError, TrtNmError
from trt_nm.version import __version__

#: at most this many input samples are deployed (``--samples``, ``--inputs``)
MAX_SAMPLES = 100_000
#: at most this many input elements in total (``--inputs``)
MAX_ELEMENTS = 1 << 28


class DesignRuleError(TrtNmError):
    """The integer network breaks a rule of the chip's mapper (exit code 3, like ``--check``)."""

    exit_code = 3


@dataclass
class Deployment:
    """What :func:`deploy` wrote and computed."""

    chip: Chip
    net: ChipNet
    out_dir: Path
    files: dict[str, str]
    x: np.ndarray
    y: np.ndarray | None
    records: dict[str, np.ndarray]
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def accuracy(self) -> float | None:
        """trt_nm's chip-exact accuracy (%) on the deployed inputs (None without labels)."""
        if self.y is None:
            return None
        return 100.0 * float((self.chip.predict(self.records["out"]) == self.y).mean())


def _refusal(data: dict[str, Any], chip: Chip) -> str:
    """One line saying why a zoo checkpoint (trained without ``--target``) cannot be deployed."""
    spec = data.get("model_spec") or {}
    cfg = data.get("config") or {}
    arch = spec.get("arch", cfg.get("arch", "?")) if isinstance(spec, dict) else "?"
    reset = cfg.get("reset", "zero") if isinstance(cfg, dict) else "zero"
    what = {
        "speck": "leaky neurons: Speck runs IF only (no leak, subtractive reset, one threshold per layer)",
        "xylo": "float LIF neurons with a non-neuron readout: Xylo needs bit-shift decays, no biases, "
                "integer thresholds and a neuron readout on 16 inputs",
        "loihi2": "float neurons: Loihi 2 runs 24-bit fixed-point CUBA neurons with 12-bit decays, "
                  "8-bit even weights and one step of delay per layer",
    }.get(chip.name, f"the paper's float neurons, not {chip.name}'s arithmetic")
    return (f"checkpoint was trained without --target ({arch}, reset {reset}): {what}; "
            f"retrain with `trt-nm train --target {chip.name}`")


def load_inputs(path: str | os.PathLike, chip: Chip, in_shape: tuple[int, ...],
                T: int) -> tuple[np.ndarray, np.ndarray | None]:
    """``--inputs FILE.npz``: an integer array ``x [T, B, *in_shape]`` (and optional ``y [B]``),
    parsed with ``allow_pickle=False`` and checked like a command-line value."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--inputs: no such file: {p}")
    try:
        with np.load(p, allow_pickle=False) as z:
            if "x" not in z.files:
                raise ConfigError(f"--inputs {p}: no array 'x' (found: {', '.join(z.files) or 'none'})")
            x = z["x"]
            y = z["y"] if "y" in z.files else None
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - any parse failure of a hostile file is one line
        raise ConfigError(f"--inputs {p}: not a readable .npz file ({type(exc).__name__})") from None
    want = (T, "B", *in_shape)
    if x.ndim != len(in_shape) + 2 or x.shape[0] != T or tuple(x.shape[2:]) != tuple(in_shape):
        raise ConfigError(f"--inputs {p}: x has shape {list(x.shape)}, the deployed model takes {list(want)}")
    if not 1 <= x.shape[1] <= MAX_SAMPLES or x.size > MAX_ELEMENTS:
        raise ConfigError(f"--inputs {p}: {x.shape[1]} samples; allowed 1..{MAX_SAMPLES} (and {MAX_ELEMENTS} values)")
    if x.dtype.kind == "f":
        if not np.all(np.isfinite(x)) or not np.all(x == np.round(x)):
            raise ConfigError(f"--inputs {p}: x must hold integers (the events the chip receives)")
    elif x.dtype.kind not in "iub":
        raise ConfigError(f"--inputs {p}: x has dtype {x.dtype}; expected integers")
    x = x.astype(np.int64)
    lo, hi = chip.input_range()
    if x.min(initial=0) < lo or x.max(initial=0) > hi:
        raise ConfigError(f"--inputs {p}: x holds values in [{x.min()}, {x.max()}]; {chip.name} takes [{lo}, {hi}]")
    if y is not None:
        if y.shape != (x.shape[1],) or y.dtype.kind not in "iu":
            raise ConfigError(f"--inputs {p}: y must be integer labels of shape [{x.shape[1]}]")
        y = y.astype(np.int64)
    return x, y


def _npz_bytes(arrays: dict[str, np.ndarray]):
    def write(fh: io.BufferedWriter) -> None:
        np.savez_compressed(fh, **arrays)  # spike records are mostly zeros
    return write


def deploy(ckpt: str | os.PathLike, target: str, out_dir: str | os.PathLike, *,
           inputs: str | os.PathLike | None = None, samples: int = 256) -> Deployment:
    """Write the deployment of checkpoint ``ckpt`` for chip ``target`` into ``out_dir``."""
    chip = get_chip(target)
    out = check_writable(out_dir, directory=True, what="--out")
    data = read_checkpoint(ckpt)
    if not is_chip_checkpoint(data):
        raise ConfigError(_refusal(data, chip))
    if data["chip"] != chip.name:
        raise ConfigError(f"checkpoint was trained for {data['chip']}, not {chip.name}; "
                          f"deploy it with --target {data['chip']} or retrain with --target {chip.name}")
    model, task = data["model_obj"], data["task_obj"]
    in_shape = tuple(int(s) for s in data["build"]["in_shape"])
    with torch.no_grad():
        net = chip.integerize(model)
    problems = chip.check_graph_lines(net)
    if problems:
        raise DesignRuleError(f"{chip.name} mapper would reject this network: " + "; ".join(problems))
    if inputs is not None:
        T = chip.input_steps(task.T)
        x, y = load_inputs(inputs, chip, in_shape, T)
    else:
        x, y = load_split(chip, task, "test", samples).time_major()
    records = chip.simulate(net, x)
    out.mkdir(parents=True, exist_ok=True)
    files = chip.write(net, out)
    expected = {"x": x, **{k: np.asarray(v) for k, v in records.items()}}
    if y is not None:
        expected["y"] = y
    atomic_write_bytes(out / "expected.npz", _npz_bytes(expected))
    dep = Deployment(chip, net, out, files, x, y, records)
    dep.manifest = _manifest(dep, data, task)
    atomic_write_text(out / "manifest.json", json.dumps(dep.manifest, indent=2, sort_keys=True) + "\n")
    return dep


def _manifest(dep: Deployment, data: dict[str, Any], task: Any) -> dict[str, Any]:
    chip = dep.chip
    files = {**dep.files,
             "expected.npz": "numpy.load(allow_pickle=False): x [T, B, ...] integer inputs, out "
                             f"[T_out, B, ...] ({chip.readout}), y [B] labels, layer:NAME hidden spikes",
             "manifest.json": "json"}
    return {
        "target": chip.name,
        "tools": {"trt_nm": __version__, "torch": torch.__version__, "numpy": np.__version__,
                  "python": platform.python_version(), "vendor": chip.vendor.packages},
        "task": {"dataset": task.dataset, "T": task.T, "classes": task.classes, "why": task.why},
        "T_in": int(dep.x.shape[0]),
        "T_out": int(dep.records["out"].shape[0]),
        "samples": int(dep.x.shape[1]),
        "x_shape": list(dep.x.shape),
        "out_shape": list(dep.records["out"].shape),
        "layers": {k[len(LAYER_PREFIX):]: list(v.shape) for k, v in dep.records.items()
                   if k.startswith(LAYER_PREFIX)},
        "readout": chip.readout,
        "accuracy_trt_nm": dep.accuracy,
        "checkpoint_test_accuracy": data.get("test_acc"),
        "files": files,
        "verify": f"trt-nm deploy CKPT --target {chip.name} --out DIR --verify "
                  f"(runs trt_nm/chip/runners/{chip.vendor.runner} in a venv with {chip.vendor.packages})",
        **chip.manifest_extra(dep.net),
    }


@dataclass
class Agreement:
    """Spike-for-spike comparison of one record between trt_nm and the vendor simulator."""

    name: str
    equal: int
    total: int
    shape_ok: bool

    @property
    def exact(self) -> bool:
        return self.shape_ok and self.equal == self.total

    def line(self) -> str:
        pct = 100.0 * self.equal / self.total if self.total else 100.0
        tag = "OK" if self.exact else "MISMATCH"
        return f"  {self.name:<22} {pct:8.4f}% of {self.total:,} values agree  {tag}"


def compare(expected: dict[str, np.ndarray], vendor: dict[str, np.ndarray]) -> list[Agreement]:
    """Per record (``out`` and every ``layer:NAME`` the vendor reports), the share of equal values.
    A record trt_nm predicts but the vendor result lacks counts as ``out`` only (the vendor
    decides which hidden layers it exposes); a missing ``out`` is a mismatch."""
    rows = []
    keys = ["out"] + sorted(k for k in vendor if k.startswith(LAYER_PREFIX))
    for k in keys:
        if k not in vendor or k not in expected:
            rows.append(Agreement(k, 0, int(np.asarray(expected.get(k, [0])).size), False))
            continue
        a, b = np.asarray(expected[k]), np.asarray(vendor[k])
        if a.shape != b.shape:
            rows.append(Agreement(k, 0, int(a.size), False))
            continue
        rows.append(Agreement(k, int((a == b).sum()), int(a.size), True))
    return rows


def verify(dep: Deployment, log: Any = print) -> bool:
    """Run the vendor simulator on the deployment; print agreement and accuracies; True when
    every value of every record agrees."""
    chip = dep.chip
    vendor = vendor_records(chip, dep.out_dir)
    rows = compare(dep.records, vendor)
    log(f"{chip.name}: trt_nm chip-exact simulation vs {chip.vendor.packages}, {dep.x.shape[1]} samples:")
    for r in rows:
        log(r.line())
    if dep.y is not None and "out" in vendor and vendor["out"].shape == dep.records["out"].shape:
        vacc = 100.0 * float((chip.predict(vendor["out"]) == dep.y).mean())
        log(f"  accuracy: trt_nm {dep.accuracy:.2f}%, vendor simulator {vacc:.2f}%")
    ok = all(r.exact for r in rows)
    report = {"agree": ok, "records": {r.name: [r.equal, r.total] for r in rows}}
    if "versions" in vendor:
        report["vendor_versions"] = json.loads(str(vendor["versions"]))
    atomic_write_text(dep.out_dir / "verify.json", json.dumps(report, indent=2, sort_keys=True) + "\n")
    log("every spike agrees" if ok else "MISMATCH: trt_nm and the vendor simulator disagree")
    return ok
