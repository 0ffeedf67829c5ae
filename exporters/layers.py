"""Static analysis of a ``nir.NIRGraph``: per-node kind, neurons, fan-in, fan-out, synapses.

Counting rules (used by every target's check and resource estimate):

* neurons of a neuron node (LIF/IF/CubaLIF/...) = elements of its parameter arrays
  (broadcast together). Node roles and layer kinds come from :mod:`trt_nm.nir.nodes`.
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
from typing import Any

import numpy as np

from trt_nm.errors import NirError
from trt_nm.nir.graph import graph_reset, require_dt, require_order
from trt_nm.nir.nodes import NODE_KINDS, NodeKind, arr, coefficients


def layer_kind(node: Any) -> str:
    """The node's layer kind (:attr:`trt_nm.nir.nodes.NodeKind.layer`): ``"input"``,
    ``"output"``, ``"dense"``, ``"conv"``, ``"avgpool"``, ``"sumpool"``, ``"flatten"``,
    ``"scale"``, ``"neuron"``, ``"delay"``, ``"graph"``, or ``"unknown"`` for a type the node
    table does not know."""
    kind = NODE_KINDS.get(type(node).__name__)
    return "unknown" if kind is None else kind.layer


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
        kind: see :func:`layer_kind`.
        neurons: neurons of a neuron node, output elements of other nodes (0 if unknown).
        synapses: connections of a weighted node (0 for others).
        weights: stored parameters of a weighted node (weights only, no bias).
        fan_in: per-neuron fan-in (neuron nodes), per-output fan-in (weighted nodes).
        fan_out: per-neuron fan-out (neuron nodes).
        kernel: kernel sides of conv/pool nodes.
        stride: strides of conv/pool nodes.
        beta: per-step membrane decay of nodes with time constants (the node table's
            ``decay``: ``1 - dt/tau`` for LIF/LI, ``1 - dt/tau_mem`` for CubaLIF/CubaLI, 1.0
            for IF/I; max over neurons), None for other nodes.
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

    @property
    def node_kind(self) -> NodeKind | None:
        """The node table's entry for :attr:`node_type` (None for an unknown type)."""
        return NODE_KINDS.get(self.node_type)

    @property
    def role(self) -> str:
        """The node table's role (``"weight"``, ``"neuron"``, ``"pool"``, ...; ``"unknown"``)."""
        return "unknown" if self.node_kind is None else self.node_kind.role

    @property
    def weighted(self) -> bool:
        """An Affine/Linear/Conv node (it holds synapses)."""
        return self.node_kind is not None and self.node_kind.weighted

    @property
    def neuron(self) -> bool:
        """A neuron model (LIF, IF, CubaLIF, LI, I, CubaLI, Threshold)."""
        return self.node_kind is not None and self.node_kind.neuron


@dataclass
class GraphSummary:
    """All :class:`LayerInfo` of a graph in topological order, plus graph-level facts."""

    layers: dict[str, LayerInfo]
    order: list[str]
    dt: float | None
    reset: str

    def neuron_layers(self) -> list[LayerInfo]:
        """Neuron nodes in topological order."""
        return [self.layers[n] for n in self.order if self.layers[n].neuron]

    def weighted_layers(self) -> list[LayerInfo]:
        """Affine/Linear/Conv nodes in topological order."""
        return [self.layers[n] for n in self.order if self.layers[n].weighted]

    @property
    def total_neurons(self) -> int:
        return sum(layer.neurons for layer in self.neuron_layers())

    @property
    def total_synapses(self) -> int:
        return sum(layer.synapses for layer in self.weighted_layers())

    @property
    def total_weights(self) -> int:
        return sum(layer.weights for layer in self.weighted_layers())


def _neuron_count(name: str, node: Any, kind: NodeKind) -> int:
    """Neurons of a neuron node: elements of its parameter arrays broadcast together."""
    shapes = [np.shape(arr(getattr(node, f))) for f in kind.params if getattr(node, f, None) is not None]
    try:
        return int(np.prod(np.broadcast_shapes(*shapes))) if shapes else 0
    except ValueError:
        raise NirError(f"node {name!r} ({kind.name}): parameter shapes {shapes} do not broadcast") from None


def analyze_graph(graph: Any, dt: float | None = None) -> GraphSummary:
    """Compute a :class:`GraphSummary` for ``graph`` (see the module docstring for the rules).

    ``dt`` in seconds (default ``metadata["dt"]``; a graph with neurons and neither raises
    :class:`~trt_nm.errors.NirError`, as do edges to missing nodes and cycles).
    """
    order = require_order(graph, who="target check")
    step = require_dt(graph, dt, who="target check")
    layers: dict[str, LayerInfo] = {}
    for name in order:
        node = graph.nodes[name]
        info = LayerInfo(name=name, node_type=type(node).__name__, kind=layer_kind(node))
        kind = info.node_kind
        if info.neuron:
            info.neurons = _neuron_count(name, node, kind)
            if kind.coefficients is not None:
                info.beta = float(np.max(coefficients(node, step)["decay"]))
        elif info.weighted:
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
        elif info.role == "pool":
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
        if info.weighted:
            return info.fan_in
        if info.neuron or info.kind == "input":
            return 1
        total = sum(fan_in_of(p) for p in info.predecessors)
        if info.role == "pool" and info.kernel:
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
        if info.neuron or info.kind == "output":
            return 1
        return sum(fan_out_of(s) for s in info.successors)

    for name in order:
        info = layers[name]
        if info.neuron:
            info.fan_in = sum(fan_in_of(p) for p in info.predecessors)
            info.fan_out = sum(fan_out_of(s) for s in info.successors)
    return GraphSummary(layers=layers, order=order, dt=step, reset=graph_reset(graph))
