"""Reading and validating NIR graphs: every failure is a one-line :class:`NirError`.

Every file is hostile until checked. :func:`read_nir`, in this order, before ``nir.read``
reads any array:

1. the path is a file and an HDF5 file (not truncated or corrupt);
2. the tree under ``node`` reads data only from this file (:func:`trt_nm.h5safe.walk`): no
   external or soft links, no external storage, no virtual datasets, no filter that needs a
   plugin, no object linked twice (cycles);
3. declared sizes (:func:`check_declared_sizes`): every array's shape passes
   :func:`trt_nm.limits.check_shape`, a weighted node's output features / channels pass
   :data:`trt_nm.limits.MAX_WIDTH`, and the file's arrays as stored plus the float64 copy the
   validator makes pass :func:`trt_nm.limits.check_memory` -- so a 2,000,000 x 784 Affine
   declared in a 1 MB file is refused in milliseconds;
4. node types are known, integer layer arguments (stride, padding, dilation, groups, kernel)
   are in range;
5. ``nir.read``, then :func:`validate_graph`, then :func:`normalize_graph` (a leading batch
   dimension of 1 on Input/Output, as Norse writes, is dropped with a metadata note).

Warnings raised by h5py/numpy/nir/torch while a file is read and validated are caught locally
(``warnings.catch_warnings``, never a global filter, :func:`file_warnings`): a RuntimeWarning
(numpy's divide by zero, overflow, invalid value) means the file is bad and becomes (part of)
the one-line error; any other warning is re-emitted when the file is good, dropped when not.

Graph level (:func:`validate_graph`): edges to missing nodes, missing Input/Output nodes,
NaN/inf parameters, integer layer arguments, metadata ``dt``/``T``/``reset`` (when present),
cycles with no stateful node, and batch-free shape inference through the graph (mismatched
shapes name the node and edge; per-sample activations pass :func:`trt_nm.limits.check_shape`).

Runnable (:func:`trt_nm.sim.check.validate_runnable`, what ``trt-nm inspect`` and ``trt-nm simulate`` both
call): :func:`validate_graph` plus everything the simulator checks when it compiles the graph
(a time step when there are neurons, exactly one Input and one Output, feed-forward, supported
node types, time constants > 0) -- so ``inspect`` says "valid" exactly when ``simulate`` runs.

Weights (:func:`weight_outliers`): a weight whose magnitude passes
:data:`OUTLIER_RATIO` x the median nonzero magnitude of its layer (a flipped exponent bit, a
corrupt file) is reported; ``trt-nm export`` refuses such a graph unless
``--allow-outlier-weights`` is given.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trt_nm import h5safe
from trt_nm.errors import ConfigError, NirError
from trt_nm.limits import MAX_INPUT_SIDE, MAX_WIDTH, check_int, check_memory, check_shape
from trt_nm.nir.graph import (
    declared_input_shape,
    declared_output_shape,
    find_cycles,
    graph_dt,
    graph_reset,
    graph_T,
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


#: warnings that mean the file is bad: numpy's floating-point RuntimeWarnings (a divide by
#: zero from a stride of 0, an overflow, an invalid value) while nir/h5py decode its numbers.
#: Every other warning (a library's deprecation, torch's performance hints) is re-emitted.
_BAD_FILE_WARNINGS = (RuntimeWarning,)


@contextmanager
def file_warnings(where: str) -> Iterator[None]:
    """Catch the warnings raised inside the block (locally, never a global filter).

    A warning that means the input is bad (:data:`_BAD_FILE_WARNINGS`) is raised as a one-line
    :class:`NirError` (or, when the block raised a NirError/ConfigError, appended to that
    error's message, so stderr holds one line). Other warnings are re-emitted after a
    successful block, through the normal filters; after an error they are dropped.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        except NirError as exc:
            bad = [w for w in caught if issubclass(w.category, _BAD_FILE_WARNINGS)]
            raise NirError(_with_warning(str(exc), bad)) from None
        except ConfigError as exc:
            bad = [w for w in caught if issubclass(w.category, _BAD_FILE_WARNINGS)]
            raise NirError(_with_warning(f"{where}: {exc}", bad)) from None
    bad = [w for w in caught if issubclass(w.category, _BAD_FILE_WARNINGS)]
    if bad:
        raise NirError(f"{where}: {_describe(bad[0])}" + (f" (and {len(bad) - 1} more warnings)" if len(bad) > 1 else ""))
    for w in caught:  # none of them is _BAD_FILE_WARNINGS here
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)


