"""SynSense Speck (sinabs / DYNAP-CNN): profile, constraint checks and a nir-1.0.4 file.

Sources:
* Richter et al., "Speck: A Smart event-based Vision Sensor with a low latency 327K Neuron
  Convolutional Neuronal Network Processing Pipeline", arXiv:2304.06793 (2023): 9 convolutional
  cores, 327K integrate-and-fire neurons, 128x128 DVS input, asynchronous (no global clock).
* sinabs 3.1.3 ``sinabs/backend/dynapcnn`` (2024): per-core kernel memory 16/16/16/32/32/64/64/
  16/16 Ki entries and neuron memory 64/64/64/32/32/16/16/16/16 Ki entries; 8-bit weights,
  16-bit neuron states and thresholds; IAF neurons (``IAFSqueeze``) with reset to zero or by
  subtraction; conv kernels up to 16x16; sum pooling 1, 2 or 4; a layer sends to at most 2
  destination layers; Linear layers are mapped to convolutions.

The chip's neurons have no leak: a model with LIF neurons is refused unless
``--convert leak-to-iaf`` is given (its effect is shown by ``trt-nm simulate`` on the converted
graph) or it is retrained with ``--target speck``. The exported file is NIR in nir 1.0.4's
schema (sinabs 3.1.3 pins nir <= 1.0.4), in the form ``sinabs.from_nir`` +
``DynapcnnNetwork(discretize=True)`` accept: one threshold per IF layer (shape ``[1]``,
``r = 1``, the input gain ``r*dt`` folded into the threshold), ``Affine`` instead of ``Linear``.

``--check`` reports what sinabs 3.1.3's DYNAP-CNN mapper rejects, with the same diagnosis
(``tests/test_vendor_speck.py`` plants each violation and asks sinabs): a weight layer not
followed by a spiking layer (the readout too), thresholds that differ within a layer, kernel /
neuron / bias memory per layer beyond every core (sinabs' ``memory_summary`` formulas, from
:mod:`trt_nm.chip.speck`), more layers than cores or no layer -> core assignment, non-square
kernels, leaky or non-IF neurons.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

from trt_nm.chip.speck_cores import (
    BIAS_MEMORY,
    KERNEL_MEMORY,
    NEURON_MEMORY,
    assign_cores,
    kernel_memory,
    neuron_memory,
)
from trt_nm.exporters import register_exporter
from trt_nm.exporters.base import Exporter
from trt_nm.exporters.check import CheckReport, Violation, incoming_weighted
from trt_nm.exporters.layers import GraphSummary
from trt_nm.exporters.nir104 import write_nir104
from trt_nm.exporters.profile import TargetProfile
from trt_nm.nir.graph import graph_dt
from trt_nm.nir.nodes import arr

MAX_DESTINATIONS = 2
MAX_INPUT_SIZE = 128
RETRAIN = "retrain with --target speck (spiking readout, one threshold per layer)"

PROFILE = TargetProfile(
    name="speck",
    chip="SynSense Speck (DYNAP-CNN core)",
    toolchain="sinabs 3.1.3 (nir <= 1.0.4) + samna",
    neuron_models=("IF",),
    leak=False,
    leak_rule="none",
    # The chip can reset to zero, but the nir 1.0.4 IF node sinabs reads has no reset field and
    # sinabs.from_nir always builds subtractive resets: a zero-reset file would silently change.
    reset_modes=("subtract",),
    layer_types=("conv", "dense", "sumpool", "flatten"),
    weight_bits=8,
    state_bits=16,
    threshold_bits=16,
    neurons_per_core=max(NEURON_MEMORY),
    synapses_per_core=max(KERNEL_MEMORY),
    cores_per_chip=len(KERNEL_MEMORY),
    neurons_per_chip=sum(NEURON_MEMORY),
    max_kernel_size=16,
    pool_sizes=(1, 2, 4),
    max_layers=len(KERNEL_MEMORY),
    weights_shared_conv=True,
    timestep="event-driven, no global timestep (leak would need an external slow clock)",
    energy_profile=None,
    energy_per_synop_pj=None,
    file_format="nir-1.0.4",
    sources=(
        "Richter et al., arXiv:2304.06793 (2023)",
        "sinabs 3.1.3 sinabs/backend/dynapcnn (memory tables, 2024)",
    ),
    notes="a layer occupies exactly one core; energy per synaptic op not published",
)


def _shape3(value: Any) -> tuple[int, int, int] | None:
    if value is None:
        return None
    a = np.asarray(value).astype(int).ravel()
    if a.size == 3:
        return int(a[0]), int(a[1]), int(a[2])
    if a.size == 1:
        return int(a[0]), 1, 1
    return None


def _io(graph: Any, node: Any, key: str) -> Any:
    types = getattr(node, "input_type" if key == "input" else "output_type", None) or {}
    return types.get(key) if isinstance(types, dict) else None


def _gain(node: Any, dt: float | None) -> np.ndarray:
    """The IF node's input gain ``r * dt`` (trt_nm's node table; sinabs assumes 1)."""
    return arr(node.r) * (1.0 if dt is None else dt)


def layer_geometry(graph: Any, summary: GraphSummary, name: str) -> dict[str, Any] | None:
    """What sinabs makes of weight node ``name``: ``{c_in, kernel (kh, kw), c_out, h, w}``
    (a dense layer becomes a conv whose kernel covers its [C, H, W] input); None if unknown."""
    node = graph.nodes[name]
    w = np.asarray(node.weight)
    info = summary.layers[name]
    if info.kind == "dense":
        src: tuple[int, int, int] | None = None
        for p in info.predecessors:
            pnode = graph.nodes[p]
            src = _shape3(_io(graph, pnode, "input")) if summary.layers[p].kind == "flatten" else None
        if src is None:
            src = (int(w.shape[-1]), 1, 1)
        return {"c_in": src[0], "kernel": (src[1], src[2]), "c_out": int(w.shape[0]), "h": 1, "w": 1}
    if w.ndim != 4:
        return None
    out = _shape3(_io(graph, node, "output"))
    if out is None:
        return None
    groups = int(np.asarray(getattr(node, "groups", 1)).item())
    return {"c_in": int(w.shape[1]) * groups, "kernel": (int(w.shape[2]), int(w.shape[3])),
            "c_out": int(w.shape[0]), "h": out[1], "w": out[2]}


class SpeckExporter(Exporter):
    profile = PROFILE

    def prepare(self, graph: Any, *, convert: tuple[str, ...] | list[str] = (),
                quantize: int | None = None) -> tuple[Any, list[str]]:
        """The base conversions/quantization on :func:`expand_neurons` of ``graph`` (so a
        sinabs-style file with one threshold per layer goes through trt_nm's tools)."""
        return super().prepare(expand_neurons(graph), convert=convert, quantize=quantize)

    def check(self, graph: Any, dt: float | None = None) -> CheckReport:
        """The generic check plus :meth:`extra_checks`; a leaky neuron also gets the retrain hint."""
        report = super().check(expand_neurons(graph), dt=dt)
        fixed = []
        for v in report.violations:
            if v.constraint in ("leak", "neuron model") and "--convert leak-to-iaf" in v.hint:
                v = dataclasses.replace(v, hint=v.hint + "; or retrain with --target speck")
            fixed.append(v)
        report.violations = fixed
        return report

    def extra_checks(self, graph: Any, summary: GraphSummary, profile: TargetProfile) -> list[Violation]:
        """What sinabs' DYNAP-CNN mapper rejects beyond the generic limits (module docstring)."""
        out: list[Violation] = []
        dt = summary.dt
        for layer in summary.weighted_layers():
            bad = [s for s in layer.successors if not summary.layers[s].neuron]
            if bad or not layer.successors:
                what = summary.layers[bad[0]].node_type if bad else "nothing"
                out.append(Violation(
                    layer.name, "spiking layer after weights",
                    "an IF layer (sinabs: weight layers have to be followed by a spiking layer)",
                    f"{what} follows it", "make the readout spiking: " + RETRAIN))
        for layer in summary.neuron_layers():
            node = graph.nodes[layer.name]
            if layer.node_type in ("IF", "LIF"):
                thr = arr(node.v_threshold) / (_gain(node, dt) if layer.node_type == "IF" else 1.0)
                distinct = int(np.unique(np.round(thr.ravel(), 9)).size)
                if distinct > 1:
                    out.append(Violation(layer.name, "thresholds per layer", 1, distinct,
                                         "Speck has one threshold per layer (sinabs cannot discretize "
                                         "per-neuron thresholds): " + RETRAIN))
            dests = len(layer.successors)
            if dests > MAX_DESTINATIONS:
                out.append(Violation(layer.name, "destination layers", MAX_DESTINATIONS, dests))
        needs = []
        for layer in summary.neuron_layers():
            feeders = incoming_weighted(summary, layer.name)
            geo = [g for g in (layer_geometry(graph, summary, f) for f in feeders) if g is not None]
            if not geo:
                continue
            g = geo[0]
            kh, kw = g["kernel"]
            if kh != kw:
                out.append(Violation(feeders[0], "square kernel", "kh == kw (sinabs)", f"{kh}x{kw}"))
            k_mem = kernel_memory(g["c_in"], (kh, kw), g["c_out"])
            n_mem = neuron_memory(g["c_out"], g["h"], g["w"])
            b_mem = g["c_out"]
            needs.append((k_mem, n_mem, b_mem))
            hint = "fewer channels, a smaller kernel or more stride/pooling"
            if n_mem > max(NEURON_MEMORY):
                out.append(Violation(layer.name, "neurons/core (one layer per core)", max(NEURON_MEMORY), n_mem,
                                     "neuron memory c_out*2^(ceil log2 h + ceil log2 w) (sinabs): " + hint))
            if k_mem > max(KERNEL_MEMORY):
                out.append(Violation(layer.name, "kernel memory/core", max(KERNEL_MEMORY), k_mem,
                                     "kernel memory c_in*2^(ceil log2 k^2 + ceil log2 c_out) (sinabs): " + hint))
            if b_mem > BIAS_MEMORY:
                out.append(Violation(layer.name, "bias memory/core", BIAS_MEMORY, b_mem))
        fits_each = all(k <= max(KERNEL_MEMORY) and n <= max(NEURON_MEMORY) and b <= BIAS_MEMORY
                        for k, n, b in needs)
        if fits_each and len(needs) <= len(KERNEL_MEMORY) and assign_cores(needs) is None:
            out.append(Violation("(graph)", "core assignment", f"one {len(KERNEL_MEMORY)}-core layer each",
                                 "no assignment fits the per-core memories", "use smaller layers"))
        for name in summary.order:
            info = summary.layers[name]
            if info.kind == "input":
                shape = _shape3(_io(graph, graph.nodes[name], "input"))
                if shape is not None and max(shape[1], shape[2]) > MAX_INPUT_SIZE:
                    out.append(Violation(name, "input size", MAX_INPUT_SIZE, max(shape[1], shape[2])))
        return out

    def write(self, graph: Any, path: str | os.PathLike) -> list[Path]:
        """The graph as sinabs reads it (module docstring), in nir 1.0.4's schema."""
        return [write_nir104(sinabs_graph(graph), path)]


def expand_neurons(graph: Any) -> Any:
    """``graph`` with each single-valued IF/LIF node (as sinabs writes and reads them, shape
    [1]) broadcast to the shape of the layer that feeds it, which trt_nm's node table expects."""
    import nir

    pred: dict[str, list[str]] = {}
    for a, b in graph.edges:
        pred.setdefault(b, []).append(a)
    nodes = dict(graph.nodes)
    changed = False
    for name, node in graph.nodes.items():
        t = type(node).__name__
        if t not in ("IF", "LIF") or arr(node.v_threshold).size != 1 or len(pred.get(name, [])) != 1:
            continue
        shape = _io(graph, graph.nodes[pred[name][0]], "output")
        if shape is None:
            continue
        shape = tuple(int(s) for s in np.asarray(shape).ravel())
        if shape == (1,) or not shape:
            continue
        full = {f: np.broadcast_to(arr(getattr(node, f)), shape).astype(np.float32).copy()
                for f in ("tau", "r", "v_leak", "v_threshold", "v_reset") if getattr(node, f, None) is not None}
        nodes[name] = nir.IF(**full) if t == "IF" else nir.LIF(**full)
        changed = True
    if not changed:
        return graph
    meta = dict(getattr(graph, "metadata", None) or {})
    return nir.NIRGraph(nodes=nodes, edges=list(graph.edges), metadata=meta, type_check=False)


def sinabs_graph(graph: Any) -> Any:
    """``graph`` in the form ``sinabs.from_nir`` maps faithfully: IF nodes with one threshold
    (shape [1], the gain ``r*dt`` folded in, ``r = 1``), Linear as Affine with zero bias,
    ``metadata['dt'] = 1`` (so trt_nm's own readers see the same ``v += input``)."""
    import nir

    dt = graph_dt(graph)
    nodes = dict(graph.nodes)
    for name, node in graph.nodes.items():
        t = type(node).__name__
        if t == "IF":
            thr = arr(node.v_threshold) / _gain(node, dt)
            vals = np.unique(np.round(thr.ravel(), 9))
            if vals.size == 1:
                nodes[name] = nir.IF(r=np.ones(1, np.float32),
                                     v_threshold=np.array([float(thr.ravel()[0])], np.float32),
                                     v_reset=np.zeros(1, np.float32))
        elif t == "Linear":
            w = np.asarray(node.weight)
            nodes[name] = nir.Affine(weight=w, bias=np.zeros(w.shape[0], dtype=w.dtype))
    meta = dict(getattr(graph, "metadata", None) or {})
    meta["dt"] = 1.0
    return nir.NIRGraph(nodes=nodes, edges=list(graph.edges), metadata=meta, type_check=False)


register_exporter(SpeckExporter())
