"""Reading and validating NIR graphs: every failure is a one-line :class:`NirError`.

Checks (file level): missing file, not an HDF5 file, truncated/corrupt HDF5, no NIR ``node``
group, unknown node types. Checks (graph level, :func:`validate_graph`): edges to missing
nodes, missing Input/Output nodes, NaN/inf parameters, cycles with no stateful node, and
batch-free shape inference through the graph (mismatched shapes name the node and edge).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from trt_nm.errors import NirError
from trt_nm.nir.nodes import STATEFUL_TYPES, arr

#: NIR node types nir 1.0 can (de)serialise
KNOWN_TYPES = (
    "Affine", "AvgPool2d", "Conv1d", "Conv2d", "CubaLI", "CubaLIF", "Delay", "Flatten", "I",
    "IF", "Input", "LI", "LIF", "Linear", "NIRGraph", "Output", "Scale", "SumPool2d",
    "Threshold",
)
#: dt (seconds) that snnTorch and SpikingJelly assume when exporting NIR (and to_nir's default);
#: a graph without metadata "dt" is never given it silently -- see :func:`require_dt`
CONVENTIONAL_DT = 1e-4

_PARAM_FIELDS = (
    "weight", "bias", "scale", "tau", "tau_mem", "tau_syn", "r", "v_leak", "v_threshold",
    "v_reset", "w_in", "threshold", "delay",
)


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text or type(exc).__name__)[:200]


def _scan_types(group: Any, where: str) -> None:
    """Check every node's ``type`` in an open HDF5 node group (recursing into subgraphs)."""
    if "type" not in group:
        raise NirError(f"{where}: node has no 'type' entry (not a NIR node)")
    t = group["type"][()]
    t = t.decode("utf8", "replace") if isinstance(t, bytes) else str(t)
    if t not in KNOWN_TYPES:
        raise NirError(f"{where}: unknown NIR node type {t!r}; known types: {', '.join(KNOWN_TYPES)}")
    if t == "NIRGraph":
        if "nodes" not in group or "edges" not in group:
            raise NirError(f"{where}: NIRGraph without 'nodes'/'edges'")
        for name in group["nodes"]:
            _scan_types(group["nodes"][name], f"{where}/{name}" if where else name)


def read_nir(path: str | os.PathLike) -> Any:
    """Read and validate a NIR file (``nir.read``); every failure is a one-line :class:`NirError`.

    Returns:
        The ``nir.NIRGraph``, validated by :func:`validate_graph`.
    """
    import h5py
    import nir

    path = Path(path)
    if not path.exists():
        raise NirError(f"NIR file not found: {path}")
    if not path.is_file():
        raise NirError(f"NIR path is not a file: {path}")
    try:
        is_hdf5 = h5py.is_hdf5(path)
    except OSError as exc:
        raise NirError(f"{path}: cannot read file ({_first_line(exc)})") from None
    if not is_hdf5:
        raise NirError(f"{path}: not a NIR file (not HDF5)")
    try:
        with h5py.File(path, "r") as f:
            if "node" not in f:
                raise NirError(f"{path}: HDF5 file has no NIR 'node' group (not a NIR file)")
            _scan_types(f["node"], "")
    except NirError as exc:
        raise NirError(str(exc) if str(exc).startswith(str(path)) else f"{path}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - h5py raises OSError/KeyError/... on corrupt files
        raise NirError(f"{path}: truncated or corrupt HDF5 file ({_first_line(exc)})") from None
    try:
        graph = nir.read(path, type_check=False)
    except Exception as exc:  # noqa: BLE001 - nir raises assertion/value/key errors
        raise NirError(f"{path}: cannot decode NIR graph ({type(exc).__name__}: {_first_line(exc)})") from None
    validate_graph(graph, where=str(path))
    return graph


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
    t = getattr(node, "output_type", None)
    if not isinstance(t, dict) or not t:
        return None
    return _shape(next(iter(t.values())))


def topological_order(graph: Any) -> list[str] | None:
    """Node names in a topological order of the edges, or None when the graph has a cycle."""
    indeg = {n: 0 for n in graph.nodes}
    succ: dict[str, list[str]] = {n: [] for n in graph.nodes}
    for a, b in graph.edges:
        succ[a].append(b)
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


def _find_cycles(graph: Any) -> list[list[str]]:
    """Strongly connected components with a cycle (Tarjan), each as a list of node names."""
    succ: dict[str, list[str]] = {n: [] for n in graph.nodes}
    for a, b in graph.edges:
        succ[a].append(b)
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

    import sys

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
    return bool(_find_cycles(graph))


def graph_dt(graph: Any, dt: float | None = None) -> float | None:
    """The time step in seconds: ``dt`` if given, else ``metadata['dt']``, else None.

    The one place every reader of NIR graphs (``from_nir``, the simulator, the target exporters)
    takes dt from; a value that is not a positive finite number raises :class:`NirError`.
    """
    if dt is None:
        meta = getattr(graph, "metadata", None) or {}
        dt = meta.get("dt") if isinstance(meta, Mapping) else None
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
                f"time step explicitly (snnTorch and SpikingJelly export with dt = {CONVENTIONAL_DT:g} s)"
            )
    return val


