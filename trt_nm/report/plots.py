"""PNG plots of a report dict (matplotlib, Agg backend, imported lazily)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def write_plots(rep: dict[str, Any], out: Path) -> dict[str, Path]:
    """Write the four report plots into ``out``; returns ``{key: path}``.

    * ``accuracy_vs_timestep.png``: accuracy of the running-mean prediction after t steps.
    * ``exit_tradeoff.png``: accuracy vs mean timesteps for each exit rule (test split), the
      calibrated operating points marked.
    * ``spikes_per_layer.png``: spikes per sample per layer, stacked by timestep.
    * ``energy_per_target.png``: energy per inference per target (log scale), full T vs exit;
      bars of a target whose constraint check rejects the model are hatched and its tick reads
      "check fails", provisional energies are starred, targets without a published energy
      figure are named in a footnote ("energy not published").
    """
    plt = _plt()
    out = Path(out)
    paths: dict[str, Path] = {}
    T = len(rep["accuracy_per_timestep"])

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ts = list(range(1, T + 1))
    ax.plot(ts, rep["accuracy_per_timestep"], "o-", color="tab:blue")
    for t, a in zip(ts, rep["accuracy_per_timestep"]):
        ax.annotate(f"{a:.1f}", (t, a), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    ax.set_xlabel("timesteps t")
    ax.set_ylabel("accuracy (%)")
    ax.set_xticks(ts)
    ax.set_title(f"Accuracy after t steps ({rep['dataset']['eval_split']})")
    ax.grid(alpha=0.3)
    paths["accuracy_vs_timestep"] = _save(fig, out / "accuracy_vs_timestep.png", plt)

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    colors = {"confidence": "tab:blue", "entropy": "tab:orange", "margin": "tab:green"}
    for kind, pts in rep["exit_curves"].items():
        xs = [p["mean_timesteps"] for p in pts]
        ys = [p["accuracy"] for p in pts]
        ax.plot(xs, ys, ".-", label=kind, color=colors.get(kind), alpha=0.8)
    for e in rep["early_exit"]:
        ax.plot(e["mean_timesteps"], e["accuracy"], "*", ms=13, color=colors.get(e["kind"], "k"),
                markeredgecolor="k", label=f"{e['rule']} ({'cal.' if e['budget_pp'] is not None else 'fixed'})")
    ax.plot(ts, rep["accuracy_per_timestep"], "s--", color="gray", ms=4, label="fixed t (no exit)")
    ax.set_xlabel("mean timesteps per sample")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Early exit: accuracy vs mean timesteps")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    paths["exit_tradeoff"] = _save(fig, out / "exit_tradeoff.png", plt)

    spiking = [r for r in rep["layers"] if "spikes" in r]
    fig, ax = plt.subplots(figsize=(max(5.5, 0.35 * len(spiking) + 2), 3.8))
    bottom = [0.0] * len(spiking)
    names = [r["name"] for r in spiking]
    for t in range(T):
        vals = [r["spikes_per_timestep"][t] if t < len(r["spikes_per_timestep"]) else 0.0 for r in spiking]
        ax.bar(range(len(spiking)), vals, bottom=bottom, label=f"t={t + 1}")
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_xticks(range(len(spiking)))
    ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("spikes per sample")
    ax.set_title("Spikes per layer (stacked by timestep)")
    if T <= 12:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    paths["spikes_per_layer"] = _save(fig, out / "spikes_per_layer.png", plt)

    rows = rep.get("targets", {})
    targets = list(rep["energy_profiles"])
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    series = [("full T", rep["full_T"]["energy"])] + [(e["rule"], e["energy"]) for e in rep["early_exit"]]
    width = 0.8 / len(series)
    failing = {t for t in targets if str(rows.get(t, {}).get("check", "")).startswith("check fails")}
    for i, (label, en) in enumerate(series):
        vals = [max(en[t]["total_j"], 1e-15) for t in targets]
        bars = ax.bar([k + i * width for k in range(len(targets))], vals, width, label=label)
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
    ax.set_title("Energy per target (hatched: check fails; *: provisional)")
    missing = [t for t in rows if t not in rep["energy_profiles"]]
    if missing:
        ax.set_xlabel(f"energy not published: {', '.join(missing)}", fontsize=8)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    paths["energy_per_target"] = _save(fig, out / "energy_per_target.png", plt)
    return paths


def _tick(target: str, row: dict[str, Any]) -> str:
    """Tick label of the energy plot: name, ``*`` if provisional, "check fails" if rejected."""
    label = target + ("*" if row.get("energy") == "provisional" else "")
    if str(row.get("check", "")).startswith("check fails"):
        label += "\n(check fails)"
    return label


def save_figure(fig: Any, path: str | Path, dpi: int = 110) -> Path:
    """Lay out ``fig`` tightly and write it as a PNG at ``path`` (atomically, parent folders
    created)."""
    from trt_nm.atomic import atomic_write_bytes

    fig.tight_layout()
    return atomic_write_bytes(path, lambda fh: fig.savefig(fh, dpi=dpi, format="png"))


def _save(fig, path: Path, plt) -> Path:
    save_figure(fig, path)
    plt.close(fig)
    return path
