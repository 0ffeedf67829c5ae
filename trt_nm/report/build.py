"""Simulate a NIR graph on a dataset and write a report: per-timestep accuracy, early exit,
per-layer spikes and synaptic operations, energy per hardware target, ANN comparison.

``build_report(...)`` returns a plain dict (``report.json``); ``write_report(report, out_dir)``
writes ``report.json``, ``report.md`` and PNG plots (:mod:`trt_nm.report.plots`).
Exit thresholds are calibrated on a held-out split (``val`` by default), never on the split
being reported (``test``).

Targets are those of :mod:`trt_nm.exporters.targets` (names or aliases). Each target's
constraint check runs on the graph; a target whose check rejects the model keeps its energy
numbers, flagged ``"check fails: <first violation>"`` wherever they appear; a target without a
published energy figure reads "not published" (see :mod:`trt_nm.report.targets`).
"""

from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from trt_nm.atomic import atomic_write_bytes, check_writable
from trt_nm.early_exit import (
    ExitRule,
    accuracy_per_timestep,
    calibrate,
    check_threshold,
    evaluate_exit,
    get_exit_rule,
    list_exit_rules,
    parse_exit_spec,
    sweep,
)
from trt_nm.errors import ConfigError
from trt_nm.exit_guarantee import calibrate_guaranteed
from trt_nm.exporters.targets import Target, resolve_targets
from trt_nm.limits import check_T
from trt_nm.metrics.energy import COUNTING_RULE, ann_energy, count_ops
from trt_nm.nir.graph import graph_T
from trt_nm.nir.io import read_nir, to_nir
from trt_nm.nir.validate import NOTE_KEY
from trt_nm.report.plots import exit_rule_label, write_plots
from trt_nm.report.targets import (
    ann_block,
    ann_markdown,
    energy_block,
    energy_cell,
    energy_markdown,
    target_rows,
)
from trt_nm.sim.check import validate_runnable
from trt_nm.sim.engine import Simulator
from trt_nm.sim.result import ExitRun, SimResult, concat_exit_runs, concat_results
from trt_nm.training.checkpoint import load_model
from trt_nm.version import __version__


@dataclass(frozen=True)
class ExitOption:
    """A parsed ``--exit`` value: a fixed rule, or calibration of ``kinds`` within a budget.

    ``delta`` None: ``budget`` is an accuracy loss in percentage points, met on the calibration
    split (a point estimate). ``delta`` set: ``budget`` is EPS, a fraction, met with probability
    at least ``1 - delta`` (:func:`trt_nm.exit_guarantee.calibrate_guaranteed`).
    """

    rule: ExitRule | None = None
    budget: float | None = None
    kinds: tuple[str, ...] = ()
    delta: float | None = None

    @property
    def spec(self) -> str:
        if self.rule is not None:
            return self.rule.spec
        if self.delta is not None:
            return f"calibrate:{self.budget:g} --delta {self.delta:g}"
        return f"calibrate:{self.budget:g}"


def parse_exit_option(text: str, delta: float | None = None) -> ExitOption:
    """``confidence:0.9`` / ``entropy:0.3`` / ``margin:2`` / ``calibrate:0.5[:KIND]``.

    ``calibrate:B`` calibrates every rule kind within an accuracy budget of B percentage points;
    ``calibrate:B:confidence`` only that kind. With ``delta`` (``--delta D``), ``calibrate:EPS``
    asks for a loss of at most EPS (a fraction in [0, 1): 0.01 = 1 pp) with probability at least
    1 - D. Fixed thresholds must lie in their rule's range (confidence in (0, 1], entropy and
    margin >= 0 and finite; :func:`trt_nm.early_exit.check_threshold`).
    """
    if delta is not None:
        d = float(delta)
        if not (math.isfinite(d) and 0.0 < d < 1.0):
            raise ConfigError(f"--delta must be a probability in (0, 1), got {delta!r}")
    if isinstance(text, str) and text.strip().startswith("calibrate:"):
        parts = text.strip().split(":")
        if len(parts) not in (2, 3):
            raise ConfigError(f"cannot parse exit spec {text!r}; expected calibrate:BUDGET[:KIND]")
        try:
            budget = float(parts[1])
        except ValueError:
            raise ConfigError(f"cannot parse exit spec {text!r}: budget {parts[1]!r} is not a number") from None
        if delta is not None and not (math.isfinite(budget) and 0.0 <= budget < 1.0):
            raise ConfigError(f"cannot parse exit spec {text!r}: with --delta, EPS is a fraction in [0, 1) "
                              "(0.01 = 1 pp)")
        if not math.isfinite(budget) or budget < 0:
            raise ConfigError(f"cannot parse exit spec {text!r}: budget must be >= 0 percentage points")
        kinds = tuple(list_exit_rules()) if len(parts) == 2 else (parts[2],)
        for k in kinds:
            get_exit_rule(k)
        return ExitOption(budget=budget, kinds=kinds, delta=None if delta is None else float(delta))
    return ExitOption(rule=check_threshold(parse_exit_spec(text)))