def _describe(w: warnings.WarningMessage) -> str:
    return f"{w.category.__name__} while reading: {_first_line(w.message)}"


def _with_warning(msg: str, bad: list) -> str:
    return msg if not bad else f"{msg}; {_describe(bad[0])}"


#: integer arguments of layer nodes: field -> (lowest, highest) allowed value
_INT_FIELDS = {
    "Conv1d": {"stride": (1, MAX_INPUT_SIDE), "padding": (0, MAX_INPUT_SIDE),
               "dilation": (1, MAX_INPUT_SIDE), "groups": (1, MAX_WIDTH)},
    "AvgPool2d": {"kernel_size": (1, MAX_INPUT_SIDE), "stride": (1, MAX_INPUT_SIDE),
                  "padding": (0, MAX_INPUT_SIDE)},
}
_INT_FIELDS["Conv2d"] = _INT_FIELDS["Conv1d"]
_INT_FIELDS["SumPool2d"] = _INT_FIELDS["AvgPool2d"]


def check_int_fields(name: str, kind: str, values: dict[str, Any]) -> None:
    """Integer layer arguments (stride, padding, dilation, groups, kernel size) of node ``name``
    in range: e.g. a stride of 0 is refused (it would divide by zero). Strides, kernels and
    padding are bounded by :data:`~trt_nm.limits.MAX_INPUT_SIDE`, groups by
    :data:`~trt_nm.limits.MAX_WIDTH`."""
    for field, (low, high) in _INT_FIELDS.get(kind, {}).items():
        v = values.get(field)
        if v is None or isinstance(v, (str, bytes)):  # absent, or a padding mode such as "same"
            continue
        for x in np.asarray(v).reshape(-1).tolist() or [None]:
            try:
                check_int(x, f"node {name!r} ({kind}) {field}", low, high)
            except ConfigError as exc:
                raise NirError(str(exc)) from None


def _scan_types(group: Any, where: str) -> None:
    """Check every node's ``type`` in an open HDF5 node group (recursing into subgraphs), the
    output width of weighted nodes and the integer arguments of layer nodes (the tree's
    safety and sizes are checked before)."""
    import h5py

    if not isinstance(group, h5py.Group) or "type" not in group:
        raise NirError(f"{where}: node has no 'type' entry (not a NIR node)")
    t = group["type"][()]
    t = t.decode("utf8", "replace") if isinstance(t, bytes) else str(t)
    if t not in KNOWN_TYPES:
        raise NirError(f"{where}: unknown NIR node type {t!r}; known types: {', '.join(KNOWN_TYPES)}")
    kind = NODE_KINDS[t]
    if kind.role == "graph":
        if "nodes" not in group or "edges" not in group:
            raise NirError(f"{where}: NIRGraph without 'nodes'/'edges'")
        for name in group["nodes"]:
            _scan_types(group["nodes"][name], f"{where}/{name}" if where else name)
        return
    name = where.rsplit("/", 1)[-1]
    if kind.weighted and isinstance(group.get("weight"), h5py.Dataset):
        shape = group["weight"].shape or ()
        what = "output features" if kind.layer == "dense" else "output channels"
        if shape:
            try:
                check_int(shape[0], f"node {name!r} ({t}) {what}", 0, MAX_WIDTH)
                if kind.layer == "conv" and len(shape) > 1:
                    check_int(shape[1], f"node {name!r} ({t}) input channels per group", 0, MAX_WIDTH)
            except ConfigError as exc:
                raise NirError(str(exc)) from None
    if t in _INT_FIELDS:
        values = {}
        for field in _INT_FIELDS[t]:
            ds = group.get(field)
            if isinstance(ds, h5py.Dataset):
                v = ds[()]
                values[field] = v.decode("utf8", "replace") if isinstance(v, bytes) else v
        check_int_fields(name, t, values)


