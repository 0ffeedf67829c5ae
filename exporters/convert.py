"""Explicit graph conversions a target may need (``trt-nm export --convert NAME``).

Each conversion returns a NEW ``nir.NIRGraph`` (the input graph is not modified) and records
itself in ``metadata["conversions"]``. Registry: :func:`list_conversions`, :func:`get_conversion`.

* ``avgpool-to-sumpool`` (exact): ``AvgPool2d(k)`` -> ``SumPool2d(k)`` and the weights (not the
  biases) of every weighted node it feeds are divided by ``kh*kw``. Spikes do not change.
* ``leak-to-iaf`` (changes the model): every ``LIF`` becomes ``IF(r=1/dt, v_threshold, v_reset)``,
  i.e. ``v = v + x`` -- the leak is dropped. The simulator shows the effect on accuracy/spikes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np

from trt_nm.errors import ConfigError
from trt_nm.nir.graph import require_dt, successors
from trt_nm.nir.nodes import NODE_KINDS, coefficients
from trt_nm.registry import Registry

#: a graph conversion ``nir.NIRGraph -> nir.NIRGraph`` (returns a new graph)
Conversion = Callable[[Any], Any]
_CONVERSIONS: Registry[Conversion] = Registry("conversion")


def register_conversion(name: str) -> Callable[[Conversion], Conversion]:
    """Decorator registering a graph conversion under ``name``."""

    def deco(fn: Conversion) -> Conversion:
        return _CONVERSIONS.register(name, fn)

    return deco


def list_conversions() -> list[str]:
    """Registered conversion names."""
    return _CONVERSIONS.names()


def get_conversion(name: str) -> Conversion:
    """The conversion called ``name``; unknown names list the valid ones."""
    return _CONVERSIONS.get(name)


def copy_graph(graph: Any, nodes: dict | None = None, metadata: dict | None = None) -> Any:
    """A new ``nir.NIRGraph`` with (deep-copied) nodes, the same edges and updated metadata."""
    import nir

    new_nodes = copy.deepcopy(dict(graph.nodes)) if nodes is None else nodes
    meta = dict(getattr(graph, "metadata", None) or {})
    if metadata:
        meta.update(metadata)
    return nir.NIRGraph(nodes=new_nodes, edges=list(graph.edges), metadata=meta)


def _record(meta: dict, name: str) -> dict:
    done = [str(c) for c in np.atleast_1d(meta.get("conversions", []))] if "conversions" in meta else []
    return {"conversions": [*done, name]}


@register_conversion("avgpool-to-sumpool")
def avgpool_to_sumpool(graph: Any) -> Any:
    """Exact rewrite of average pooling as sum pooling with rescaled downstream weights."""
    import nir

    nodes = copy.deepcopy(dict(graph.nodes))
    succ = successors(graph)
    scale_of: dict[str, float] = {}
    for name, node in list(nodes.items()):
        if type(node).__name__ != "AvgPool2d":
            continue
        k = np.atleast_1d(np.asarray(node.kernel_size)).astype(int)
        area = float(np.prod(k) if k.size > 1 else k[0] * k[0])
        pool = nir.SumPool2d(kernel_size=node.kernel_size, stride=node.stride, padding=node.padding)
        pool.input_type, pool.output_type = node.input_type, node.output_type
        nodes[name] = pool
        # every weighted node reached through stateless reshape nodes gets 1/area
        stack = list(succ.get(name, []))
        while stack:
            s = stack.pop()
            kind = NODE_KINDS.get(type(nodes[s]).__name__)
            if kind is not None and kind.weighted:
                scale_of[s] = scale_of.get(s, 1.0) / area
            elif kind is not None and kind.role in ("reshape", "scale"):
                stack.extend(succ.get(s, []))
            else:
                raise ConfigError(
                    f"avgpool-to-sumpool: AvgPool2d {name!r} feeds {type(nodes[s]).__name__} {s!r}; "
                    "only a weighted layer can absorb the 1/k^2 factor"
                )
    for s, factor in scale_of.items():
        node = nodes[s]
        node.weight = np.asarray(node.weight) * factor
    meta = dict(getattr(graph, "metadata", None) or {})
    return copy_graph(graph, nodes, _record(meta, "avgpool-to-sumpool"))


@register_conversion("leak-to-iaf")
def leak_to_iaf(graph: Any) -> Any:
    """Replace every LIF by a non-leaky IF with the same threshold and input gain 1."""
    import nir

    dt = require_dt(graph, who="leak-to-iaf")
    nodes = copy.deepcopy(dict(graph.nodes))
    for name, node in list(nodes.items()):
        if type(node).__name__ != "LIF":
            continue
        c = coefficients(node, dt)  # threshold, and v_reset (0 where the node has none)
        thr = c["threshold"]
        nodes[name] = nir.IF(r=np.full_like(thr, 1.0 / dt), v_threshold=thr, v_reset=c["v_reset"])
    meta = dict(getattr(graph, "metadata", None) or {})
    return copy_graph(graph, nodes, _record(meta, "leak-to-iaf"))