def parse_exit_options(texts: list[str], delta: float | None = None) -> list[ExitOption]:
    """Every ``--exit`` value (:func:`parse_exit_option`); ``--delta`` without any
    ``calibrate:EPS`` is a one-line error."""
    opts = [parse_exit_option(t, delta) for t in texts]
    if delta is not None and all(o.rule is not None for o in opts):
        raise ConfigError("--delta applies to --exit calibrate:EPS; no calibrate option was given")
    return opts


# --------------------------------------------------------------------------- loading


def load_graph(source: str | Path, *, dt: float | None = None) -> tuple[Any, dict[str, Any]]:
    """A NIR graph from a ``.nir`` file or a trt_nm checkpoint (exported with ``to_nir``).

    The graph is checked by :func:`trt_nm.sim.check.validate_runnable` (the check
    ``trt-nm inspect`` makes: dt, one Input/Output, time constants, ...) with ``dt``, and its
    metadata ``T`` by :func:`trt_nm.limits.check_T`; every failure is one line.

    Returns:
        ``(graph, info)`` with ``info = {"source", "kind": "nir"|"checkpoint", "arch", "T",
        "producer"}`` (plus ``"note"`` when reading changed the graph, e.g. a Norse batch
        dimension dropped).
    """
    path = Path(source)
    if not path.exists():
        raise ConfigError(f"model file not found: {path}")
    head = b""
    if path.is_file():
        with open(path, "rb") as fh:
            head = fh.read(8)
    if head.startswith(b"\x89HDF"):
        graph = read_nir(path)
        kind = "nir"
    elif not head.startswith(b"PK"):  # torch.save writes a zip archive
        raise ConfigError(f"{path}: neither a NIR file (HDF5) nor a trt_nm checkpoint")
    else:
        model = load_model(path).eval()
        graph = to_nir(model, dt=1e-4 if dt is None else dt)
        kind = "checkpoint"
    validate_runnable(graph, dt=dt, where=str(path))
    meta = dict(getattr(graph, "metadata", None) or {})
    info = {
        "source": str(path),
        "kind": kind,
        "arch": _plain(meta.get("arch", "")),
        "T": graph_T(graph),
        "producer": _plain(meta.get("producer", "")),
    }
    if NOTE_KEY in meta:
        info["note"] = _plain(meta[NOTE_KEY])
    return graph, info


def _plain(v: Any) -> Any:
    """A metadata value as plain JSON-able data (numpy scalars and arrays, bytes decoded)."""
    if hasattr(v, "tolist"):
        v = v.tolist()  # numpy scalar -> python scalar, array -> (nested) list
    if isinstance(v, bytes):
        v = v.decode("utf8", "replace")
    return v


def load_split(dataset: str, split: str, T: int, *, data_root: str | None = None, limit: int | None = None):
    """A dataset split as a torch Dataset of ``([T, ...], label)`` samples."""
    from torch.utils.data import Subset

    from trt_nm.datasets import get_dataset

    ds = get_dataset(dataset, data_root, split, T)
    if limit is not None:
        ds = Subset(ds, range(min(int(limit), len(ds))))
    if len(ds) == 0:
        raise ConfigError(f"split {split!r} of {dataset!r} is empty")
    return ds