def check_declared_sizes(datasets: list[tuple[str, Any]], where: str) -> int:
    """Refuse, before reading, arrays whose declared shapes pass :func:`check_shape` or whose
    total (as stored, plus the float64 copy the validator makes of each) passes
    :func:`check_memory`. Returns the total in bytes."""
    total = 0
    for path, ds in datasets:
        shape = ds.shape or ()
        try:
            dims = check_shape(shape, f"array {path!r}")
        except ConfigError as exc:
            raise NirError(f"{where}: {exc}") from None
        total += h5safe.declared_nbytes(ds) + 8 * math.prod(dims)
    try:
        check_memory(total, "reading its arrays (as stored, plus a float64 copy)")
    except ConfigError as exc:
        raise NirError(f"{where}: {exc}") from None
    return total


def _read_checked(path: Path) -> Any:
    import h5py
    import nir

    where = str(path)
    try:
        f = h5py.File(path, "r")
    except Exception as exc:  # noqa: BLE001 - h5py raises OSError and others on corrupt files
        raise NirError(f"{where}: truncated or corrupt HDF5 file ({_first_line(exc)})") from None
    try:
        with f:
            node = h5safe.hard_child(f, "node", path="node", where=where, error=NirError)
            if not isinstance(node, h5py.Group):
                raise NirError(f"{where}: HDF5 file has no NIR 'node' group (not a NIR file)")
            datasets = h5safe.walk(node, where=where, error=NirError, path="node")
            check_declared_sizes(datasets, where)
            _scan_types(node, "")
    except NirError as exc:
        raise NirError(str(exc) if str(exc).startswith(where) else f"{where}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - h5py raises OSError/KeyError/... on corrupt files
        raise NirError(f"{where}: truncated or corrupt HDF5 file ({_first_line(exc)})") from None
    try:
        return nir.read(path, type_check=False)
    except Exception as exc:  # noqa: BLE001 - nir raises assertion/value/key errors
        raise NirError(f"{where}: cannot decode NIR graph ({type(exc).__name__}: {_first_line(exc)})") from None


def read_nir(path: str | os.PathLike) -> Any:
    """Read and validate a NIR file (``nir.read``); every failure is a one-line :class:`NirError`.

    The file is checked before any array is read (see the module docstring): data from this
    file only, declared sizes within bounds, known node types, integer arguments in range.

    Returns:
        The ``nir.NIRGraph``, validated by :func:`validate_graph` and passed through
        :func:`normalize_graph` (a Norse-style leading batch dimension of 1 is dropped, with a
        note in ``metadata[NOTE_KEY]``).
    """
    import h5py

    path = Path(path)
    if not path.exists():
        raise NirError(f"NIR file not found: {path}")
    if not path.is_file():
        raise NirError(f"NIR path is not a file: {path}")
    with file_warnings(str(path)):
        try:
            is_hdf5 = h5py.is_hdf5(path)
        except OSError as exc:
            raise NirError(f"{path}: cannot read file ({_first_line(exc)})") from None
        if not is_hdf5:
            raise NirError(f"{path}: not a NIR file (not HDF5)")
        graph = _read_checked(path)
        return normalize_graph(graph, where=str(path))


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


def _bounded(shape: tuple[int, ...], what: str) -> tuple[int, ...]:
    """A per-sample shape whose size passes :func:`~trt_nm.limits.check_shape` (NirError)."""
    try:
        return check_shape(shape, what)
    except ConfigError as exc:
        raise NirError(str(exc)) from None


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
            out[name] = _bounded(shape, f"input of Input node {name!r}")
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
        out[name] = _bounded(_node_out_shape(name, node, first), f"output of node {name!r} ({kind})")
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
        if kind in _INT_FIELDS:
            try:
                check_int_fields(name, kind, {f: getattr(node, f, None) for f in _INT_FIELDS[kind]})
            except NirError as exc:
                raise NirError(f"{where}: {exc}") from None
    try:  # metadata the readers use: each checked when present (dt may be absent: see validate_runnable)
        graph_dt(graph)
        graph_T(graph)
        graph_reset(graph)
    except NirError as exc:
        raise NirError(f"{where}: {exc}") from None
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


#: ``metadata`` key where :func:`normalize_graph` records what it changed
NOTE_KEY = "trt_nm_note"


def _batch_free(node: Any, key: str) -> tuple[int, ...] | None:
    shape = declared_input_shape(node) if key == "input" else declared_output_shape(node)
    return shape[1:] if shape is not None and len(shape) >= 2 and shape[0] == 1 else None


def normalize_graph(graph: Any, where: str = "NIR graph") -> Any:
    """``graph`` validated by :func:`validate_graph`; or, when it fails ONLY because its Input
    (and Output) nodes declare a leading batch dimension of 1 -- ``[1, 20]`` where the next
    node takes ``[20]``, as Norse 1.1's ``norse.torch.to_nir`` writes them -- a copy with that
    dimension dropped and a note in ``metadata[NOTE_KEY]``.

    The dimension is dropped only when the graph without it validates (every shape, every edge
    and every weight agrees with the batch-free shapes) and the graph with it does not; any
    other mismatch (``[2, 20]``, ``[1, 21]``) keeps the original one-line error.
    """
    import nir

    try:
        validate_graph(graph, where)
        return graph
    except NirError as first:
        error = first
    nodes = getattr(graph, "nodes", None)
    if not isinstance(nodes, dict):
        raise error
    ins = {n: _batch_free(v, "input") for n, v in nodes.items() if type(v).__name__ == "Input"}
    if not ins or any(s is None for s in ins.values()):
        raise error
    outs = {n: _batch_free(v, "output") for n, v in nodes.items() if type(v).__name__ == "Output"}
    outs = {n: s for n, s in outs.items() if s is not None}
    for strip_outputs in ((True, False) if outs else (False,)):
        new = dict(nodes)
        for n, s in ins.items():
            new[n] = nir.Input(input_type={"input": np.array(s, dtype=np.int64)})
        if strip_outputs:
            for n, s in outs.items():
                new[n] = nir.Output(output_type={"output": np.array(s, dtype=np.int64)})
        changed = [f"Input {n!r} {[1, *s]} -> {list(s)}" for n, s in ins.items()]
        if strip_outputs:
            changed += [f"Output {n!r} {[1, *s]} -> {list(s)}" for n, s in outs.items()]
        note = ("dropped a leading batch dimension of 1 (as Norse writes it): " + ", ".join(changed))
        meta = dict(getattr(graph, "metadata", None) or {})
        meta[NOTE_KEY] = note
        candidate = nir.NIRGraph(nodes=new, edges=list(graph.edges), metadata=meta, type_check=False)
        try:
            validate_graph(candidate, where)
        except NirError:
            continue
        return candidate
    raise error


#: a weight is an outlier when its magnitude passes this many times the median nonzero
#: magnitude of its layer (see :func:`weight_outliers`)
OUTLIER_RATIO = 1e4


def weight_outliers(graph: Any, ratio: float = OUTLIER_RATIO) -> list[str]:
    """One line per weighted node whose largest weight magnitude passes ``ratio`` x the median
    nonzero magnitude of the node's weights.

    Why this rule: the weights of a trained layer (BatchNorm folded) lie within about 10^2 of
    their median magnitude (a Gaussian layer of a million weights: max/median ~ 8; folding
    scales a row by gamma/sigma, rarely more than 10^2); a flipped exponent bit of a float32
    multiplies a weight by 2^16 or more (-2.3e-5 -> -7.9e33 is 2^128), which a bound of 10^4
    over the median catches without flagging real layers. The median ignores exact zeros
    (pruned weights), so sparsity does not lower it.
    """
    lines = []
    for name, node in graph.nodes.items():
        kind = NODE_KINDS.get(type(node).__name__)
        if kind is None or not kind.weighted or getattr(node, "weight", None) is None:
            continue
        a = np.abs(arr(node.weight)).reshape(-1)
        a = a[np.isfinite(a) & (a > 0)]
        if a.size == 0:
            continue
        med = float(np.median(a))
        top = float(a.max())
        if top > ratio * med:
            n = int(np.count_nonzero(a > ratio * med))
            lines.append(f"node {name!r} ({kind.name}): {n} weight(s) up to |w| = {top:.3g}, "
                         f"{top / med:.3g} x the layer's median |w| = {med:.3g} (bound: {ratio:g} x)")
    return lines


def check_weight_magnitudes(graph: Any, where: str = "NIR graph", *, flag: str = "--allow-outlier-weights") -> None:
    """Raise a one-line :class:`NirError` when :func:`weight_outliers` finds any (the message
    names the first layer and ``flag``, the option that allows them)."""
    lines = weight_outliers(graph)
    if lines:
        more = f" (and {len(lines) - 1} more layers)" if len(lines) > 1 else ""
        raise NirError(f"{where}: absurd weight magnitude in {lines[0]}{more}; a corrupt or "
                       f"bit-flipped file? Pass {flag} to accept it")
