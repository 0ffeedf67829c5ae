"""``from_nir``: run a NIR graph (ours or made elsewhere) as a torch module on a backend.

LIF nodes whose coefficients (:func:`trt_nm.nir.nodes.coefficients`) map to the canonical
neuron (uniform ``decay = 1 - dt/tau`` in (0, 1), input gain ``r*dt/tau == 1``, no leak,
``v_reset == 0``, uniform positive threshold) become the chosen backend's neuron
(``get_backend(name).neuron(NeuronConfig)``); every other stateful node runs the generic
modules of :mod:`trt_nm.nir.modules`, built from the same coefficients.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from trt_nm.config import NeuronConfig
from trt_nm.errors import ConfigError, NirError
from trt_nm.neuron.backends import get_backend
from trt_nm.neuron.surrogate import get_surrogate, list_surrogates
from trt_nm.nir.graph import (
    declared_input_shape,
    graph_reset,
    meta_str,
    meta_value,
    predecessors,
    require_dt,
    require_order,
    topological_order,
)
from trt_nm.nir.modules import stateful_module, stateless_module
from trt_nm.nir.nodes import NODE_KINDS, coefficients, kinds_where, node_kind
from trt_nm.nir.validate import normalize_graph, read_nir

#: NIR node types ``from_nir`` runs (the node table's simulated kinds)
SUPPORTED_TYPES = frozenset(kinds_where(simulated=True))
_REL_TOL = 1e-9


def module_key(name: str) -> str:
    """The ``nn.ModuleDict`` key of a NIR node name (``.`` is not allowed in module names)."""
    return name.replace(".", "_") or "_"


def _uniform(a: np.ndarray) -> float | None:
    a = np.asarray(a).reshape(-1)
    return float(a[0]) if a.size and np.all(a == a[0]) else None


def canonical_config(node: Any, dt: float, reset: str, surrogate: str,
                     scale: float) -> NeuronConfig | None:
    """The :class:`~trt_nm.config.NeuronConfig` a NIR LIF node is, or None if it is not one.

    ``dt`` in seconds; ``reset``, ``surrogate`` and ``scale`` as validated by
    :func:`graph_surrogate` and :func:`~trt_nm.nir.graph.graph_reset`.
    """
    if type(node).__name__ != "LIF":
        return None
    c = coefficients(node, dt)
    beta = _uniform(c["decay"])
    gain = _uniform(c["gain"])
    thr = _uniform(c["threshold"])
    if beta is None or gain is None or thr is None:
        return None
    if abs(gain - 1.0) > _REL_TOL or np.any(c["leak"] != 0) or np.any(c["v_reset"] != 0):
        return None
    if not 0.0 < beta < 1.0 or thr <= 0:
        return None
    return NeuronConfig(beta=beta, threshold=thr, reset=reset, surrogate=surrogate,
                        surrogate_scale=scale)


def graph_surrogate(graph: Any) -> tuple[str, float]:
    """``(name, scale)`` of the surrogate gradient in the graph metadata (``surrogate``,
    ``surrogate_scale``): absent entries mean triangle and the surrogate's default scale; an
    unknown name or a scale that is not a positive finite number raises :class:`NirError`."""
    name = meta_str(graph, "surrogate", "triangle")
    valid = list_surrogates()
    if name not in valid:
        raise NirError(
            f"graph metadata surrogate {name!r} is not a registered surrogate; "
            f"valid surrogates: {', '.join(sorted(valid))}"
        )
    raw = meta_value(graph, "surrogate_scale")
    if raw is None:
        return name, get_surrogate(name).default_scale
    try:
        scale = float(np.asarray(raw, dtype=np.float64).reshape(-1)[0])
    except (TypeError, ValueError, IndexError):
        scale = float("nan")
    if not (np.isfinite(scale) and scale > 0):
        shown = raw.reshape(-1).tolist() if isinstance(raw, np.ndarray) else raw
        raise NirError(
            f"graph metadata surrogate_scale {shown!r} is not valid; it must be a positive "
            f"finite number (the {name} surrogate's default is {get_surrogate(name).default_scale:g})"
        )
    return name, scale


class NIRNetwork(nn.Module):
    """A NIR graph as a module: ``x [T, B, *input_shape] -> [T, B, *output_shape]``.

    ``nodes`` (an ``nn.ModuleDict`` keyed by :func:`module_key` of the NIR node names) holds one
    module per node, so forward hooks on e.g. ``net.nodes['body_2']`` see that layer's spikes
    ``[T, B, ...]``. Stateless nodes run once on the merged ``[T*B, ...]`` batch; stateful
    nodes loop over T. A node with several incoming edges receives their sum (edge order).
    """

    def __init__(self, graph: Any, neuron_factory: Callable[[NeuronConfig], nn.Module] | None,
                 dt: float, reset: str, surrogate: str, scale: float) -> None:
        super().__init__()
        order = require_order(graph, who="from_nir")
        ins = [n for n, v in graph.nodes.items() if type(v).__name__ == "Input"]
        outs = [n for n, v in graph.nodes.items() if type(v).__name__ == "Output"]
        if len(ins) != 1 or len(outs) != 1:
            raise NirError(f"from_nir needs exactly one Input and one Output node, got {len(ins)} and {len(outs)}")
        self.input_name, self.output_name = ins[0], outs[0]
        self.dt, self.reset_mode = dt, reset
        self.nodes = nn.ModuleDict()
        self.kinds: dict[str, str] = {}
        self.preds = predecessors(graph)
        keys: dict[str, str] = {}
        for name in order:
            node = graph.nodes[name]
            kind = node_kind(node)
            self.kinds[name] = kind.name
            key = module_key(name)
            if key in keys.values():
                raise NirError(f"NIR node names {name!r} and another map to the same module name {key!r}")
            keys[name] = key
            if kind.role == "io":
                continue
            if kind.stateful:
                cfg = canonical_config(node, dt, reset, surrogate, scale)
                if cfg is not None and neuron_factory is not None:
                    self.nodes[key] = neuron_factory(cfg)
                else:
                    self.nodes[key] = stateful_module(node, dt, reset, surrogate, scale)
            else:
                self.nodes[key] = stateless_module(node)
        self.keys = keys
        self.order = [n for n in order if n != self.input_name]
        shape = declared_input_shape(graph.nodes[self.input_name])
        if shape is None:
            raise NirError(f"Input node {self.input_name!r} has no shape")
        self.input_shape = shape

    def neurons(self) -> list[tuple[str, nn.Module]]:
        """``(nir_node_name, module)`` of every stateful node, in execution order."""
        return [(n, self.nodes[self.keys[n]]) for n in self.order if NODE_KINDS[self.kinds[n]].stateful]

    def run_all(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every node's output ``[T, B, ...]`` keyed by NIR node name (input included)."""
        if x.dim() < 2 or tuple(x.shape[2:]) != self.input_shape:
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
            kind = NODE_KINDS[self.kinds[name]]
            if kind.role == "io":
                outs[name] = h
            elif kind.stateful:
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
        if kind not in SUPPORTED_TYPES:
            raise NirError(
                f"node {name!r}: NIR {kind} is not supported by from_nir "
                f"(supported: {', '.join(sorted(SUPPORTED_TYPES))})"
            )
    if topological_order(graph) is None:
        raise NirError("recurrent NIR graphs (cycles through stateful nodes) are not supported by from_nir")
    dt_val = require_dt(graph, dt, who="from_nir")
    reset = graph_reset(graph)
    surrogate, scale = graph_surrogate(graph)
    factory = None if backend is None else get_backend(backend).neuron
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
    else:  # an in-memory graph: validated, a Norse-style batch dimension of 1 dropped
        graph = normalize_graph(graph_or_path)
    get_backend(backend)
    return build_network(graph, backend, dt, dtype)