def simulate_dataset(
    sim: Simulator, ds, *, batch_size: int = 256, count_ops: bool = True, seconds: list[float] | None = None
) -> tuple[SimResult, torch.Tensor]:
    """Simulate every sample of ``ds``; returns the joined :class:`SimResult` and labels ``[N]``
    (``seconds``, when given, receives the time spent in the simulator)."""
    from torch.utils.data import DataLoader

    results, labels = [], []
    spent = 0.0
    for x, y in DataLoader(ds, batch_size=batch_size, shuffle=False):
        t0 = time.perf_counter()
        results.append(sim(x.transpose(0, 1), count_ops=count_ops))
        spent += time.perf_counter() - t0
        labels.append(torch.as_tensor(y).reshape(-1))
    if seconds is not None:
        seconds.append(spent)
    return concat_results(results), torch.cat(labels)


def simulate_dataset_exit(sim: Simulator, ds, rule: ExitRule, *, batch_size: int = 256,
                          count_ops: bool = True) -> tuple[ExitRun, torch.Tensor, float]:
    """Every sample of ``ds`` with EXECUTED early exit (:meth:`Simulator.run_exit`, batch by
    batch as :func:`simulate_dataset`); returns the joined :class:`ExitRun`, labels ``[N]``
    and the seconds spent in the simulator."""
    from torch.utils.data import DataLoader

    runs, labels = [], []
    spent = 0.0
    for x, y in DataLoader(ds, batch_size=batch_size, shuffle=False):
        t0 = time.perf_counter()
        runs.append(sim.run_exit(x.transpose(0, 1), rule, count_ops=count_ops))
        spent += time.perf_counter() - t0
        labels.append(torch.as_tensor(y).reshape(-1))
    return concat_exit_runs(runs), torch.cat(labels), spent


# --------------------------------------------------------------------------- report


def operating_point(
    res: SimResult,
    y: torch.Tensor,
    steps: torch.Tensor | None,
    targets: list[Target],
    rows: dict[str, dict[str, Any]],
) -> dict:
    """Counts and energy (J per inference, flagged per target) of one operating point (all T
    when ``steps`` is None); ``rows`` are :func:`~trt_nm.report.targets.target_rows`."""
    counts = count_ops(res, steps)
    return {"ops": counts.to_dict(), "energy": energy_block(counts, targets, rows)}


