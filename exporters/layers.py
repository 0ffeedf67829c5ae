"""Static analysis of a ``nir.NIRGraph``: per-node kind, neurons, fan-in, fan-out, synapses.

Counting rules (used by every target's check and resource estimate):

* neurons of a neuron node (LIF/IF/CubaLIF/...) = elements of its parameter arrays.
* synapses of a weighted node = connections: ``Affine/Linear``: ``in x out``;
  ``Conv2d``: ``output elements x (C_in/groups) x kh x kw``. ``weights`` = stored parameters
  (a conv kernel is stored once: ``C_out x C_in/groups x kh x kw``).
* fan-in of a neuron = synapses reaching ONE neuron, summed over all incoming edges
  (conv: ``C_in/groups x kh x kw``, dense: ``in``; an unweighted edge from a neuron counts 1,
  pooling in between multiplies by the window area).
* fan-out of a neuron = targets ONE spike can reach, summed over outgoing edges
  (dense: ``out``; conv: ``C_out/groups x ceil(kh/sh) x ceil(kw/sw)``; pooling/flatten pass
  through; an unweighted edge to a neuron or the output counts 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from trt_nm.errors import ConfigError

NEURON_TYPES = ("LIF", "IF", "CubaLIF", "LI", "CubaLI", "I", "Threshold")
_KIND = {
    "Input": "input",
    "Output": "output",
    "Affine": "dense",
    "Linear": "dense",
    "Conv1d": "conv",
    "Conv2d": "conv",
    "AvgPool2d": "avgpool",
    "SumPool2d": "sumpool",
    "Flatten": "flatten",
    "Scale": "scale",
}


def node_kind(node) -> str:
    """``"input"``, ``"output"``, ``"dense"``, ``"conv"``, ``"avgpool"``, ``"sumpool"``,
    ``"flatten"``, ``"scale"``, ``"neuron"`` or ``"unknown"``."""
    t = type(node).__name__
    if t in NEURON_TYPES:
        return "neuron"
    return _KIND.get(t, "unknown")


def _pair(v) -> tuple[int, int]:
    a = np.atleast_1d(np.asarray(v)).astype(int).ravel()
    return (int(a[0]), int(a[0])) if a.size == 1 else (int(a[0]), int(a[1]))


def _out_elems(node) -> int | None:
    ot = getattr(node, "output_type", None) or {}
    shape = ot.get("output") if isinstance(ot, dict) else None
    if shape is None:
        return None
    shape = np.asarray(shape).ravel()
    if shape.size == 0 or np.any(shape <= 0):
        return None
    return int(np.prod(shape))


@dataclass
class LayerInfo:
    """Facts about one node (all counts batch-free).

    Attributes:
        name: node name.
        node_type: NIR class name (``"Conv2d"``, ``"LIF"``, ...).
        kind: see :func:`node_kind`.
        neurons: neurons of a neuron node, output elements of other nodes (0 if unknown).
        synapses: connections of a weighted node (0 for others).
        weights: stored parameters of a weighted node (weights only, no bias).
        fan_in: per-neuron fan-in (neuron nodes), per-output fan-in (weighted nodes).
        fan_out: per-neuron fan-out (neuron nodes).
        kernel: kernel sides of conv/pool nodes.
        stride: strides of conv/pool nodes.
        beta: per-step decay of LIF nodes (``1 - dt/tau``, max over neurons), 1.0 for IF.
        predecessors: names of nodes with an edge into this one.
        successors: names of nodes this one has an edge to.
    """

    name: str
    node_type: str
    kind: str
    neurons: int = 0
    synapses: int = 0
    weights: int = 0
    fan_in: int = 0
    fan_out: int = 0
    kernel: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None
    beta: float | None = None
    predecessors: list[str] = field(default_factory=list)
    successors: list[str] = field(default_factory=list)


@dataclass
class GraphSummary:
    """All :class:`LayerInfo` of a graph in topological order, plus graph-level facts."""

    layers: dict[str, LayerInfo]
    order: list[str]
    dt: float
    reset: str

    def neuron_layers(self) -> list[LayerInfo]:
        return [self.layers[n] for n in self.order if self.layers[n].kind == "neuron"]

    def weighted_layers(self) -> list[LayerInfo]:
        return [self.layers[n] for n in self.order if self.layers[n].kind in ("dense", "conv")]

    @property
    def total_neurons(self) -> int:
        return sum(layer.neurons for layer in self.neuron_layers())

    @property
    def total_synapses(self) -> int:
        return sum(layer.synapses for layer in self.weighted_layers())

    @property
    def total_weights(self) -> int:
        return sum(layer.weights for layer in self.weighted_layers())


def graph_dt(graph, dt: float | None = None) -> float | None:
    """The timestep in seconds (``dt``, else ``metadata["dt"]``); a graph with neurons and
    neither raises a one-line error (:func:`trt_nm.nir.validate.require_dt`)."""
    from trt_nm.nir.validate import require_dt

    return require_dt(graph, dt, who="target check")


def graph_reset(graph) -> str:
    """The reset rule of the graph's LIF nodes: ``metadata["reset"]`` or NIR's ``"zero"``."""
    from trt_nm.nir.validate import meta_str

    return meta_str(graph, "reset", "zero")


def topological_order(graph) -> list[str]:
    """Node names in an order where every edge goes forward; bad edges and cycles raise ConfigError."""
    from trt_nm.nir.validate import topological_order as order_of

    for a, b in graph.edges:
        if a not in graph.nodes or b not in graph.nodes:
            raise ConfigError(f"graph edge {a!r} -> {b!r} names a missing node")
    order = order_of(graph)
    if order is None:
        raise ConfigError("graph has a cycle (recurrent graphs are not supported by the target checks)")
    return order


def analyze_graph(graph, dt: float | None = None) -> GraphSummary:
    """Compute a :class:`GraphSummary` for ``graph`` (see the module docstring for the rules)."""
    order = topological_order(graph)
    step = graph_dt(graph, dt)
    layers: dict[str, LayerInfo] = {}
    for name in order:
        node = graph.nodes[name]
        t = type(node).__name__
        info = LayerInfo(name=name, node_type=t, kind=node_kind(node))
        if info.kind == "neuron":
            arr = getattr(node, "v_threshold", None)
            if arr is None:
                arr = getattr(node, "tau", None) if hasattr(node, "tau") else getattr(node, "threshold", 0)
            info.neurons = int(np.asarray(arr).size)
            if t in ("LIF", "LI"):
                tau = np.asarray(node.tau, dtype=np.float64)
                info.beta = float(np.max(1.0 - step / tau))
            elif t == "CubaLIF":
                info.beta = float(np.max(1.0 - step / np.asarray(node.tau_mem, dtype=np.float64)))
            elif t in ("IF", "I"):
                info.beta = 1.0
        elif info.kind in ("dense", "conv"):
            w = np.asarray(node.weight)
            info.weights = int(w.size)
            if info.kind == "dense":
                info.fan_in = int(w.shape[-1])
                info.neurons = int(w.shape[0])
                info.synapses = int(w.size)
            else:
                per_out = int(np.prod(w.shape[1:]))
                info.fan_in = per_out
                info.kernel = _pair(w.shape[2:]) if w.ndim == 4 else (int(w.shape[2]), 1)
                info.stride = _pair(getattr(node, "stride", 1))
                out = _out_elems(node)
                info.neurons = out or 0
                info.synapses = (out or 0) * per_out
        elif info.kind in ("avgpool", "sumpool"):
            info.kernel = _pair(node.kernel_size)
            info.stride = _pair(node.stride)
            info.neurons = _out_elems(node) or 0
        else:
            info.neurons = _out_elems(node) or 0
        layers[name] = info
    for a, b in graph.edges:
        layers[a].successors.append(b)
        layers[b].predecessors.append(a)

    def fan_in_of(name: str) -> int:
        info = layers[name]
        if info.kind in ("dense", "conv"):
            return info.fan_in
        if info.kind in ("neuron", "input"):
            return 1
        total = sum(fan_in_of(p) for p in info.predecessors)
        if info.kind in ("avgpool", "sumpool") and info.kernel:
            total *= info.kernel[0] * info.kernel[1]
        return total

    def fan_out_of(name: str) -> int:
        info = layers[name]
        if info.kind == "dense":
            return info.neurons
        if info.kind == "conv":
            w = np.asarray(graph.nodes[name].weight)
            groups = int(np.asarray(getattr(graph.nodes[name], "groups", 1)).item())
            kh, kw = info.kernel or (1, 1)
            sh, sw = info.stride or (1, 1)
            return int(w.shape[0] // max(groups, 1)) * math.ceil(kh / sh) * math.ceil(kw / sw)
        if info.kind in ("neuron", "output"):
            return 1
        return sum(fan_out_of(s) for s in info.successors)

    for name in order:
        info = layers[name]
        if info.kind == "neuron":
            info.fan_in = sum(fan_in_of(p) for p in info.predecessors)
            info.fan_out = sum(fan_out_of(s) for s in info.successors)
    return GraphSummary(layers=layers, order=order, dt=step, reset=graph_reset(graph))
