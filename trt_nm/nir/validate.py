"""Reading and validating NIR graphs: every failure is a one-line :class:`NirError`.

Checks (file level): missing file, not an HDF5 file, truncated/corrupt HDF5, no NIR ``node``
group, unknown node types. Checks (graph level, :func:`validate_graph`): edges to missing
nodes, missing Input/Output nodes, NaN/inf parameters, cycles with no stateful node, and
batch-free shape inference through the graph (mismatched shapes name the node and edge).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trt_nm.errors import NirError
from trt_nm.nir.graph import (
    declared_input_shape,
    declared_output_shape,
    find_cycles,
    predecessors,
    topological_order,
)
from trt_nm.nir.modules import stateless_module
from trt_nm.nir.nodes import NODE_KINDS, arr, node_kind

#: NIR node types nir 1.0 can (de)serialise (the node table's names, sorted)
KNOWN_TYPES = tuple(sorted(NODE_KINDS))


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
    if NODE_KINDS[t].role == "graph":
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


def _node_out_shape(name: str, node: Any, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Batch-free output shape of ``node`` for batch-free input ``shape`` (raises NirError)."""
    kind = node_kind(node)
    if kind.role in ("io", "delay"):
        return shape
    if kind.layer in ("neuron", "scale"):  # elementwise: every parameter broadcasts to the input
        for field in kind.params:
            v = getattr(node, field, None)
            if v is None:
                continue
            ps = np.shape(arr(v))
            try:
                if np.broadcast_shapes(ps, shape) != shape:
                    raise ValueError
            except ValueError:
                raise NirError(
                    f"mismatched shapes: node {name!r} ({kind.name}) has {field} of shape {list(ps)} "
                    f"but receives input of shape {list(shape)}"
                ) from None
        return shape
    if kind.layer == "dense":
        w = np.shape(arr(node.weight))
        if len(w) != 2 or not shape or shape[-1] != w[1]:
            raise NirError(
                f"mismatched shapes: node {name!r} ({kind.name}) has weight {list(w)} "
                f"but receives input of shape {list(shape)}"
            )
        if "bias" in kind.params and np.shape(arr(node.bias)) not in ((w[0],), ()):
            raise NirError(f"mismatched shapes: node {name!r} has bias {list(np.shape(arr(node.bias)))} for {w[0]} outputs")
        return (*shape[:-1], w[0])
    if not kind.simulated:
        raise NirError(f"node {name!r}: shapes through a nested {kind.name} cannot be inferred")
    if kind.role == "reshape":
        declared = declared_input_shape(node)
        if declared is not None and declared != shape:
            raise NirError(
                f"mismatched shapes: {kind.name} node {name!r} declares input {list(declared)} "
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
            f"mismatched shapes: node {name!r} ({kind.name}) cannot take input of shape "
            f"{list(shape)} ({_first_line(exc)})"
        ) from None
    return tuple(int(s) for s in y.shape[1:])


def infer_shapes(graph: Any) -> dict[str, tuple[int, ...]]:
    """Batch-free output shape of every node of an acyclic graph, checking every edge."""
    order = topological_order(graph)
    if order is None:
        raise NirError("cannot infer shapes of a recurrent graph")
    preds = predecessors(graph)
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
        if declared is not None and node_kind(node).weighted and declared != first:
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
        if kind not in NODE_KINDS:
            raise NirError(f"{where}: node {name!r} has unknown NIR node type {kind!r}")
        for field in NODE_KINDS[kind].params:
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
    cycles = find_cycles(graph)
    for comp in cycles:
        if not any(node_kind(graph.nodes[n]).stateful for n in comp):
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