def build_report(
    graph: Any,
    *,
    dataset: str = "mnist5k",
    data_root: str | None = None,
    T: int | None = None,
    dt: float | None = None,
    eval_split: str = "test",
    calib_split: str = "val",
    exits: list[ExitOption] | None = None,
    targets: list[str] | None = None,
    batch_size: int = 256,
    device: str = "cpu",
    limit: int | None = None,
    calib_limit: int | None = None,
    source: dict[str, Any] | None = None,
    curve_points: int = 40,
    executed: bool = True,
) -> dict[str, Any]:
    """Everything ``trt-nm report`` writes, as plain data (see module docstring).

    Args:
        graph: ``nir.NIRGraph``.
        dataset: registered dataset name.
        T: timesteps (default ``graph.metadata["T"]``, else 4).
        eval_split / calib_split: the reported split and the held-out calibration split.
        exits: exit options (default: ``calibrate:0.5`` over every rule kind).
        targets: target names or aliases of :func:`trt_nm.exporters.list_targets` (default:
            all); each is checked against the graph and costed with its energy profile.
        limit / calib_limit: use only the first N samples of each split.
        executed: also run every exit rule as EXECUTED early exit on the evaluated split
            (:meth:`Simulator.run_exit`): its predictions and exit steps must equal the post-hoc
            evaluation (a ConfigError otherwise), and its speed is reported next to full T.
    """
    t0 = time.perf_counter()
    chosen = resolve_targets(targets)
    exits = list(exits) if exits else [parse_exit_option("calibrate:0.5")]
    if calib_split == eval_split and any(e.rule is None for e in exits):
        raise ConfigError("the calibration split must differ from the evaluated split")
    meta = dict(getattr(graph, "metadata", None) or {})
    if T is None:
        T = graph_T(graph) or 4
    T = check_T(T)
    rows = target_rows(chosen, graph, dt)
    sim = Simulator(graph, dt=dt, device=device)
    ds = load_split(dataset, eval_split, T, data_root=data_root, limit=limit)
    full_seconds: list[float] = []
    res, y = simulate_dataset(sim, ds, batch_size=batch_size, seconds=full_seconds)
    cum = res.cum_logits.float().cpu()
    acc_t = accuracy_per_timestep(cum, y)
    full = operating_point(res, y, None, chosen, rows)
    layers = []
    totals = count_ops(res, None)
    per_t = res.spikes_per_timestep()
    for name, row in totals.per_layer.items():
        layers.append({"name": name, **row, "spikes_per_timestep": [s / res.batch_size for s in per_t.get(name, [])]})

    needs_calib = any(e.rule is None for e in exits)
    calib = None
    if needs_calib:
        cds = load_split(dataset, calib_split, T, data_root=data_root, limit=calib_limit)
        cres, cy = simulate_dataset(sim, cds, batch_size=batch_size, count_ops=False)
        calib = (cres.cum_logits.float().cpu(), cy)
    exit_rows = []
    for opt in exits:
        if opt.rule is not None:
            rules = [(opt.rule, None)]
        else:
            rules = []
            for kind in opt.kinds:
                if opt.delta is None:
                    cal = calibrate(kind, calib[0], calib[1], opt.budget, split=calib_split)
                else:
                    cal = calibrate_guaranteed(kind, calib[0], calib[1], opt.budget, opt.delta, split=calib_split)
                rules.append((cal.rule, cal))
        for rule, cal in rules:
            r = evaluate_exit(rule, cum, y)
            row = {
                **r.to_dict(),
                "source": "fixed" if cal is None else f"calibrated on {calib_split}",
                "budget_pp": None if cal is None else cal.budget_pp,
                "calibration": None if cal is None else cal.result.to_dict(),
                "guarantee": None,
                "note": None,
                **operating_point(res, y, r.exit_steps, chosen, rows),
            }
            if cal is not None and hasattr(cal, "delta"):
                row["source"] = f"calibrated on {calib_split} with a guarantee"
                row["guarantee"] = {**{k: v for k, v in cal.to_dict().items() if k != "calibration"},
                                    "val_loss_pp": cal.result.accuracy_loss, "test_loss_pp": r.accuracy_loss}
            if cal is not None:
                row["note"] = _exit_note(cal.result, r, row["guarantee"])
            if executed:
                row["executed"] = _executed(sim, ds, rule, r, batch_size, full_seconds[0], res, y, row["ops"])
            exit_rows.append(row)
    curves = {}
    for kind in list_exit_rules():
        pts = sweep(kind, cum, y)
        # thin to at most curve_points operating points, evenly over mean timesteps
        pts.sort(key=lambda p: p.mean_timesteps)
        if len(pts) > curve_points:
            idx = sorted({round(i * (len(pts) - 1) / (curve_points - 1)) for i in range(curve_points)})
            pts = [pts[i] for i in idx]
        curves[kind] = [{"threshold": p.rule.threshold, "accuracy": p.accuracy, "mean_timesteps": p.mean_timesteps} for p in pts]
    ann = ann_block(totals, chosen)
    return {
        "format": "trt_nm-report",
        "version": 1,
        "trt_nm_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"platform": platform.platform(), "cpu_threads": torch.get_num_threads(), "device": str(device)},
        "model": {**(source or {}), "arch": _plain(meta.get("arch", (source or {}).get("arch", ""))),
                  "producer": _plain(meta.get("producer", "")), "dt": res.dt, "reset": res.reset, "T": T},
        "dataset": {"name": dataset, "eval_split": eval_split, "calib_split": calib_split if needs_calib else None,
                    "n_eval": int(y.numel()), "n_calib": int(calib[1].numel()) if calib else 0},
        "counting_rule": COUNTING_RULE,
        "accuracy_per_timestep": acc_t,
        "accuracy": acc_t[-1],
        "full_T": full,
        "layers": layers,
        "early_exit": exit_rows,
        "exit_curves": curves,
        "targets": rows,
        "energy_profiles": {t.name: t.energy_profile.to_dict() for t in chosen if t.energy_profile},
        "ann_equivalent": {"macs": totals.ann_macs, "energy_j": ann,
                           "cmos45nm_j": ann_energy(totals, "cmos45nm"),
                           "note": "same architecture, non-spiking: every weighted layer once, dense, per inference"},
        "seconds": round(time.perf_counter() - t0, 2),
    }


