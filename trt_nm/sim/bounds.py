"""Integer-bound analysis: which node values are integers (spikes, sums of spikes), and how
large they can get.

A pooling node whose input is integer-valued with window sums below 2**24 may add the window's
elements in any order without rounding (the engine's strided-add pooling, see
``trt_nm.sim.layers._Pool``); everything else keeps torch's own kernel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def integer_bounds(order: Sequence[str], preds: Mapping[str, Sequence[str]],
                   nodes: Mapping[str, Any]) -> tuple[dict[str, float | None], dict[str, float | None]]:
    """``(output bound, input bound)`` per node: the largest magnitude of an integer-valued
    value, or None when it may not be an integer.

    Args:
        order: node names in execution (topological) order.
        preds: node name -> names of its predecessors (its input is their sum).
        nodes: node name -> compiled node (``kind``, ``spiking``; ``area`` for SumPool2d,
            ``scale`` for Scale).

    Spiking nodes emit 0/1; Flatten and Output pass their input on, SumPool2d multiplies the
    bound by its window area, a Scale by a uniform integer by ``|scale|``; anything else
    (Input included) may be fractional.
    """
    bound: dict[str, float | None] = {}
    inputs: dict[str, float | None] = {}
    for n in order:
        node, ps = nodes[n], preds[n]
        ins = [bound.get(p) for p in ps]
        b_in = sum(ins) if ps and all(b is not None for b in ins) else None  # type: ignore[arg-type]
        inputs[n] = b_in
        if node.spiking:
            bound[n] = 1.0
        elif b_in is None or node.kind == "Input":
            bound[n] = None
        elif node.kind in ("Flatten", "Output"):
            bound[n] = b_in
        elif node.kind == "SumPool2d":
            bound[n] = b_in * node.area
        elif node.kind == "Scale" and node.scale.uniform and float(node.scale.scalar).is_integer():
            bound[n] = b_in * abs(node.scale.scalar)
        else:
            bound[n] = None
    return bound, inputs
