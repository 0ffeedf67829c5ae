"""``from_nir``: run a NIR graph (ours or made elsewhere) as a torch module on a backend.

LIF nodes whose parameters map to the canonical neuron (uniform ``beta = 1 - dt/tau`` in
(0, 1), input gain ``r*dt/tau == 1``, ``v_leak == v_reset == 0``, uniform positive
threshold) become the chosen backend's neuron (``get_backend(name).neuron(NeuronConfig)``);
every other stateful node runs the equations of :mod:`trt_nm.nir.nodes`.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch import nn

from trt_nm.nir.nodes import STATEFUL_TYPES, arr, stateful_module, stateless_module
from trt_nm.nir.validate import (
    NirError,
    meta_str,
    read_nir,
    require_dt,
    topological_order,
    validate_graph,
)

_SUPPORTED = frozenset({
    "Input", "Output", "Affine", "Linear", "Scale", "Conv1d", "Conv2d", "SumPool2d",
    "AvgPool2d", "Flatten", "Threshold", "LIF", "CubaLIF", "CubaLI", "IF", "LI", "I",
})
_REL_TOL = 1e-9


def module_key(name: str) -> str:
    """The ``nn.ModuleDict`` key of a NIR node name (``.`` is not allowed in module names)."""
    return name.replace(".", "_") or "_"


def _uniform(a: np.ndarray) -> float | None:
    a = np.asarray(a).reshape(-1)
    return float(a[0]) if a.size and np.all(a == a[0]) else None


def canonical_config(node: Any, dt: float, reset: str, surrogate: str, scale: float):
    """The :class:`~trt_nm.config.NeuronConfig` a NIR LIF node is, or None if it is not one."""
    from trt_nm.config import NeuronConfig
    from trt_nm.errors import ConfigError

    if type(node).__name__ != "LIF":
        return None
    tau, r = arr(node.tau), arr(node.r)
    beta = _uniform(1.0 - dt / tau)
    gain = _uniform(r * dt / tau)
    thr = _uniform(arr(node.v_threshold))
    if beta is None or gain is None or thr is None:
        return None
    if abs(gain - 1.0) > _REL_TOL or np.any(arr(node.v_leak) != 0) or np.any(arr(node.v_reset) != 0):
        return None
    if not 0.0 < beta < 1.0 or thr <= 0:
        return None
    try:
        return NeuronConfig(beta=beta, threshold=thr, reset=reset, surrogate=surrogate,
                            surrogate_scale=scale)
    except ConfigError:
        return NeuronConfig(beta=beta, threshold=thr, reset=reset)


class NIRNetwork(nn.Module):
    """A NIR graph as a module: ``x [T, B, *input_shape] -> [T, B, *output_shape]``.

    ``nodes`` (an ``nn.ModuleDict`` keyed by :func:`module_key` of the NIR node names) holds one
    module per node, so forward hooks on e.g. ``net.nodes['body_2']`` see that layer's spikes
    ``[T, B, ...]``. Stateless nodes run once on the merged ``[T*B, ...]`` batch; stateful
    nodes loop over T. A node with several incoming edges receives their sum (edge order).
    """

    def __init__(self, graph: Any, neuron_factory, dt: float, reset: str, surrogate: str,
                 scale: float) -> None:
        super().__init__()
        order = topological_order(graph)
        ins = [n for n, v in graph.nodes.items() if type(v).__name__ == "Input"]
        outs = [n for n, v in graph.nodes.items() if type(v).__name__ == "Output"]
        if len(ins) != 1 or len(outs) != 1:
            raise NirError(f"from_nir needs exactly one Input and one Output node, got {len(ins)} and {len(outs)}")
        self.input_name, self.output_name = ins[0], outs[0]
        self.dt, self.reset_mode = dt, reset
        self.nodes = nn.ModuleDict()
        self.kinds: dict[str, str] = {}
        self.preds: dict[str, list[str]] = {n: [] for n in graph.nodes}
        for a, b in graph.edges:
            self.preds[b].append(a)
        keys: dict[str, str] = {}
        for name in order:
            node = graph.nodes[name]
            kind = type(node).__name__
            self.kinds[name] = kind
            key = module_key(name)
            if key in keys.values():
                raise NirError(f"NIR node names {name!r} and another map to the same module name {key!r}")
            keys[name] = key
            if kind in ("Input", "Output"):
                continue
            if kind in STATEFUL_TYPES:
                cfg = canonical_config(node, dt, reset, surrogate, scale)
                if cfg is not None and neuron_factory is not None:
                    self.nodes[key] = neuron_factory(cfg)
                else:
                    self.nodes[key] = stateful_module(node, dt, reset, surrogate, scale)
            else:
                self.nodes[key] = stateless_module(node)
        self.keys = keys
        self.order = [n for n in order if n != self.input_name]
        self.input_shape = tuple(int(s) for s in np.asarray(
            graph.nodes[self.input_name].input_type["input"]).reshape(-1))

    def neurons(self) -> list[tuple[str, nn.Module]]:
        """``(nir_node_name, module)`` of every stateful node, in execution order."""
        return [(n, self.nodes[self.keys[n]]) for n in self.order if self.kinds[n] in STATEFUL_TYPES]

    def run_all(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every node's output ``[T, B, ...]`` keyed by NIR node name (input included)."""
        if x.dim() < 2 or tuple(x.shape[2:]) != self.input_shape:
            from trt_nm.errors import ConfigError

            raise ConfigError(
                f"expected time-major input [T, B, {', '.join(map(str, self.input_shape))}], "
                f"got {list(x.shape)}"
            )
        T = x.shape[0]
        outs: dict[str, torch.Tensor] = {self.input_name: x}
        for name in self.order:
            preds = self.preds[name]
            h = outs[preds[0]]
            for p in preds[1:]:
                h = h + outs[p]
            kind = self.kinds[name]
            if kind == "Output":
                outs[name] = h
            elif kind in STATEFUL_TYPES:
                outs[name] = self.nodes[self.keys[name]](h)
            else:
                y = self.nodes[self.keys[name]](h.flatten(0, 1))
                outs[name] = y.unflatten(0, (T, -1))
        return outs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [T, B, *input_shape]`` -> output ``[T, B, *output_shape]`` (logits ``[T, B, C]``)."""
        return self.run_all(x)[self.output_name]


def build_network(graph: Any, backend: str | None, dt: float | None = None,
                  dtype: torch.dtype = torch.float32) -> NIRNetwork:
    """:class:`NIRNetwork` for a validated graph; ``backend=None`` uses generic NIR neurons."""
    for name, node in graph.nodes.items():
        kind = type(node).__name__
        if kind not in _SUPPORTED:
            raise NirError(
                f"node {name!r}: NIR {kind} is not supported by from_nir "
                f"(supported: {', '.join(sorted(_SUPPORTED))})"
            )
    if topological_order(graph) is None:
        raise NirError("recurrent NIR graphs (cycles through stateful nodes) are not supported by from_nir")
    dt_val = require_dt(graph, dt, who="from_nir")
    reset = meta_str(graph, "reset", "zero")
    if reset not in ("zero", "subtract"):
        raise NirError(f"graph metadata reset {reset!r} is not 'zero' or 'subtract'")
    surrogate = meta_str(graph, "surrogate", "triangle")
    try:
        scale = float(np.asarray((graph.metadata or {}).get("surrogate_scale", 1.0)).reshape(-1)[0])
    except (TypeError, ValueError):
        scale = 1.0
    factory = None
    if backend is not None:
        from trt_nm.neuron.backends import get_backend

        factory = get_backend(backend).neuron
    net = NIRNetwork(graph, factory, dt_val, reset, surrogate, scale)
    return net.to(dtype)


def from_nir(graph_or_path: Any, *, backend: str, dt: float | None = None,
             dtype: torch.dtype = torch.float32) -> NIRNetwork:
    """Build a runnable module from a NIR graph or file.

    Args:
        graph_or_path: a ``nir.NIRGraph`` or a path to a NIR (HDF5) file.
        backend: neuron backend for canonical LIF nodes, one of :func:`trt_nm.list_backends`.
        dt: timestep in seconds; ``metadata['dt']`` when None (a graph with neurons and neither
            raises :class:`NirError`: pass ``dt=1e-4`` for snnTorch/SpikingJelly exports).
        dtype: parameter dtype of the returned module (parameters are built from the file's
            float64/float32 arrays and rounded once).

    Returns:
        :class:`NIRNetwork` mapping ``[T, B, *input_shape]`` to ``[T, B, C]``.
    """
    if isinstance(graph_or_path, (str, os.PathLike)):
        graph = read_nir(graph_or_path)
    else:
        graph = graph_or_path
        validate_graph(graph)
    from trt_nm.neuron.backends import get_backend

    get_backend(backend)
    return build_network(graph, backend, dt, dtype)