def _exit_note(cal_point: Any, test_point: Any, guarantee: dict | None) -> str | None:
    """What a reader must know about a calibrated rule: it collapsed to a single step, or the
    guarantee could not certify any early exit."""
    if guarantee is not None and guarantee["passed"] == 0:
        return (f"no threshold passed the test (EPS {guarantee['eps']:g} with {guarantee['n']} calibration "
                f"samples at delta {guarantee['delta']:g}): the rule never exits early")
    if cal_point.mean_timesteps == 1.0:
        return ("calibration collapsed to a single step: every calibration sample may exit at t = 1 within "
                "the budget (accuracy does not grow with t on this model and data), so the rule exits at "
                f"t = 1 ({test_point.mean_timesteps:.2f} mean timesteps on the evaluated split)")
    return None


def _executed(sim: Simulator, ds, rule: ExitRule, post: Any, batch_size: int, full_s: float, res: SimResult,
              y: torch.Tensor, ops: dict) -> dict:
    """Executed early exit of ``rule`` on ``ds``: checked equal to the post-hoc ``post``
    (predictions, exit steps, operation counts ``ops``), timed against the full run."""
    run, ry, spent = simulate_dataset_exit(sim, ds, rule, batch_size=batch_size)
    if not (torch.equal(ry, y) and torch.equal(run.exit_steps, post.exit_steps)):
        raise ConfigError(f"executed early exit of {rule.spec} differs from its post-hoc evaluation")
    pred = res.cum_logits.float().cpu().gather(0, (post.exit_steps - 1).view(1, -1, 1).expand(1, -1, res.cum_logits.shape[-1]))[0].argmax(-1)
    if not torch.equal(run.predictions, pred):
        raise ConfigError(f"executed early exit of {rule.spec} predicts differently from its post-hoc evaluation")
    if count_ops(run).to_dict() != ops:
        raise ConfigError(f"executed early exit of {rule.spec} counts other operations than its post-hoc evaluation")
    n = int(y.numel())
    return {"identical_to_post_hoc": True, "seconds": spent, "samples_per_s": n / spent if spent > 0 else math.inf,
            "full_T_samples_per_s": n / full_s if full_s > 0 else math.inf,
            "speedup": full_s / spent if spent > 0 else math.inf, "row_steps": run.row_steps}


# --------------------------------------------------------------------------- writing


def _fmt_n(n: float) -> str:
    if abs(n) >= 1e9:
        return f"{n / 1e9:.3g} G"
    if abs(n) >= 1e6:
        return f"{n / 1e6:.3g} M"
    if abs(n) >= 1e3:
        return f"{n / 1e3:.3g} k"
    return f"{n:.3g}"


