"""``trt-nm inspect FILE.nir [--dt S]``: validate a NIR file and print nodes, shapes, parameters,
metadata.

"valid" means what ``trt-nm simulate`` would run: both commands call
:func:`trt_nm.sim.check.validate_runnable` (a graph with neurons needs ``metadata['dt']`` or
``--dt``). Weights of absurd magnitude (:func:`trt_nm.nir.validate.weight_outliers`) and a
dropped Norse-style batch dimension are reported as ``note:`` lines on stdout.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from trt_nm.limits import arg_type, check_float
from trt_nm.nir.graph import topological_order
from trt_nm.nir.nodes import arr, node_kind
from trt_nm.nir.validate import NOTE_KEY, read_nir, weight_outliers
from trt_nm.sim.check import validate_runnable


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
    shapes = validate_runnable(graph, dt=args.dt, where=str(args.file))
    total = 0
    print(f"{args.file}: valid NIR graph, {len(graph.nodes)} nodes, {len(graph.edges)} edges")
    notes = [str(graph.metadata[NOTE_KEY])] if NOTE_KEY in (graph.metadata or {}) else []
    notes += [f"absurd weight magnitude in {line}; a corrupt or bit-flipped file?" for line in weight_outliers(graph)]
    for note in notes:
        print(f"note: {note}")
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
    for k in sorted(set(meta) - {NOTE_KEY}):
        v = meta[k]
        print(f"metadata {k} = {v.decode() if isinstance(v, bytes) else _fmt(v) if not isinstance(v, str) else v}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``inspect`` subcommand to ``sub``."""
    p = sub.add_parser("inspect", help="validate a NIR file and print its nodes and metadata")
    p.add_argument("file", help="NIR (HDF5) file")
    p.add_argument("--dt", type=arg_type(check_float, name="--dt", low=0.0, low_open=True), default=None,
                   help="time step in s for a graph without metadata dt (as simulate --dt)")
    p.set_defaults(func=run)
