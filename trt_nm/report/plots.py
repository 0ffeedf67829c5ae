"""PNG plots of a report dict (matplotlib, Agg backend, imported lazily).

Every exit rule keeps one colour in every plot (:data:`RULE_COLORS`; several rows of one kind
get shades of it, :func:`exit_row_colors`); full T is grey.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from trt_nm.atomic import atomic_write_bytes

#: one colour per exit rule kind, in every plot
RULE_COLORS = {"confidence": "#1f77b4", "entropy": "#ff7f0e", "margin": "#2ca02c"}
#: full T / no exit
FULL_T_COLOR = "#7f7f7f"
#: marker per exit row (the same row keeps its marker in the trade-off plot)
_MARKERS = ("*", "D", "P", "X", "v", "^", "s", "h")
#: spikes plot: a log axis when the largest layer total exceeds the smallest nonzero one this much
LOG_SPIKES_RATIO = 100.0


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def exit_rule_label(e: dict[str, Any]) -> str:
    """``kind:threshold`` with the threshold rounded to 3 significant digits (plots, tables)."""
    th = e["threshold"]
    return f"{e['kind']}:{th:.3g}" if math.isfinite(th) else f"{e['kind']}:never"


_label = exit_rule_label


def exit_row_colors(rep: dict[str, Any]) -> list[Any]:
    """The colour of each exit row: its rule kind's colour, in shades when a kind repeats."""
    from matplotlib.colors import to_rgb

    rows = rep["early_exit"]
    out = []
    for i, e in enumerate(rows):
        same = [j for j, f in enumerate(rows) if f["kind"] == e["kind"]]
        base = to_rgb(RULE_COLORS.get(e["kind"], "#9467bd"))
        k = same.index(i)
        f = 0.55 * k / max(len(same) - 1, 1) if len(same) > 1 else 0.0  # 0 = the kind's colour
        out.append(tuple(c + (1 - c) * f for c in base))
    return out


def binomial_se(acc_pct: float, n: int) -> float:
    """Binomial standard error (pp) of an accuracy in % on ``n`` samples."""
    p = min(max(acc_pct / 100.0, 0.0), 1.0)
    return 100.0 * math.sqrt(p * (1.0 - p) / max(n, 1))


def write_plots(rep: dict[str, Any], out: Path, *, spikes_log: bool | None = None) -> dict[str, Path]:
    """Write the four report plots into ``out``; returns ``{key: path}``.

    * ``accuracy_vs_timestep.png``: accuracy of the running-mean prediction after t steps, with
      +-1 binomial standard error bars; the y axis spans at least 8 standard errors, so noise
      does not look like a climb.
    * ``exit_tradeoff.png``: accuracy vs mean timesteps for each exit rule (evaluated split),
      the chosen operating points marked (thresholds rounded; points that coincide are drawn
      side by side and named together).
    * ``spikes_per_layer.png``: spikes per sample per spiking layer (numbered in execution
      order, with kind and node name), stacked by timestep; ``spikes_log`` (default: automatic,
      when the layers differ by more than :data:`LOG_SPIKES_RATIO`) draws totals on a log axis
      so small layers stay visible; every bar is labelled with its total.
    * ``energy_per_target.png``: energy per inference per target (log scale), full T vs exit;
      bars of a target whose constraint check rejects the model are hatched and its tick reads
      "check fails", provisional energies are starred, targets without a published energy
      figure are named in a footnote ("energy not published").
    """
    plt = _plt()
    out = Path(out)
    paths = {
        "accuracy_vs_timestep": _accuracy_plot(rep, out, plt),
        "exit_tradeoff": _tradeoff_plot(rep, out, plt),
        "spikes_per_layer": _spikes_plot(rep, out, plt, spikes_log),
        "energy_per_target": _energy_plot(rep, out, plt),
    }
    return paths