def meta_str(graph: Any, key: str, default: str) -> str:
    """A string metadata entry (decoded from bytes/numpy as nir.read returns it); ``default``
    when absent or when the metadata is not a mapping."""
    meta = getattr(graph, "metadata", None) or {}
    v = meta.get(key, default) if isinstance(meta, Mapping) else default
    if isinstance(v, bytes):
        v = v.decode("utf8", "replace")
    if isinstance(v, np.ndarray):
        v = v.reshape(-1)[0] if v.size else default
        v = v.decode("utf8", "replace") if isinstance(v, bytes) else v
    return str(v)


def _node_out_shape(name: str, node: Any, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Batch-free output shape of ``node`` for batch-free input ``shape`` (raises NirError)."""
    import torch

    from trt_nm.nir.nodes import stateless_module

    kind = type(node).__name__
    if kind in ("Input", "Output", "Delay"):
        return shape
    if kind in STATEFUL_TYPES or kind in ("Scale", "Threshold"):
        for field in _PARAM_FIELDS:
            v = getattr(node, field, None)
            if v is None or field == "delay":
                continue
            ps = np.shape(arr(v))
            try:
                if np.broadcast_shapes(ps, shape) != shape:
                    raise ValueError
            except ValueError:
                raise NirError(
                    f"mismatched shapes: node {name!r} ({kind}) has {field} of shape {list(ps)} "
                    f"but receives input of shape {list(shape)}"
                ) from None
        return shape
    if kind in ("Affine", "Linear"):
        w = np.shape(arr(node.weight))
        if len(w) != 2 or not shape or shape[-1] != w[1]:
            raise NirError(
                f"mismatched shapes: node {name!r} ({kind}) has weight {list(w)} "
                f"but receives input of shape {list(shape)}"
            )
        if kind == "Affine" and np.shape(arr(node.bias)) not in ((w[0],), ()):
            raise NirError(f"mismatched shapes: node {name!r} has bias {list(np.shape(arr(node.bias)))} for {w[0]} outputs")
        return (*shape[:-1], w[0])
    if kind == "Flatten":
        declared = declared_input_shape(node)
        if declared is not None and declared != shape:
            raise NirError(
                f"mismatched shapes: Flatten node {name!r} declares input {list(declared)} "
                f"but receives {list(shape)}"
            )
    try:
        mod = stateless_module(node)
        with torch.no_grad():
            y = mod(torch.zeros((1, *shape), dtype=torch.float64, device="meta"))
    except NirError:
        raise
    except Exception as exc:  # noqa: BLE001 - torch reports impossible shapes in many ways
        raise NirError(
            f"mismatched shapes: node {name!r} ({kind}) cannot take input of shape "
            f"{list(shape)} ({_first_line(exc)})"
        ) from None
    return tuple(int(s) for s in y.shape[1:])


def infer_shapes(graph: Any) -> dict[str, tuple[int, ...]]:
    """Batch-free output shape of every node of an acyclic graph, checking every edge."""
    order = topological_order(graph)
    if order is None:
        raise NirError("cannot infer shapes of a recurrent graph")
    preds: dict[str, list[str]] = {n: [] for n in graph.nodes}
    for a, b in graph.edges:
        preds[b].append(a)
    out: dict[str, tuple[int, ...]] = {}
    for name in order:
        node = graph.nodes[name]
        kind = type(node).__name__
        if kind == "Input":
            shape = declared_input_shape(node)
            if shape is None:
                raise NirError(f"Input node {name!r} has no shape")
            out[name] = shape
            continue
        if not preds[name]:
            raise NirError(f"node {name!r} ({kind}) has no incoming edge and is not an Input node")
        shapes = [(p, out[p]) for p in preds[name]]
        first = shapes[0][1]
        for p, s in shapes[1:]:
            if s != first:
                raise NirError(
                    f"mismatched shapes: node {name!r} sums inputs of shape {list(first)} "
                    f"(from {shapes[0][0]!r}) and {list(s)} (from {p!r})"
                )
        declared = declared_input_shape(node)
        if (declared is not None and kind in ("Affine", "Linear", "Conv2d", "Conv1d")
                and declared != first):
            raise NirError(
                f"mismatched shapes: edge {shapes[0][0]!r} -> {name!r} carries {list(first)} "
                f"but {name!r} ({kind}) expects {list(declared)}"
            )
        out[name] = _node_out_shape(name, node, first)
        if kind == "Output":
            want = declared_output_shape(node)
            if want is not None and want and want != first:
                raise NirError(
                    f"mismatched shapes: Output node {name!r} declares {list(want)} "
                    f"but receives {list(first)}"
                )
    return out


def validate_graph(graph: Any, where: str = "NIR graph") -> dict[str, tuple[int, ...]] | None:
    """Validate a ``nir.NIRGraph`` in memory; raises a one-line :class:`NirError`.

    Returns:
        The inferred batch-free output shape per node (None for a recurrent graph, whose
        shapes are only checked node by node).
    """
    import nir

    if not isinstance(graph, nir.NIRGraph):
        raise NirError(f"{where}: expected a nir.NIRGraph, got {type(graph).__name__}")
    if not isinstance(graph.nodes, dict) or not graph.nodes:
        raise NirError(f"{where}: graph has no nodes")
    for name, node in graph.nodes.items():
        kind = type(node).__name__
        if kind not in KNOWN_TYPES:
            raise NirError(f"{where}: node {name!r} has unknown NIR node type {kind!r}")
        for field in _PARAM_FIELDS:
            v = getattr(node, field, None)
            if v is None or isinstance(v, (str, bytes)):
                continue
            try:
                a = arr(v)
            except (TypeError, ValueError):
                raise NirError(f"{where}: node {name!r} has a non-numeric {field}") from None
            if not np.all(np.isfinite(a)):
                bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
                raise NirError(f"{where}: node {name!r} ({kind}) has {bad} NaN/inf value(s) in {field}")
    for edge in graph.edges:
        if len(edge) != 2:
            raise NirError(f"{where}: malformed edge {edge!r}")
        a, b = edge
        for end in (a, b):
            if end not in graph.nodes:
                raise NirError(f"{where}: edge ({a!r}, {b!r}) refers to missing node {end!r}")
    if len(set(map(tuple, graph.edges))) != len(graph.edges):
        raise NirError(f"{where}: duplicate edge")
    kinds = [type(n).__name__ for n in graph.nodes.values()]
    if "Input" not in kinds:
        raise NirError(f"{where}: graph has no Input node")
    if "Output" not in kinds:
        raise NirError(f"{where}: graph has no Output node")
    cycles = _find_cycles(graph)
    for comp in cycles:
        if not any(type(graph.nodes[n]).__name__ in STATEFUL_TYPES for n in comp):
            raise NirError(
                f"{where}: cycle with no stateful node through {', '.join(map(repr, comp))} "
                "(its output at a timestep would depend on itself)"
            )
    if cycles:
        return None
    try:
        return infer_shapes(graph)
    except NirError as exc:
        raise NirError(f"{where}: {exc}") from None
