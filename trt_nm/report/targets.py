"""Per-target rows of a report: the target's constraint check and how its energy is labelled.

A report never shows a target's energy for a model that target's check rejects without saying
so. Decision: the number is **kept and flagged** (it is what the chip would spend if the model
fitted, useful for comparison), and every place that shows it (report.json's energy entries,
the report.md tables, the energy plot, ``simulate``'s summary) carries
``"check fails: <first violation>"``. Energy-only targets (no exporter, so no constraint
profile) read ``"not checked (energy-only target)"``; targets without a published energy
figure (Speck) read ``"not published"`` instead of a number; provisional energy profiles are
labelled ``"provisional"``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from trt_nm.errors import TrtNmError
from trt_nm.exporters.targets import NOT_PUBLISHED, Target
from trt_nm.metrics.energy import OpCounts, ann_energy, estimate_energy

#: check label of a target without a constraint profile
NOT_CHECKED = "not checked (energy-only target)"


def check_target(target: Target, graph: Any, dt: float | None = None) -> dict[str, Any]:
    """The target's constraint check of ``graph`` as plain data.

    Returns:
        ``{"fits": bool | None, "check": "fits" | "check fails: <first violation>" |
        NOT_CHECKED, "violations": [message, ...]}`` (``fits`` is None when not checked). A
        graph the checker cannot read at all counts as failing, with the error as violation.
    """
    if target.energy_only:
        return {"fits": None, "check": NOT_CHECKED, "violations": []}
    try:
        rep = target.get_exporter().check(graph, dt=dt)
    except TrtNmError as exc:
        msg = " ".join(str(exc).split())
        return {"fits": False, "check": f"check fails: {msg}", "violations": [msg]}
    msgs = [v.message() for v in rep.violations]
    return {"fits": rep.fits, "check": "fits" if rep.fits else f"check fails: {msgs[0]}",
            "violations": msgs}


def target_rows(targets: list[Target], graph: Any, dt: float | None = None) -> dict[str, dict[str, Any]]:
    """``{name: target.to_dict() + check_target(...)}`` for report.json's ``"targets"``."""
    return {t.name: {**t.to_dict(), **check_target(t, graph, dt)} for t in targets}


def energy_block(counts: OpCounts, targets: list[Target], rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Energy per inference (J) of ``counts`` on every target with an energy profile.

    Each entry is :meth:`~trt_nm.metrics.energy.EnergyEstimate.to_dict` plus ``"status"``
    (published / provisional) and ``"check"`` (the target's check label), so the flag travels
    with the number. Targets without a published energy figure have no entry.
    """
    out: dict[str, Any] = {}
    for t in targets:
        prof = t.energy_profile
        if prof is None:
            continue
        out[t.name] = {**estimate_energy(counts, prof).to_dict(), "status": prof.status,
                       "check": rows[t.name]["check"]}
    return out


def ann_block(counts: OpCounts, targets: list[Target]) -> dict[str, float]:
    """ANN-equivalent energy (J) per target whose energy profile costs MACs."""
    return {t.name: ann_energy(counts, t.energy_profile) for t in targets
            if t.energy_profile is not None and t.energy_profile.e_mac > 0}


def fmt_j(j: float) -> str:
    """Joules with an SI prefix (J, mJ, uJ, nJ, pJ)."""
    for unit, f in (("J", 1.0), ("mJ", 1e-3), ("uJ", 1e-6), ("nJ", 1e-9), ("pJ", 1e-12)):
        if abs(j) >= f:
            return f"{j / f:.3g} {unit}"
    return f"{j:.3g} J"


def flags(row: dict[str, Any]) -> list[str]:
    """The caveats of a target row: provisional energy, failed check."""
    out = []
    if row.get("energy") == "provisional":
        out.append("provisional")
    if str(row.get("check", "")).startswith("check fails"):
        out.append(row["check"])
    return out


def energy_cell(rep: dict[str, Any], point: dict[str, Any], target: str) -> str:
    """Energy of ``target`` at an operating point (``rep["full_T"]`` or an exit row) as text:
    ``"1.2 uJ"``, ``"1.2 uJ (provisional; check fails: ...)"`` or ``"not published"``."""
    row = rep["targets"][target]
    e = point["energy"].get(target)
    if e is None:
        return NOT_PUBLISHED
    fl = flags(row)
    return fmt_j(e["total_j"]) + (f" ({'; '.join(fl)})" if fl else "")


def energy_markdown(rep: dict[str, Any]) -> list[str]:
    """The report.md section "Energy per inference": one row per target, flags in their own
    columns ("not published" where no energy figure exists)."""
    exits = rep["early_exit"]
    L = ["## Energy per inference", "",
         "Every target's constraint check ran on this graph. A row whose check fails keeps its "
         "numbers (what the chip would spend if the model fitted) but the model does not run on "
         "that chip as it is; energy-only targets have no constraint profile to check against.", "",
         "| target | full T | " + " | ".join(f"`{e['rule']}`" for e in exits) + " | energy | check | source |",
         "|---|---|" + "---|" * len(exits) + "---|---|---|"]
    for t, row in rep["targets"].items():
        prof = rep["energy_profiles"].get(t)
        if prof is None:
            cells = [NOT_PUBLISHED] * (1 + len(exits))
            src = row.get("energy_note") or "-"
        else:
            cells = [fmt_j(rep["full_T"]["energy"][t]["total_j"])] + [fmt_j(e["energy"][t]["total_j"]) for e in exits]
            note = f" ({prof['note']})" if prof["note"] else ""
            src = f"{prof['source']}, {prof['year']}{note}"
        L.append(f"| {t} | " + " | ".join(cells) + f" | {row['energy']} | {row['check']} | {src} |")
    return L


def ann_markdown(rep: dict[str, Any], fmt_n: Callable[[float], str]) -> list[str]:
    """The report.md section "ANN comparison" (SNN numbers flagged as in the energy table)."""
    ann = rep["ann_equivalent"]
    L = ["## ANN comparison", "",
         f"The non-spiking ANN with the same layers needs {fmt_n(ann['macs'])} MACs per inference.", "",
         "| target | ANN energy | SNN full T | SNN / ANN |", "|---|---|---|---|"]
    for t, ej in ann["energy_j"].items():
        s = rep["full_T"]["energy"][t]["total_j"]
        snn = energy_cell(rep, rep["full_T"], t)
        L.append(f"| {t} | {fmt_j(ej)} | {snn} | {s / ej:.3f} |" if ej > 0 else f"| {t} | - | {snn} | - |")
    return L


__all__ = ["NOT_CHECKED", "check_target", "target_rows", "energy_block", "ann_block", "flags",
           "energy_cell", "fmt_j", "energy_markdown", "ann_markdown"]
