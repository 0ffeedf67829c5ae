"""SynSense Xylo Audio 2 (SYNS61201, Rockpool): profile, constraint checks, nir-1.0.4 file.

Sources:
* Bos & Muir, "Sub-mW Neuromorphic SNN audio processing applications with Rockpool and Xylo",
  arXiv:2208.12991 (2022): 16 input channels, 1000 hidden LIF neurons, 8 output neurons,
  digital, bit-shift decays; Xylo Audio 2 figures 291 uW and 6.6 uJ per inference (no
  per-synaptic-op energy published; reports use trt_nm.metrics.energy's "xylo" profile).
* rockpool 3.1.0 ``devices/xylo/syns61201/xylo_mapper.py`` (2024): max_hidden_neurons=1000,
  max_output_neurons=8, at most 16 input channels, int8 weights, int16 thresholds, uint8 "dash"
  bit-shift time constants (decay beta = 1 - 2^-dash).
* rockpool 3.1.0 ``LIFTorch`` docs: Xylo neurons reset by subtracting the threshold.

Only dense (Linear/Affine) connectivity is supported; no convolution or pooling.

Check parity with rockpool 3.1.0's ``syns61201.mapper`` (its design rules and resource
allocation; :meth:`XyloExporter.extra_checks`): a readout that is not a neuron layer ("All
network outputs must be directly from neurons"), biases on weight layers (not transferred to
Xylo), more than 1000 hidden / 8 output neurons / 16 input channels, fewer than two neuron
layers, and time constants that are no bit-shift dash (``tau <= dt`` "cannot be converted to
dash"; rockpool silently rounds other non-powers of two, trt_nm refuses them). Each violation
names the mapper's diagnosis and the fix: retrain with ``trt-nm train --target xylo``, whose
model and files (:mod:`trt_nm.chip.xylo`) satisfy every rule.

File: rockpool 3.1.0's NIR importer (``rockpool.nn.modules.torch.nir.from_nir``) reads
``Input``/``Output`` (its ``as_graph`` needs them named ``input``/``output``), ``Linear``
(-> ``LinearTorch`` without bias; an ``Affine`` always gets a bias, which the mapper flags),
``CubaLIF`` (-> ``LIFTorch`` with ``dt = min(tau_mem / (1 + r))``); its ``LIF`` branch reads
``node.tau_mem``, which ``nir.LIF`` does not have, and ``Flatten`` raises
``NotImplementedError``. The mapper then turns ``tau`` into ``dash = log2(tau / dt)`` and
``channel_quantize`` scales each neuron's weights and threshold by ``127 / max|w|``.
:func:`rockpool_graph` writes that form: see there.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from trt_nm.chip.xylo import DASH_MAX, MAX_HIDDEN, MAX_INPUTS, MAX_OUTPUTS, STATE_BITS, WEIGHT_BITS
from trt_nm.errors import ConfigError
from trt_nm.exporters import register_exporter
from trt_nm.exporters.base import Exporter
from trt_nm.exporters.check import Violation
from trt_nm.exporters.layers import GraphSummary
from trt_nm.exporters.nir104 import write_nir104
from trt_nm.exporters.profile import TargetProfile
from trt_nm.nir.graph import graph_reset, require_dt
from trt_nm.nir.nodes import coefficients

PROFILE = TargetProfile(
    name="xylo",
    chip="SynSense Xylo Audio 2 (SYNS61201)",
    toolchain="rockpool 3.1.0 (nir <= 1.0.4) + samna",
    neuron_models=("LIF", "CubaLIF"),
    leak=True,
    leak_rule="bitshift",
    reset_modes=("subtract",),
    layer_types=("dense", "flatten"),
    weight_bits=WEIGHT_BITS,
    state_bits=STATE_BITS,
    threshold_bits=STATE_BITS,
    neurons_per_chip=MAX_HIDDEN + MAX_OUTPUTS,
    max_leak_shift=DASH_MAX,
    max_inputs=MAX_INPUTS,
    max_outputs=MAX_OUTPUTS,
    max_hidden=MAX_HIDDEN,
    timestep="set by the network clock; rockpool default dt = 1 ms",
    energy_profile="xylo",
    energy_per_synop_pj=None,
    file_format="nir-1.0.4",
    sources=(
        "Bos & Muir, arXiv:2208.12991 (2022)",
        "rockpool 3.1.0 xylo_mapper (1000 hidden, 8 out, 16 in, int8/int16)",
        "rockpool 3.1.0 LIFTorch (subtractive reset)",
    ),
    notes="fan-in/fan-out limits per neuron are not published beyond the 16/1000/8 sizes",
)


#: dash (bit shift) of the synaptic current written for a plain LIF (Xylo's shortest synapse)
LIF_DASH_SYN = 1


def _drop_flatten(graph: Any) -> tuple[dict, list[tuple[str, str]]]:
    """Nodes and edges without Flatten nodes; an Input feeding a Flatten becomes flat."""
    import nir

    nodes = dict(graph.nodes)
    edges = list(graph.edges)
    for name, node in list(nodes.items()):
        if type(node).__name__ != "Flatten":
            continue
        preds = [a for a, b in edges if b == name]
        succs = [b for a, b in edges if a == name]
        for p in preds:
            shape = np.asarray(nodes[p].output_type.get("output", []) if nodes[p].output_type else [])
            if shape.size > 1:
                if type(nodes[p]).__name__ != "Input":
                    raise ConfigError(
                        f"xylo: Flatten {name!r} reshapes the output of {p!r} (shape {shape.tolist()}); "
                        "rockpool has no Flatten and Xylo is dense-only"
                    )
                nodes[p] = nir.Input(input_type={"input": np.array([int(np.prod(shape))])})
        edges = [(a, b) for a, b in edges if name not in (a, b)]
        edges += [(p, s) for p in preds for s in succs]
        del nodes[name]
    return nodes, edges


def _rename(nodes: dict, edges: list[tuple[str, str]], old: str, new: str) -> tuple[dict, list]:
    if old == new:
        return nodes, edges
    if new in nodes:
        raise ConfigError(f"xylo: node name {new!r} is reserved for the graph's {new} (rockpool's as_graph)")
    nodes = {(new if k == old else k): v for k, v in nodes.items()}
    edges = [(new if a == old else a, new if b == old else b) for a, b in edges]
    return nodes, edges


def _dash(tau_over_dt: np.ndarray) -> np.ndarray:
    return np.log2(np.asarray(tau_over_dt, np.float64))


def rockpool_graph(graph: Any) -> Any:
    """The graph in the form rockpool 3.1.0's ``from_nir`` -> ``syns61201.mapper`` reads.

    * every ``LIF`` (trt_nm: ``v = beta*v + x``, ``beta = 1 - 2^-k``) becomes a ``CubaLIF`` with
      ``tau_mem = dt * 2^k`` (``dash_mem = k``, the same decay), ``tau_syn = dt * 2^LIF_DASH_SYN``
      (Xylo has no neuron without a synaptic current: ``dash_syn = 1`` is the shortest; the
      current is halved before it is integrated), ``r = 2^k - 1`` so that rockpool's
      ``dt = tau_mem / (1 + r)`` is the graph's dt, ``v_leak = 0``, the threshold unchanged
      (``channel_quantize`` puts it on the integer grid with the weights);
    * a ``CubaLIF`` keeps its time constants; ``r`` is set as above;
    * an ``Affine`` with a zero bias becomes a ``Linear`` (rockpool gives every Affine a bias);
    * Flatten nodes are removed (the Input made flat); the Input and Output nodes are renamed
      ``input`` and ``output``.

    Nonzero biases, a non-neuron readout and non-dash time constants are left for the mapper to
    reject (:meth:`XyloExporter.extra_checks` refuses them first).
    """
    import nir

    dt = require_dt(graph, who="xylo")
    meta = dict(getattr(graph, "metadata", None) or {})
    if graph_reset(graph) != "subtract":
        raise ConfigError("xylo: rockpool/Xylo neurons reset by subtraction; export a subtract-reset model")
    nodes, edges = _drop_flatten(graph)
    for kind, new in (("Input", "input"), ("Output", "output")):
        names = [n for n, v in nodes.items() if type(v).__name__ == kind]
        if len(names) == 1:
            nodes, edges = _rename(nodes, edges, names[0], new)
    for name, node in list(nodes.items()):
        kind = type(node).__name__
        if kind == "Affine" and not np.any(np.asarray(node.bias)):
            nodes[name] = nir.Linear(weight=np.asarray(node.weight))
        elif kind == "LIF":
            c = coefficients(node, dt)
            beta = np.broadcast_to(c["decay"], np.shape(c["threshold"])).astype(np.float64)
            if np.any(beta <= 0) or np.any(beta >= 1):
                raise ConfigError(f"xylo: LIF {name!r} needs 0 < beta < 1 (got {beta.min():g}..{beta.max():g})")
            if not np.allclose(c["gain"], 1.0) or np.any(c["leak"] != 0):
                raise ConfigError(f"xylo: LIF {name!r} must have unit input gain and v_leak 0 (trt_nm convention)")
            ratio = 1.0 / (1.0 - beta)  # tau_mem / dt = 2^k
            n = beta.shape
            nodes[name] = nir.CubaLIF(
                tau_syn=np.full(n, dt * 2.0 ** LIF_DASH_SYN), tau_mem=dt * ratio, r=ratio - 1.0,
                v_leak=np.zeros(n), v_threshold=np.broadcast_to(c["threshold"], n).astype(np.float64),
                w_in=np.ones(n),
            )
        elif kind == "CubaLIF":
            tau_mem = np.asarray(node.tau_mem, np.float64)
            nodes[name] = nir.CubaLIF(
                tau_syn=np.asarray(node.tau_syn, np.float64), tau_mem=tau_mem, r=tau_mem / dt - 1.0,
                v_leak=np.asarray(node.v_leak, np.float64), v_threshold=np.asarray(node.v_threshold, np.float64),
                w_in=np.asarray(node.w_in, np.float64),
            )
    meta.update({"encoding": "rockpool-3.1-xylo", "lif_dash_syn": LIF_DASH_SYN})
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)


#: the fix every violation below points to
RETRAIN = "retrain with --target xylo (trt-nm train --target xylo)"


def _hint(diagnosis: str) -> str:
    """The vendor mapper's diagnosis and the fix, as a Violation hint."""
    return f"rockpool mapper: {diagnosis}; {RETRAIN}"


