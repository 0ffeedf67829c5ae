"""A ``--target`` checkpoint evaluated as its chip computes it: accuracy per output step, spikes
per layer, synaptic operations and energy from the target's profile (``trt-nm simulate``).

Energy per inference = ``e_ac * synops + e_neuron * neuron updates + e_inference`` with the
constants of the target's energy profile (:mod:`trt_nm.metrics.energy`); a chip without a
published figure reports "not published".
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trt_nm.chip.base import LAYER_PREFIX
from trt_nm.chip.train import load_split
from trt_nm.errors import ConfigError
from trt_nm.exporters.targets import NOT_PUBLISHED, get_target


def chip_summary(data: dict[str, Any], split: str = "test", limit: int | None = None) -> dict[str, Any]:
    """Chip-exact evaluation of a chip checkpoint (from :func:`trt_nm.chip.train.read_checkpoint`).

    Returns plain data: ``accuracy`` (%), ``accuracy_per_step`` (prediction from the outputs up
    to each output step), ``spikes_per_sample`` per record, ``synops_per_sample``,
    ``neuron_updates_per_sample``, ``energy_j`` (None when not published) and ``energy_status``.
    """
    chip, model, task = data["chip_obj"], data["model_obj"], data["task_obj"]
    x, y = load_split(chip, task, split, limit).time_major()
    net = chip.integerize(model)
    rec = chip.simulate(net, x)
    out = np.asarray(rec["out"])
    B = x.shape[1]
    cum = np.cumsum(out, axis=0)
    per_step = [100.0 * float((chip.predict(cum[t:t + 1]) == y).mean()) for t in range(out.shape[0])]
    acc = 100.0 * float((chip.predict(out) == y).mean())
    # "out" is spikes only for a spike-count readout (Xylo's is the output membrane)
    spiking = [k for k in rec if k.startswith(LAYER_PREFIX) or (k == "out" and chip.readout.startswith("spike"))]
    spikes = {k: float(np.asarray(rec[k]).sum()) / B for k in spiking}
    neurons = chip.neuron_count(net)
    updates = None if neurons is None else neurons * int(out.shape[0])  # every neuron, every step
    synops = chip.synops(net, rec, x)
    try:
        prof = get_target(chip.name).energy_profile
    except ConfigError:  # a chip registered without a target (tests, plug-ins): no energy figure
        prof = None
    energy = None
    if prof is not None and synops is not None:
        energy = prof.e_ac * synops / B + prof.e_neuron * (updates or 0) + prof.e_inference
    return {
        "target": chip.name,
        "split": split,
        "samples": int(B),
        "accuracy": acc,
        "accuracy_per_step": per_step,
        "spikes_per_sample": spikes,
        "synops_per_sample": None if synops is None else synops / B,
        "neuron_updates_per_sample": updates,
        "energy_j": energy,
        "energy_status": NOT_PUBLISHED if prof is None else prof.status,
        "energy_profile": None if prof is None else prof.name,
    }


def summary_lines(s: dict[str, Any]) -> list[str]:
    """The few lines ``trt-nm simulate`` prints for :func:`chip_summary`."""
    steps = ", ".join(f"t={t + 1}: {a:.1f}%" for t, a in enumerate(s["accuracy_per_step"]))
    spikes = ", ".join(f"{k.removeprefix(LAYER_PREFIX)} {v:.1f}" for k, v in s["spikes_per_sample"].items())
    syn = "n/a" if s["synops_per_sample"] is None else f"{s['synops_per_sample']:.4g}"
    if s["energy_j"] is None:
        energy = f"energy: {s['energy_status']}"
    else:
        energy = f"energy per inference {s['energy_j'] * 1e6:.4g} uJ ({s['energy_profile']}, {s['energy_status']})"
    return [
        f"{s['target']} (chip-exact integer simulation), {s['split']} split, {s['samples']} samples: "
        f"accuracy {s['accuracy']:.2f}%",
        f"accuracy from the outputs up to each step: {steps}",
        f"spikes per sample: {spikes}; synaptic ops per sample {syn}; {energy}",
    ]
