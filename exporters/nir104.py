"""Write a NIR graph in the HDF5 schema that nir 1.0.4 reads (for sinabs 3.1.3 / rockpool 3.1.0).

nir 1.0.4 rebuilds each node as ``NodeClass(**fields)``, so a file written by nir >= 1.0.5 fails
there: ``LIF``/``IF``/``CubaLIF`` carry ``v_reset`` and several nodes carry ``input_type``,
``output_type`` or ``metadata`` that nir 1.0.4's constructors do not accept. This writer emits
exactly the constructor arguments of nir 1.0.4 (:data:`SCHEMA_104`, read from nir 1.0.4's
dataclasses) and refuses what 1.0.4 cannot express (a nonzero ``v_reset``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from trt_nm.atomic import atomic_write_path
from trt_nm.errors import ConfigError

#: node type -> HDF5 datasets nir 1.0.4 expects besides "type" (its constructor arguments
#: minus input/output types, which 1.0.4 recomputes); "metadata" only where 1.0.4 accepts it.
SCHEMA_104: dict[str, tuple[str, ...]] = {
    "Affine": ("weight", "bias", "metadata"),
    "Linear": ("weight",),
    "Scale": ("scale",),
    "Conv1d": ("input_shape", "weight", "stride", "padding", "dilation", "groups", "bias", "metadata"),
    "Conv2d": ("input_shape", "weight", "stride", "padding", "dilation", "groups", "bias"),
    "AvgPool2d": ("kernel_size", "stride", "padding"),
    "SumPool2d": ("kernel_size", "stride", "padding", "metadata"),
    "Flatten": ("input_type", "start_dim", "end_dim", "metadata"),
    "Input": ("shape",),
    "Output": ("shape",),
    "LIF": ("tau", "r", "v_leak", "v_threshold", "metadata"),
    "IF": ("r", "v_threshold", "metadata"),
    "LI": ("tau", "r", "v_leak", "metadata"),
    "I": ("r", "metadata"),
    "CubaLIF": ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "w_in", "metadata"),
    "Threshold": ("threshold", "metadata"),
    "NIRGraph": ("nodes", "edges", "metadata"),
}
#: datasets that nir 1.0.4 requires (metadata is optional)
REQUIRED_104 = {k: tuple(f for f in v if f != "metadata") for k, v in SCHEMA_104.items()}


def _value(node, field: str) -> Any:
    if field == "shape":
        types = node.input_type if type(node).__name__ == "Input" else node.output_type
        return np.asarray(types["input" if type(node).__name__ == "Input" else "output"])
    if field == "input_type":
        return np.asarray(node.input_type["input"])
    return getattr(node, field)


def _write_meta(group, meta: dict) -> None:
    import h5py

    for k, v in meta.items():
        if v is None:
            continue
        if isinstance(v, (str, bytes)):
            group.create_dataset(k, data=v if isinstance(v, str) else v.decode(), dtype=h5py.string_dtype())
        elif isinstance(v, (list, tuple)) and v and all(isinstance(x, str) for x in v):
            group.create_dataset(k, data=np.array(v, dtype=object), dtype=h5py.string_dtype())
        else:
            group.create_dataset(k, data=np.asarray(v))


def _write_node(group, node) -> None:
    import h5py

    t = type(node).__name__
    if t not in SCHEMA_104:
        raise ConfigError(f"nir 1.0.4 cannot express node type {t}")
    for reset_field in ("v_reset",):
        vr = getattr(node, reset_field, None)
        if vr is not None and np.any(np.asarray(vr) != 0):
            raise ConfigError(f"nir 1.0.4 has no v_reset: {t} node resets to a nonzero value")
    group.create_dataset("type", data=t, dtype=h5py.string_dtype())
    for f in SCHEMA_104[t]:
        if f == "metadata":
            meta = getattr(node, "metadata", None) or {}
            if meta:
                _write_meta(group.create_group("metadata"), meta)
        elif f == "nodes":
            g = group.create_group("nodes")
            for name, child in node.nodes.items():
                _write_node(g.create_group(name), child)
        elif f == "edges":
            edges = np.array([[a, b] for a, b in node.edges], dtype=object).reshape(-1, 2)
            group.create_dataset("edges", data=edges, dtype=h5py.string_dtype())
        else:
            v = _value(node, f)
            if v is None:
                raise ConfigError(f"{t} node has no {f!r}, which nir 1.0.4 requires")
            group.create_dataset(f, data=np.asarray(v))


def atomic_h5_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` on a temp file beside ``path``, then rename it over ``path``.

    A failure leaves any existing ``path`` untouched.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"output path is a directory: {path}")
    return atomic_write_path(path, write)


def write_nir104(graph: Any, path: str | os.PathLike) -> Path:
    """Write ``graph`` to ``path`` (atomically) in nir 1.0.4's HDF5 schema; returns the path."""
    import h5py

    def writer(tmp: str) -> None:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("version", data="1.0.4", dtype=h5py.string_dtype())
            _write_node(f.create_group("node"), graph)

    return atomic_h5_write(path, writer)


def schema_problems(path: str | os.PathLike) -> list[str]:
    """Differences between an HDF5 file and nir 1.0.4's schema (empty list: 1.0.4 reads it)."""
    import h5py

    problems: list[str] = []

    def visit(group: Any, where: str) -> None:
        t = group["type"][()]
        t = t.decode() if isinstance(t, bytes) else str(t)
        if t not in SCHEMA_104:
            problems.append(f"{where}: node type {t} unknown to nir 1.0.4")
            return
        keys = set(group.keys()) - {"type"}
        extra = keys - set(SCHEMA_104[t])
        missing = set(REQUIRED_104[t]) - keys
        if extra:
            problems.append(f"{where} ({t}): fields nir 1.0.4 rejects: {sorted(extra)}")
        if missing:
            problems.append(f"{where} ({t}): fields nir 1.0.4 needs: {sorted(missing)}")
        if t == "NIRGraph" and "nodes" in group:
            for name in group["nodes"]:
                visit(group["nodes"][name], f"{where}/{name}")

    with h5py.File(path, "r") as f:
        if "node" not in f:
            return ["no 'node' group"]
        visit(f["node"], "node")
    return problems
