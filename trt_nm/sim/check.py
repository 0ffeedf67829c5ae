"""Is a NIR graph runnable? The one check ``trt-nm inspect``, ``simulate`` and ``report`` share.

It lives in the simulator's package because "runnable" means what the simulator can run: the
file and graph checks of :mod:`trt_nm.nir.validate`, a time step, then the simulator's own
compile-time checks.
"""

from __future__ import annotations

from typing import Any

from trt_nm.errors import NirError
from trt_nm.nir.graph import require_dt
from trt_nm.nir.validate import validate_graph
from trt_nm.sim.engine import Simulator


def validate_runnable(graph: Any, *, dt: float | None = None, where: str = "NIR graph") -> dict[str, tuple[int, ...]]:
    """The ONE check ``trt-nm inspect`` and ``trt-nm simulate`` share: :func:`validate_graph`,
    then a time step (``dt`` or ``metadata['dt']``) when the graph has neurons, then the
    simulator's own compile-time checks (:class:`~trt_nm.sim.engine.Simulator`: exactly one Input
    and one Output, feed-forward, supported node types, time constants > 0). Raises a one-line
    :class:`NirError` prefixed with ``where``; returns the batch-free output shape per node.
    """
    shapes = validate_graph(graph, where)
    require_dt(graph, dt, who=where)
    try:
        Simulator(graph, dt=dt)
    except NirError as exc:
        raise NirError(f"{where}: {exc}") from None
    if shapes is None:  # pragma: no cover - the simulator refuses recurrent graphs
        raise NirError(f"{where}: the graph is recurrent")
    return shapes
