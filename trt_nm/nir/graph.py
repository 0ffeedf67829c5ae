"""Graph utilities every NIR reader shares, written once: order, cycles, dt, metadata, shapes.

A "graph" is anything with ``nodes`` (name -> NIR node) and ``edges`` (``(src, dst)`` pairs),
usually a ``nir.NIRGraph``. Every failure is a one-line :class:`~trt_nm.errors.NirError`.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import numpy as np

from trt_nm.config import RESET_MODES
from trt_nm.errors import ConfigError, NirError
from trt_nm.limits import check_T
from trt_nm.nir.nodes import STATEFUL_TYPES

#: dt (seconds) that snnTorch and SpikingJelly assume when exporting NIR (and to_nir's default);
#: a graph without metadata "dt" is never given it silently -- see :func:`require_dt`
CONVENTIONAL_DT = 1e-4


def _missing_end(graph: Any, a: str, b: str) -> NirError:
    end = a if a not in graph.nodes else b
    return NirError(f"graph edge ({a!r}, {b!r}) refers to missing node {end!r}")


def predecessors(graph: Any) -> dict[str, list[str]]:
    """Node name -> names of the nodes with an edge into it (edge order); an edge to a missing
    node raises :class:`NirError`."""
    preds: dict[str, list[str]] = {n: [] for n in graph.nodes}
    for a, b in graph.edges:
        if a not in preds or b not in preds:
            raise _missing_end(graph, a, b)
        preds[b].append(a)
    return preds


def successors(graph: Any) -> dict[str, list[str]]:
    """Node name -> names of the nodes it has an edge to (edge order); an edge to a missing
    node raises :class:`NirError`."""
    succ: dict[str, list[str]] = {n: [] for n in graph.nodes}
    for a, b in graph.edges:
        if a not in succ or b not in succ:
            raise _missing_end(graph, a, b)
        succ[a].append(b)
    return succ


def topological_order(graph: Any) -> list[str] | None:
    """Node names in a topological order of the edges (ties in node order), or None when the
    graph has a cycle (an edge to a missing node raises :class:`NirError`)."""
    indeg = {n: 0 for n in graph.nodes}
    succ = successors(graph)
    for _, b in graph.edges:
        indeg[b] += 1
    ready = [n for n in graph.nodes if indeg[n] == 0]
    order: list[str] = []
    while ready:
        n = ready.pop(0)
        order.append(n)
        for m in succ[n]:
            indeg[m] -= 1
            if indeg[m] == 0:
                ready.append(m)
    return order if len(order) == len(graph.nodes) else None


def require_order(graph: Any, *, who: str = "this graph") -> list[str]:
    """:func:`topological_order` of a feed-forward graph; an edge to a missing node or a cycle
    raises a one-line :class:`NirError` naming ``who`` needs the order."""
    try:
        order = topological_order(graph)
    except NirError as exc:
        raise NirError(f"{who}: {exc}") from None
    if order is None:
        cyc = sorted(n for comp in find_cycles(graph) for n in comp)
        raise NirError(
            f"{who}: the graph is recurrent (cycle through {', '.join(map(repr, cyc[:5]))}); "
            "only feed-forward graphs are supported"
        )
    return order


def find_cycles(graph: Any) -> list[list[str]]:
    """Strongly connected components with a cycle (Tarjan), each as a sorted list of names."""
    succ = successors(graph)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in succ[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in succ[v]:
                out.append(sorted(comp))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(graph.nodes) + 100))
    try:
        for v in graph.nodes:
            if v not in index:
                strong(v)
    finally:
        sys.setrecursionlimit(limit)
    return out


def is_recurrent(graph: Any) -> bool:
    """Whether the graph has a cycle (every cycle has a stateful node once validated)."""
    return bool(find_cycles(graph))


def _metadata(graph: Any) -> Mapping:
    meta = getattr(graph, "metadata", None) or {}
    return meta if isinstance(meta, Mapping) else {}


def graph_dt(graph: Any, dt: float | None = None) -> float | None:
    """The time step in seconds: ``dt`` if given, else ``metadata['dt']``, else None.

    The one place every reader of NIR graphs (``from_nir``, the simulator, the target exporters)
    takes dt from; a value that is not a positive finite number raises :class:`NirError`.
    """
    if dt is None:
        dt = _metadata(graph).get("dt")
        if dt is None:
            return None
        where = "graph metadata 'dt'"
    else:
        where = "dt"
    try:
        val = float(np.asarray(dt, dtype=np.float64).reshape(-1)[0])
    except (TypeError, ValueError, IndexError):
        raise NirError(f"{where} must be a number, got {dt!r}") from None
    if not np.isfinite(val) or val <= 0:
        raise NirError(f"{where} must be a positive finite number of seconds, got {val}")
    return val


def require_dt(graph: Any, dt: float | None = None, *, who: str = "this graph") -> float | None:
    """:func:`graph_dt`, or a one-line :class:`NirError` when the graph has neurons (which need
    dt) and neither ``dt`` nor the metadata gives one. None for graphs without neurons."""
    val = graph_dt(graph, dt)
    if val is None:
        timed = [n for n, v in graph.nodes.items() if type(v).__name__ in STATEFUL_TYPES]
        if timed:
            raise NirError(
                f"{who}: the graph has neurons ({timed[0]!r}, ...) but no metadata 'dt'; give the "
                f"time step explicitly (dt=..., --dt on the command line; snnTorch and SpikingJelly "
                f"export with dt = {CONVENTIONAL_DT:g} s)"
            )
    return val


def meta_str(graph: Any, key: str, default: str) -> str:
    """A string metadata entry (decoded from bytes/numpy as nir.read returns it); ``default``
    when absent or when the metadata is not a mapping."""
    v = _metadata(graph).get(key, default)
    if isinstance(v, bytes):
        v = v.decode("utf8", "replace")
    if isinstance(v, np.ndarray):
        v = v.reshape(-1)[0] if v.size else default
        v = v.decode("utf8", "replace") if isinstance(v, bytes) else v
    return str(v)


def meta_value(graph: Any, key: str) -> Any:
    """The raw metadata entry ``key`` (None when absent or the metadata is not a mapping)."""
    return _metadata(graph).get(key)


def graph_T(graph: Any) -> int | None:
    """``metadata['T']`` (timesteps the graph was trained for) as an int, or None when absent.

    Checked by :func:`trt_nm.limits.check_T` like ``-T`` on the command line: a value that is
    not an integer in ``[1, MAX_T]`` (``b'four'``, ``[4, 5]``, ``2.7``, ``0``, ``10**9``)
    raises a one-line :class:`NirError`.
    """
    v = _metadata(graph).get("T")
    if v is None:
        return None
    if isinstance(v, np.ndarray):
        v = v.reshape(-1)[0] if v.size == 1 else v.tolist()
    if isinstance(v, bytes):
        v = v.decode("utf8", "replace")
    if isinstance(v, np.generic):
        v = v.item()
    try:
        return check_T(v, where="graph metadata")
    except ConfigError as exc:
        raise NirError(str(exc)) from None


def graph_reset(graph: Any) -> str:
    """The reset rule of the graph's spiking nodes: ``metadata['reset']`` or NIR's ``"zero"``;
    any other value than ``"zero"``/``"subtract"`` raises :class:`NirError`."""
    reset = meta_str(graph, "reset", "zero")
    if reset not in RESET_MODES:
        raise NirError(f"graph metadata reset {reset!r} is not one of: {', '.join(RESET_MODES)}")
    return reset


def _shape(value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    a = np.asarray(value.detach().cpu() if hasattr(value, "detach") else value).reshape(-1)
    if a.dtype == object or any(x is None for x in a.tolist()):
        return None
    return tuple(int(x) for x in a)


def declared_input_shape(node: Any) -> tuple[int, ...] | None:
    """The node's declared batch-free input shape (None when it does not declare one)."""
    t = getattr(node, "input_type", None)
    if not isinstance(t, dict) or not t:
        return None
    return _shape(next(iter(t.values())))


def declared_output_shape(node: Any) -> tuple[int, ...] | None:
    """The node's declared batch-free output shape (None when it does not declare one)."""
    t = getattr(node, "output_type", None)
    if not isinstance(t, dict) or not t:
        return None
    return _shape(next(iter(t.values())))
