"""The NIR bridge: ``to_nir``, ``from_nir``, ``read_nir``, ``write_nir`` (see ``docs/nir.md``).

The work is split over :mod:`trt_nm.nir.export` (model -> graph), :mod:`trt_nm.nir.importer`
(graph -> module), :mod:`trt_nm.nir.validate` (file and graph checks), :mod:`trt_nm.nir.graph`
(order, dt, metadata), :mod:`trt_nm.nir.nodes` (the table of node kinds and their discrete
equations) and :mod:`trt_nm.nir.modules` (the torch modules that run them).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from trt_nm.atomic import atomic_write_path
from trt_nm.errors import NirError
from trt_nm.models.bn_fold import fold_batchnorm
from trt_nm.nir.export import to_nir
from trt_nm.nir.importer import NIRNetwork, from_nir
from trt_nm.nir.validate import read_nir, validate_graph


def write_nir(graph: Any, path: str | os.PathLike, *, compression: str | None = "gzip") -> Path:
    """Validate ``graph`` and write it with ``nir.write`` atomically (temp file, then rename).

    An existing file at ``path`` is only replaced once the new file is complete.
    ``compression`` is passed to ``nir.write`` ("gzip", "lzf" or None for speed).
    """
    import nir

    validate_graph(graph, where="graph to write")
    path = Path(path)
    if path.is_dir():
        raise NirError(f"output path is a directory: {path}")
    try:
        atomic_write_path(path, lambda tmp: nir.write(tmp, graph, compression=compression))
    except (OSError, TypeError, ValueError) as exc:
        raise NirError(f"cannot write NIR file {path}: {' '.join(str(exc).split())[:200]}") from None
    return path


__all__ = ["to_nir", "fold_batchnorm", "from_nir", "read_nir", "write_nir", "validate_graph", "NirError", "NIRNetwork"]