def report_markdown(rep: dict[str, Any], plots: list[str]) -> str:
    """The ``report.md`` text for a report dict."""
    m, d = rep["model"], rep["dataset"]
    L = [f"# trt_nm report: {m.get('arch') or 'NIR graph'} on {d['name']}", ""]
    L.append(f"Model `{m.get('source', '?')}` ({m.get('producer') or 'unknown producer'}), T={m['T']}, "
             f"dt={m['dt']:g} s, reset {m['reset']}. Evaluated on `{d['eval_split']}` ({d['n_eval']} samples)"
             + (f"; exit thresholds calibrated on `{d['calib_split']}` ({d['n_calib']} samples)." if d["calib_split"] else "."))
    L += ["", f"**Counting rule.** {rep['counting_rule']}", ""]
    L += ["## Accuracy per timestep", "", "Prediction after t steps = argmax of the mean of the first t outputs.", "",
          "| t | " + " | ".join(str(i + 1) for i in range(len(rep["accuracy_per_timestep"]))) + " |",
          "|---|" + "---|" * len(rep["accuracy_per_timestep"]),
          "| accuracy % | " + " | ".join(f"{a:.2f}" for a in rep["accuracy_per_timestep"]) + " |",
          "| +- s.e. (pp) | " + " | ".join(f"{_binomial_se_pp(a, d['n_eval']):.2f}" for a in rep["accuracy_per_timestep"]) + " |",
          "", f"s.e. = binomial standard error on {d['n_eval']} samples; a change over t smaller than about "
          "twice it is noise.", ""]
    L += exit_markdown(rep)
    fo = rep["full_T"]["ops"]
    L += ["", "## Per-layer activity (full T, per sample)", "",
          "| layer | type | neurons | spikes | firing rate | op | synops | dense MACs |", "|---|---|---|---|---|---|---|---|"]
    for r in rep["layers"]:
        spikes = _fmt_n(r["spikes"]) if "spikes" in r else ""
        rate = f"{r['firing_rate']:.4f}" if "firing_rate" in r else ""
        syn = _fmt_n(r["synops"]) if "synops" in r else ""
        dense = _fmt_n(r["dense"]) if "dense" in r else ""
        L.append(f"| {r['name']} | {r['kind']} | {r['neurons']} | {spikes} | {rate} | {r.get('op_kind', '')} | {syn} | {dense} |")
    o = fo
    L += ["", f"Totals per sample: effective ACs {_fmt_n(o['effective_acs'])}, effective MACs {_fmt_n(o['effective_macs'])}, "
          f"dense {_fmt_n(o['dense'])}, neuron updates {_fmt_n(o['neuron_updates'])}, spikes {_fmt_n(o['spikes'])}, "
          f"activation sparsity {o['activation_sparsity']:.4f}, connection sparsity {o['connection_sparsity']:.4f}, "
          f"footprint {o['footprint_bytes'] / 1024:.1f} KiB.", ""]
    L += energy_markdown(rep)
    L += [""] + ann_markdown(rep, _fmt_n)
    if plots:
        L += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    L += ["", f"Generated by trt_nm {rep['trt_nm_version']} in {rep['seconds']:.1f} s on {rep['machine']['platform']}.", ""]
    return "\n".join(L)


def exit_source(e: dict[str, Any]) -> str:
    """How an exit row's threshold came about, in words."""
    g = e.get("guarantee")
    if g is not None:
        return f"{e['source']}: loss <= {g['eps']:g} ({100 * g['eps']:g} pp) w.p. >= {1 - g['delta']:g}"
    return e["source"] + (f", budget {e['budget_pp']:g} pp" if e["budget_pp"] is not None else "")


