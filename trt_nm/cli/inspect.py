"""``trt-nm inspect FILE.nir``: validate a NIR file and print nodes, shapes, parameters, metadata."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from trt_nm.nir.graph import topological_order
from trt_nm.nir.nodes import arr, node_kind
from trt_nm.nir.validate import read_nir, validate_graph


def _fmt(v: Any) -> str:
    a = np.asarray(v)
    if a.size == 0:
        return "[]"
    if a.dtype.kind in "iu" and 1 < a.size <= 8:
        return str(a.reshape(-1).tolist())
    if a.dtype.kind in "fiu" and a.size > 1:
        lo, hi = float(a.min()), float(a.max())
        return f"{lo:g}" if lo == hi else f"{lo:g}..{hi:g}"
    if a.dtype.kind in "fiu":
        return f"{float(a.reshape(-1)[0]):g}"
    return str(v)


def run(args: argparse.Namespace) -> int:
    """Print the validated graph ``args.file``: one row per node, then totals and metadata."""
    graph = read_nir(args.file)
    shapes = validate_graph(graph, where=str(args.file)) or {}
    total = 0
    print(f"{args.file}: valid NIR graph, {len(graph.nodes)} nodes, {len(graph.edges)} edges")
    print(f"{'node':32s} {'type':10s} {'output shape':16s} {'params':>10s}  details")
    order = topological_order(graph) or sorted(graph.nodes)  # cycles through state: any order
    for name in order:
        node = graph.nodes[name]
        kind = node_kind(node)
        n = 0
        if kind.role in ("weight", "scale"):  # learned parameters (neuron constants not counted)
            for f in kind.params:
                v = getattr(node, f, None)
                if v is not None:
                    n += int(np.size(arr(v)))
        total += n
        details = ""
        if kind.stateful:
            details = " ".join(f"{f}={_fmt(arr(getattr(node, f)))}" for f in kind.params
                               if getattr(node, f, None) is not None)
        elif kind.layer == "conv":
            details = f"kernel={list(np.shape(arr(node.weight)))} stride={_fmt(node.stride)} padding={_fmt(node.padding)}"
        elif kind.role == "pool":
            details = f"kernel={_fmt(node.kernel_size)} stride={_fmt(node.stride)}"
        shape = shapes.get(name)
        print(f"{name:32s} {kind.name:10s} {str(list(shape)) if shape else '?':16s} {n:>10d}  {details}")
    print(f"parameters: {total}")
    meta = graph.metadata or {}
    for k in sorted(meta):
        v = meta[k]
        print(f"metadata {k} = {v.decode() if isinstance(v, bytes) else _fmt(v) if not isinstance(v, str) else v}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``inspect`` subcommand to ``sub``."""
    p = sub.add_parser("inspect", help="validate a NIR file and print its nodes and metadata")
    p.add_argument("file", help="NIR (HDF5) file")
    p.set_defaults(func=run)
