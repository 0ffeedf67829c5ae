"""Constraint check of a NIR graph against a :class:`TargetProfile`, with a resource estimate.

``check_graph(graph, profile)`` returns a :class:`CheckReport`: every violation (which layer,
which limit, the actual value and by how much it is exceeded) and a :class:`ResourceEstimate`
(cores, neurons, synapses, memory). Counting rules are those of :mod:`.layers`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trt_nm.exporters.layers import GraphSummary, analyze_graph
from trt_nm.exporters.profile import TargetProfile
from trt_nm.nir.graph import meta_value


@dataclass(frozen=True)
class Violation:
    """One broken constraint.

    Attributes:
        layer: node name (``"(graph)"`` for whole-graph limits).
        constraint: short name of the limit (``"fan-in"``, ``"neurons/chip"``, ``"layer type"``...).
        limit: the target's limit (number, or text such as the supported types).
        actual: the graph's value.
        hint: what to do about it (e.g. ``--convert leak-to-iaf``), may be empty.
    """

    layer: str
    constraint: str
    limit: object
    actual: object
    hint: str = ""

    @property
    def excess(self) -> float | None:
        """``actual - limit`` for numeric limits, else None."""
        if isinstance(self.limit, (int, float)) and isinstance(self.actual, (int, float)):
            return self.actual - self.limit
        return None

    def message(self) -> str:
        ex = self.excess
        if ex is not None:
            pct = f", {100.0 * ex / self.limit:.0f}% over" if self.limit else ""
            text = f"{self.layer}: {self.constraint} {self.actual:,} > {self.limit:,} (by {ex:,}{pct})"
        else:
            text = f"{self.layer}: {self.constraint} is {self.actual}; supported: {self.limit}"
        return text + (f" -- {self.hint}" if self.hint else "")


@dataclass
class LayerResources:
    """Resources of one neuron layer: its neurons and the synapses that feed it."""

    name: str
    neurons: int
    synapses: int
    stored_weights: int
    cores: int | None
    memory_bits: int


@dataclass
class ResourceEstimate:
    """Resources the whole graph needs on the target.

    Attributes:
        layers: per neuron layer (and the readout) resources.
        neurons: total neurons.
        synapses: total connections.
        stored_weights: weights the chip stores (connections, or kernels where shared).
        cores: cores needed, each layer mapped to its own cores (None when the target does not
            publish per-core limits).
        chips: chips needed (None when cores per chip is unknown).
        memory_bits: weights x weight bits + neurons x state bits (32 where float).
    """

    layers: list[LayerResources]
    neurons: int
    synapses: int
    stored_weights: int
    cores: int | None
    chips: int | None
    memory_bits: int

    def lines(self) -> list[str]:
        cores = "not estimated (per-core limits not published)" if self.cores is None else f"{self.cores:,}"
        chips = "" if self.chips is None else f" on {self.chips:,} chip(s)"
        out = [
            f"resources: {self.neurons:,} neurons, {self.synapses:,} synapses "
            f"({self.stored_weights:,} stored weights), {self.memory_bits / 8 / 1024:,.1f} KiB, "
            f"cores {cores}{chips}"
        ]
        for r in self.layers:
            c = "-" if r.cores is None else f"{r.cores}"
            out.append(
                f"  {r.name}: {r.neurons:,} neurons, {r.synapses:,} synapses in, "
                f"{r.stored_weights:,} weights, {r.memory_bits / 8 / 1024:,.1f} KiB, cores {c}"
            )
        return out


@dataclass
class CheckReport:
    """Result of :func:`check_graph`."""

    target: str
    violations: list[Violation]
    resources: ResourceEstimate
    summary: GraphSummary
    notes: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return not self.violations

    def text(self) -> str:
        head = f"target {self.target}: " + (
            "fits" if self.fits else f"{len(self.violations)} violation(s)"
        )
        lines = [head]
        lines += [f"  VIOLATION {v.message()}" for v in self.violations]
        lines += [f"  note: {n}" for n in self.notes]
        lines += self.resources.lines()
        return "\n".join(lines)


def _is_bitshift_beta(beta: float, max_shift: int | None) -> bool:
    if beta >= 1.0:
        return True
    k = -math.log2(1.0 - beta)
    return abs(k - round(k)) < 1e-9 and round(k) >= 1 and (max_shift is None or round(k) <= max_shift)


def incoming_weighted(summary: GraphSummary, name: str) -> list[str]:
    """Weighted nodes whose outputs reach neuron ``name`` without crossing another neuron."""
    found: list[str] = []
    stack = list(summary.layers[name].predecessors)
    seen: set[str] = set()
    while stack:
        p = stack.pop()
        if p in seen:
            continue
        seen.add(p)
        info = summary.layers[p]
        if info.weighted:
            found.append(p)
        elif not (info.neuron or info.kind == "input"):
            stack.extend(info.predecessors)
    return found


def estimate_resources(summary: GraphSummary, profile: TargetProfile) -> ResourceEstimate:
    """Map each neuron layer (and the non-spiking readout) to its own cores."""
    wbits = profile.weight_bits or 32
    sbits = profile.state_bits or 32
    per_layer: list[LayerResources] = []
    targets = [layer.name for layer in summary.neuron_layers()]
    # the readout: weighted nodes feeding the Output node directly
    for layer in summary.weighted_layers():
        if any(summary.layers[s].kind == "output" for s in layer.successors):
            targets.append(layer.name)
    for name in targets:
        info = summary.layers[name]
        feeders = [name] if info.weighted else incoming_weighted(summary, name)
        syn = sum(summary.layers[f].synapses for f in feeders)
        stored = sum(
            summary.layers[f].weights
            if (profile.weights_shared_conv and summary.layers[f].kind == "conv")
            else summary.layers[f].synapses
            for f in feeders
        )
        neurons = info.neurons
        cores: int | None = None
        bits = stored * wbits + neurons * sbits
        if profile.neurons_per_core or profile.synapses_per_core or profile.memory_per_core_kib:
            cores = 1
            if profile.memory_per_core_kib:
                cores = max(cores, math.ceil(bits / 8 / 1024 / profile.memory_per_core_kib))
            if profile.neurons_per_core:
                cores = max(cores, math.ceil(neurons / profile.neurons_per_core))
            if profile.synapses_per_core:
                cores = max(cores, math.ceil(stored / profile.synapses_per_core))
        per_layer.append(
            LayerResources(name, neurons, syn, stored, cores, bits)
        )
    total_cores = None if any(r.cores is None for r in per_layer) else sum(r.cores or 0 for r in per_layer)
    chips = None
    if total_cores is not None and profile.cores_per_chip:
        chips = max(1, math.ceil(total_cores / profile.cores_per_chip))
    return ResourceEstimate(
        layers=per_layer,
        neurons=summary.total_neurons,
        synapses=summary.total_synapses,
        stored_weights=sum(r.stored_weights for r in per_layer),
        cores=total_cores,
        chips=chips,
        memory_bits=sum(r.memory_bits for r in per_layer),
    )


ExtraCheck = Callable[[object, GraphSummary, TargetProfile], list[Violation]]


def check_graph(
    graph: Any,
    profile: TargetProfile,
    *,
    dt: float | None = None,
    extra: ExtraCheck | None = None,
) -> CheckReport:
    """Check ``graph`` against every constraint of ``profile``.

    Args:
        graph: a ``nir.NIRGraph`` following trt_nm's conventions (docs/nir.md).
        profile: the target.
        dt: timestep in seconds (default: ``graph.metadata["dt"]``).
        extra: target-specific checks ``(graph, summary, profile) -> [Violation]``.

    Returns:
        A :class:`CheckReport`; ``report.fits`` is True when there is no violation.
    """
    s = analyze_graph(graph, dt)
    v: list[Violation] = []
    notes: list[str] = []
    for name in s.order:
        info = s.layers[name]
        if info.role == "io":
            continue
        if info.kind == "unknown":
            v.append(Violation(name, "layer type", ", ".join(profile.layer_types), info.node_type))
        elif info.neuron:
            if info.node_type not in profile.neuron_models:
                hint = "--convert leak-to-iaf" if info.node_type == "LIF" and "IF" in profile.neuron_models else ""
                v.append(Violation(name, "neuron model", ", ".join(profile.neuron_models), info.node_type, hint))
            if info.beta is not None and info.beta < 1.0:
                if not profile.leak:
                    v.append(Violation(
                        name, "leak", "none (integrate-and-fire, no leak)",
                        f"beta={info.beta:g} (leaky)", "--convert leak-to-iaf drops the leak; the simulator shows its effect",
                    ))
                elif profile.leak_rule == "bitshift" and not _is_bitshift_beta(info.beta, profile.max_leak_shift):
                    v.append(Violation(
                        name, "leak", f"beta = 1 - 2^-k, k=1..{profile.max_leak_shift}", f"beta={info.beta:g}",
                        "train with tau = 2^k (e.g. --tau 2)",
                    ))
            if profile.max_fan_in is not None and info.fan_in > profile.max_fan_in:
                v.append(Violation(name, "fan-in", profile.max_fan_in, info.fan_in))
            if profile.max_fan_out is not None and info.fan_out > profile.max_fan_out:
                v.append(Violation(name, "fan-out", profile.max_fan_out, info.fan_out))
            if profile.neurons_per_core is None and profile.neurons_per_chip is not None and info.neurons > profile.neurons_per_chip:
                v.append(Violation(name, "neurons/layer", profile.neurons_per_chip, info.neurons))
        else:
            if info.kind not in profile.layer_types:
                hint = "--convert avgpool-to-sumpool" if info.kind == "avgpool" and "sumpool" in profile.layer_types else ""
                v.append(Violation(name, "layer type", ", ".join(profile.layer_types), info.node_type, hint))
            if info.kind == "conv" and profile.max_kernel_size is not None and info.kernel:
                k = max(info.kernel)
                if k > profile.max_kernel_size:
                    v.append(Violation(name, "kernel size", profile.max_kernel_size, k))
            if info.role == "pool" and profile.pool_sizes is not None and info.kernel:
                if any(k not in profile.pool_sizes for k in info.kernel):
                    v.append(Violation(name, "pool size", ", ".join(map(str, profile.pool_sizes)), "x".join(map(str, info.kernel))))
    if s.reset not in profile.reset_modes:
        v.append(Violation("(graph)", "reset", ", ".join(profile.reset_modes), s.reset,
                           "train with --reset " + profile.reset_modes[0]))
    res = estimate_resources(s, profile)
    neuron_layers = s.neuron_layers()
    if profile.max_layers is not None and len(neuron_layers) > profile.max_layers:
        v.append(Violation("(graph)", "neuron layers", profile.max_layers, len(neuron_layers)))
    limit_n = None if profile.neurons_per_chip is None else profile.neurons_per_chip * profile.max_chips
    if limit_n is not None and res.neurons > limit_n:
        v.append(Violation("(graph)", f"neurons/{'chip' if profile.max_chips == 1 else 'system'}", limit_n, res.neurons))
    limit_s = None if profile.synapses_per_chip is None else profile.synapses_per_chip * profile.max_chips
    if limit_s is not None and res.stored_weights > limit_s:
        v.append(Violation("(graph)", "synapses/chip", limit_s, res.stored_weights))
    if res.cores is not None and profile.cores_per_chip is not None:
        limit_c = profile.cores_per_chip * profile.max_chips
        if res.cores > limit_c:
            v.append(Violation("(graph)", "cores", limit_c, res.cores))
    if profile.weight_bits is not None:
        qbits = meta_value(graph, "quant_weight_bits")
        if qbits is None:
            notes.append(f"weights are float; export quantizes them to {profile.weight_bits}-bit (per-layer scale)")
        elif int(np.asarray(qbits).item()) > profile.weight_bits:
            v.append(Violation("(graph)", "weight bits", profile.weight_bits, int(np.asarray(qbits).item())))
    if extra is not None:
        v.extend(extra(graph, s, profile))
    return CheckReport(profile.name, v, res, s, notes)