def exit_markdown(rep: dict[str, Any]) -> list[str]:
    """The report's "Early exit" section: the table, the guarantees, executed-exit speed, notes."""
    m = rep["model"]
    n = rep["dataset"]["n_eval"]
    se = _binomial_se_pp(rep["accuracy"], n)
    L = ["## Early exit", "",
         f"Accuracy on {n} samples has a binomial standard error of about {se:.2f} pp; differences "
         "below that are noise.", "",
         "| rule | source | accuracy % | loss vs full T (pp) | mean timesteps | exit histogram (t=1..T) | synops/sample | spikes/sample | executed exit |",
         "|---|---|---|---|---|---|---|---|---|"]
    fo = rep["full_T"]["ops"]
    L.append(f"| none (full T) | - | {rep['accuracy']:.2f} | 0.00 | {m['T']:.2f} | - | {_fmt_n(fo['synops'])} | "
             f"{_fmt_n(fo['spikes'])} | - |")
    for e in rep["early_exit"]:
        ex = e.get("executed")
        run = (f"{ex['samples_per_s']:.0f} samples/s, {ex['speedup']:.2f}x full T" if ex else "not run")
        L.append(f"| `{exit_rule_label(e)}` | {exit_source(e)} | {e['accuracy']:.2f} | {e['accuracy_loss_pp']:.2f} | "
                 f"{e['mean_timesteps']:.2f} | {e['exit_histogram']} | {_fmt_n(e['ops']['synops'])} | "
                 f"{_fmt_n(e['ops']['spikes'])} | {run} |")
    if any(e.get("executed") for e in rep["early_exit"]):
        full = next(e["executed"]["full_T_samples_per_s"] for e in rep["early_exit"] if e.get("executed"))
        L += ["", f"Executed exit: the simulator stops each sample at its exit step and drops it from the batch "
              f"(full T: {full:.0f} samples/s on this machine); its predictions, exit steps and operation counts "
              "were checked identical to the post-hoc evaluation above."]
    guaranteed = [e for e in rep["early_exit"] if e.get("guarantee")]
    if guaranteed:
        L += ["", "| rule | EPS | delta | calibration samples | harm (right at T, wrong at exit) | bound on the loss | "
              "measured loss, calibration split (pp) | measured loss, evaluated split (pp) | thresholds passed |",
              "|---|---|---|---|---|---|---|---|---|"]
        for e in guaranteed:
            g = e["guarantee"]
            L.append(f"| `{exit_rule_label(e)}` | {g['eps']:g} ({100 * g['eps']:g} pp) | {g['delta']:g} | {g['n']} | "
                     f"{g['harm']} | {g['bound']:.4f} ({100 * g['bound']:.2f} pp) | {g['val_loss_pp']:.2f} | "
                     f"{g['test_loss_pp']:.2f} | {g['passed']} of {g['tested']} tested |")
        L += ["", "Guarantee: with probability at least 1 - delta over the draw of the calibration split, the rule's "
              "accuracy loss against full T is at most EPS (fixed-sequence test of fixed thresholds, exact "
              "binomial bound on the harm rate, which bounds the loss; per rule, for data drawn like the "
              "calibration split)."]
    notes: dict[str, list[str]] = {}  # the same note for several rules is said once
    for e in rep["early_exit"]:
        if e.get("note"):
            notes.setdefault(e["note"], []).append(f"`{exit_rule_label(e)}`")
    for text, who in notes.items():
        L += ["", f"**Note** ({', '.join(who)}): {text}."]
    return L + [""]


def _binomial_se_pp(acc_pct: float, n: int) -> float:
    """Binomial standard error of an accuracy in % measured on ``n`` samples, in pp."""
    p = min(max(acc_pct / 100.0, 0.0), 1.0)
    return 100.0 * math.sqrt(p * (1 - p) / max(n, 1))


def check_out_dir(out_dir: str | Path) -> Path:
    """The report directory, checked writable before any work
    (:func:`trt_nm.atomic.check_writable`): a file in its place, a path under a file, or a
    place where no file can be created (``/proc/x``, a read-only directory) is a one-line
    error."""
    return check_writable(out_dir, directory=True, what="output")


def write_report(rep: dict[str, Any], out_dir: str | Path, *, plots: bool = True) -> dict[str, Path]:
    """Write ``report.json``, ``report.md`` and PNG plots into ``out_dir``; returns their paths."""

    out = check_out_dir(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    names: list[str] = []
    if plots:
        for key, p in write_plots(rep, out).items():
            paths[key] = p
            names.append(p.name)
    text = json.dumps(rep, indent=2, allow_nan=True)
    paths["json"] = atomic_write_bytes(out / "report.json", lambda fh: fh.write(text.encode()))
    md = report_markdown(rep, names)
    paths["md"] = atomic_write_bytes(out / "report.md", lambda fh: fh.write(md.encode()))
    return paths


__all__ = [
    "ExitOption",
    "parse_exit_option",
    "parse_exit_options",
    "simulate_dataset_exit",
    "exit_markdown",
    "exit_rule_label",
    "exit_source",
    "load_graph",
    "load_split",
    "simulate_dataset",
    "build_report",
    "write_report",
    "report_markdown",
    "check_out_dir",
    "operating_point",
    "energy_cell",
]