def _accuracy_plot(rep: dict[str, Any], out: Path, plt) -> Path:
    acc = rep["accuracy_per_timestep"]
    T, n = len(acc), rep["dataset"]["n_eval"]
    ts = list(range(1, T + 1))
    se = [binomial_se(a, n) for a in acc]
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.errorbar(ts, acc, yerr=se, fmt="o-", color=FULL_T_COLOR, ecolor="k", capsize=3,
                label=f"+-1 binomial s.e. (n = {n})")
    for t, a in zip(ts, acc):
        ax.annotate(f"{a:.1f}", (t, a), textcoords="offset points", xytext=(5, 4), ha="left", fontsize=8)
    lo = min(a - s for a, s in zip(acc, se))
    hi = max(a + s for a, s in zip(acc, se))
    span = max(hi - lo, 8 * max(se), 2.0)  # never zoom in below the noise
    mid = 0.5 * (lo + hi)
    ax.set_ylim(max(0.0, mid - 0.6 * span), min(100.0, mid + 0.6 * span))
    ax.set_xlabel("timesteps t")
    ax.set_ylabel("accuracy (%)")
    ax.set_xticks(ts if T <= 20 else list(range(1, T + 1, max(1, T // 10))))
    ax.set_title(f"Accuracy after t steps ({rep['dataset']['eval_split']})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, out / "accuracy_vs_timestep.png", plt)


def _tradeoff_plot(rep: dict[str, Any], out: Path, plt) -> Path:
    acc = rep["accuracy_per_timestep"]
    ts = list(range(1, len(acc) + 1))
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    for kind, pts in rep["exit_curves"].items():
        ax.plot([p["mean_timesteps"] for p in pts], [p["accuracy"] for p in pts], ".-", label=f"{kind} (all thresholds)",
                color=RULE_COLORS.get(kind), alpha=0.6, ms=4)
    ax.plot(ts, acc, "s--", color=FULL_T_COLOR, ms=4, label="fixed t (no exit)")
    rows = rep["early_exit"]
    colors = exit_row_colors(rep)
    # points that coincide (same mean timesteps and accuracy, to the plot's resolution) are
    # drawn side by side and named together
    groups: dict[tuple[float, float], list[int]] = {}
    for i, e in enumerate(rows):
        groups.setdefault((round(e["mean_timesteps"], 2), round(e["accuracy"], 2)), []).append(i)
    xspan = max(ts[-1] - 1, 1)
    for (mx, my), members in groups.items():
        for j, i in enumerate(members):
            e = rows[i]
            dx = (j - (len(members) - 1) / 2) * 0.025 * xspan
            how = "cal." if e["budget_pp"] is not None else "fixed"
            if e.get("guarantee"):
                how = f"cal., loss <= {e['guarantee']['eps']:g} w.p. {1 - e['guarantee']['delta']:g}"
            ax.plot(e["mean_timesteps"] + dx, e["accuracy"], _MARKERS[i % len(_MARKERS)], ms=11, color=colors[i],
                    markeredgecolor="k", label=f"{_label(e)} ({how})", zorder=5)
        if len(members) > 1:
            ax.annotate(f"{len(members)} rules coincide:\n" + ", ".join(_label(rows[i]) for i in members),
                        (mx, my), textcoords="offset points", xytext=(8, -28), fontsize=6.5,
                        arrowprops={"arrowstyle": "-", "lw": 0.6})
    ax.set_xlabel("mean timesteps per sample")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Early exit: accuracy vs mean timesteps")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6.5, loc="lower right")
    return _save(fig, out / "exit_tradeoff.png", plt)


def _layer_name(i: int, r: dict[str, Any]) -> str:
    return f"{i}: {r['kind']}\n{r['name']}"


def _spikes_plot(rep: dict[str, Any], out: Path, plt, spikes_log: bool | None) -> Path:
    T = len(rep["accuracy_per_timestep"])
    spiking = [r for r in rep["layers"] if "spikes" in r]
    totals = [r["spikes"] for r in spiking]
    nonzero = [v for v in totals if v > 0]
    if spikes_log is None:
        spikes_log = bool(nonzero) and max(nonzero) / min(nonzero) > LOG_SPIKES_RATIO
    fig, ax = plt.subplots(figsize=(max(5.5, 0.9 * len(spiking) + 2), 4.0))
    xs = list(range(len(spiking)))
    if spikes_log:  # stacked segments mislead on a log axis: totals only
        ax.bar(xs, [max(v, 1e-3) for v in totals], color=FULL_T_COLOR, label=f"all {T} steps")
        ax.set_yscale("log")
    else:
        bottom = [0.0] * len(spiking)
        for t in range(T):
            vals = [r["spikes_per_timestep"][t] if t < len(r["spikes_per_timestep"]) else 0.0 for r in spiking]
            ax.bar(xs, vals, bottom=bottom, label=f"t={t + 1}")
            bottom = [b + v for b, v in zip(bottom, vals)]
    for x, v in zip(xs, totals):
        ax.annotate(f"{v:.3g}", (x, max(v, 1e-3)), textcoords="offset points", xytext=(0, 2), ha="center", fontsize=7)
    ax.set_xticks(xs)
    ax.set_xticklabels([_layer_name(i + 1, r) for i, r in enumerate(spiking)], fontsize=7)
    ax.set_xlabel("spiking layer (execution order: number, neuron kind, node name)")
    ax.set_ylabel("spikes per sample" + (" (log scale)" if spikes_log else ""))
    ax.set_title("Spikes per layer" + (" (totals over all steps)" if spikes_log else " (stacked by timestep)"))
    if spikes_log or T <= 12:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, out / "spikes_per_layer.png", plt)


def _energy_plot(rep: dict[str, Any], out: Path, plt) -> Path:
    from matplotlib.patches import Patch

    rows = rep.get("targets", {})
    targets = list(rep["energy_profiles"])
    fig, ax = plt.subplots(figsize=(7.0, 4.0))
    colors = [FULL_T_COLOR, *exit_row_colors(rep)]
    series = [("full T", rep["full_T"]["energy"])] + [(_label(e), e["energy"]) for e in rep["early_exit"]]
    width = 0.8 / len(series)
    failing = {t for t in targets if str(rows.get(t, {}).get("check", "")).startswith("check fails")}
    for i, (label, en) in enumerate(series):
        vals = [max(en[t]["total_j"], 1e-15) for t in targets]
        bars = ax.bar([k + i * width for k in range(len(targets))], vals, width, label=label, color=colors[i],
                      edgecolor="k", linewidth=0.4)
        for bar, t in zip(bars, targets):
            if t in failing:  # flagged, not hidden: the model does not fit this target
                bar.set_hatch("//")
                bar.set_alpha(0.45)
    ann = rep["ann_equivalent"].get("cmos45nm_j") or rep["ann_equivalent"]["energy_j"].get("cmos45nm")
    if ann:
        ax.axhline(ann, color="k", ls="--", lw=1, label="ANN on 45 nm CMOS")
    ax.set_yscale("log")
    ax.set_xticks([k + 0.4 - width / 2 for k in range(len(targets))])
    ax.set_xticklabels([_tick(t, rows.get(t, {})) for t in targets], rotation=20, fontsize=7)
    ax.set_ylabel("energy per inference (J)")
    ax.set_title("Energy per target")
    missing = [t for t in rows if t not in rep["energy_profiles"]]
    if missing:
        ax.set_xlabel(f"energy not published: {', '.join(missing)}", fontsize=8)
    handles, _ = ax.get_legend_handles_labels()
    if failing:
        handles.append(Patch(facecolor="white", edgecolor="k", hatch="//", label="hatched: check fails"))
    if any(rows.get(t, {}).get("energy") == "provisional" for t in targets):
        handles.append(Patch(facecolor="white", edgecolor="white", label="*: provisional energy profile"))
    ax.legend(handles=handles, fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, out / "energy_per_target.png", plt)


def _tick(target: str, row: dict[str, Any]) -> str:
    """Tick label of the energy plot: name, ``*`` if provisional, "check fails" if rejected."""
    label = target + ("*" if row.get("energy") == "provisional" else "")
    if str(row.get("check", "")).startswith("check fails"):
        label += "\n(check fails)"
    return label


def save_figure(fig: Any, path: str | Path, dpi: int = 110) -> Path:
    """Lay out ``fig`` tightly and write it as a PNG at ``path`` (atomically, parent folders
    created)."""

    fig.tight_layout()
    return atomic_write_bytes(path, lambda fh: fig.savefig(fh, dpi=dpi, format="png"))


def _save(fig, path: Path, plt) -> Path:
    save_figure(fig, path)
    plt.close(fig)
    return path