def _tau_dash_violations(name: str, which: str, tau: np.ndarray, dt: float) -> list[Violation]:
    ratio = np.asarray(tau, np.float64) / dt
    if np.any(ratio <= 1.0):
        return [Violation(name, which, f"> dt = {dt:g} s (dash >= 1)", f"{float(np.min(tau)):g} s",
                          _hint("a time constant <= dt cannot be converted to a dash"))]
    d = _dash(ratio)
    if np.any(np.abs(d - np.round(d)) > 1e-6) or np.any(np.round(d) > 15):
        return [Violation(name, which, "dt * 2^k, k = 1..15 (a bit-shift dash)",
                          f"tau/dt = {float(ratio.flat[0]):g}",
                          f"rockpool rounds dash = log2(tau/dt) silently, changing the decay; {RETRAIN}")]
    return []


class XyloExporter(Exporter):
    profile = PROFILE

    def write(self, graph: Any, path: str | os.PathLike) -> list[Path]:
        """Write :func:`rockpool_graph` of the (quantized) graph in nir 1.0.4's schema."""
        return [write_nir104(rockpool_graph(graph), path)]

    def extra_checks(self, graph: Any, summary: GraphSummary, profile: TargetProfile) -> list[Violation]:
        """What rockpool 3.1.0's ``syns61201.mapper`` rejects (module docstring), with its
        diagnosis and the fix."""
        out: list[Violation] = []
        layers = summary.layers
        outputs = [n for n in summary.order if layers[n].kind == "output"]
        feeding = [p for o in outputs for p in layers[o].predecessors]
        # a Flatten between the readout and the Output is a reshape
        feeding = [q for p in feeding for q in (layers[p].predecessors if layers[p].kind == "flatten" else [p])]
        readout_neurons = [p for p in feeding if layers[p].neuron]
        for p in feeding:
            if layers[p].weighted:
                out.append(Violation(
                    p, "readout", "a neuron layer (Xylo's output neurons)",
                    f"{layers[p].node_type} feeding the output",
                    _hint("all network outputs must be directly from neurons")))
        n_out = sum(layers[p].neurons for p in feeding)
        if n_out > profile.max_outputs:
            out.append(Violation(feeding[-1], "output neurons", profile.max_outputs, n_out,
                                 _hint("Xylo only supports up to 8 output channels")))
        hidden_layers = [layer for layer in summary.neuron_layers() if layer.name not in readout_neurons]
        hidden = sum(layer.neurons for layer in hidden_layers)
        if hidden > profile.max_hidden:
            out.append(Violation("(graph)", "hidden neurons", profile.max_hidden, hidden,
                                 _hint("failed to allocate HW resources for hidden neurons")))
        if readout_neurons and not hidden_layers:
            out.append(Violation("(graph)", "neuron layers", "hidden + output", "output neurons only",
                                 _hint("at least two layers of neurons are required to map to hidden "
                                       "and output layers")))
        weighted = summary.weighted_layers()
        firsts = [w for w in weighted if any(layers[p].kind in ("input", "flatten") for p in w.predecessors)]
        for w in firsts[:1]:
            if w.fan_in > profile.max_inputs:
                out.append(Violation(w.name, "input channels", profile.max_inputs, w.fan_in,
                                     _hint("Xylo only supports up to 16 input channels")))
        for w in weighted:
            bias = getattr(graph.nodes[w.name], "bias", None)
            if bias is not None and np.any(np.asarray(bias) != 0):
                out.append(Violation(
                    w.name, "bias", "none", f"{int(np.count_nonzero(bias))} nonzero",
                    _hint("bias parameters of LinearWeights are not transferred to Xylo")))
        dt = summary.dt
        for layer in summary.neuron_layers():
            node = graph.nodes[layer.name]
            if type(node).__name__ == "CubaLIF" and dt:
                out += _tau_dash_violations(layer.name, "tau_syn", node.tau_syn, dt)
                out += _tau_dash_violations(layer.name, "tau_mem", node.tau_mem, dt)
            thr = getattr(node, "v_threshold", None)
            incoming = [p for p in layer.predecessors if layers[p].weighted]
            if thr is None or len(incoming) != 1 or layers[incoming[0]].kind != "dense":
                continue
            wmax = np.abs(np.asarray(graph.nodes[incoming[0]].weight, np.float64)).max(axis=1)
            scale = np.where(wmax > 0, 127.0 / np.where(wmax > 0, wmax, 1.0), 1.0)
            q = np.round(np.broadcast_to(np.asarray(thr, np.float64), scale.shape) * scale)
            if np.any(q < 1):
                out.append(Violation(
                    layer.name, "threshold", "an integer >= 1 after channel_quantize (x 127/max|w|)",
                    f"{int(np.sum(q < 1))} round to {int(q.min())}",
                    f"thresholds that small leave the neuron firing on every input; {RETRAIN}"))
        return out


register_exporter(XyloExporter())
