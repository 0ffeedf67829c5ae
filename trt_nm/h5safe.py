"""Reading HDF5 files that may be hostile: data only from the file itself, sizes checked first.

An HDF5 file can make a reader open OTHER files (external links, external storage, virtual
datasets), load a shared library (a filter that only a plugin provides), loop (a group linked
into itself) or allocate without bound (a dataset that declares a huge shape in a few bytes:
chunked, compressed, never written). The functions here refuse all of those before any data is
read, each with a one-line error built by the caller's ``error`` type (``NirError`` for NIR
files, ``DatasetFileError`` for dataset files), so every HDF5 reader in trt_nm applies the SAME
rules with the same words:

* :func:`hard_child` -- one member of a group, reached through a hard link only (an external
  link, a soft link or a user-defined link is refused);
* :func:`check_dataset` -- a dataset whose data lie in this file (not virtual, no external
  storage) and use only the filters built into libhdf5/h5py (:data:`HDF5_BUILTIN_FILTERS`);
* :func:`open_dataset` -- both, along a ``"a/b/c"`` path;
* :func:`walk` -- every group and dataset under a group, each reached through hard links only,
  each linked exactly once (no cycles, no object counted twice), every dataset checked; returns
  the datasets so the caller can bound their declared sizes (:func:`declared_nbytes`) before
  reading any of them.

``error`` is any exception class (or callable) taking the one-line message.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

ErrorFactory = Callable[[str], BaseException]

#: HDF5 filters built into libhdf5 / h5py (deflate, shuffle, fletcher32, szip, nbit,
#: scaleoffset, lzf); any other filter id would make libhdf5 load a plugin library
HDF5_BUILTIN_FILTERS = frozenset({1, 2, 3, 4, 5, 6, 32000})


def _link_kind(link: Any) -> str:
    import h5py

    return {h5py.ExternalLink: "an external link", h5py.SoftLink: "a soft link"}.get(
        type(link), f"a {type(link).__name__}"
    )


def hard_child(group: Any, part: str, *, path: str, where: str, error: ErrorFactory) -> Any | None:
    """``group[part]`` when it is reached through a hard link; None when there is no such
    member. ``path`` names the member in messages, ``where`` the file."""
    import h5py

    try:
        link = group.get(part, getlink=True)
    except Exception as exc:  # noqa: BLE001 - a user-defined link type, a damaged link table
        raise error(f"{where}: cannot read the link {path!r} ({type(exc).__name__})") from None
    if link is None:
        return None
    if not isinstance(link, h5py.HardLink):
        raise error(f"{where}: {path!r} is {_link_kind(link)}; only data stored in this file is read")
    try:
        return group[part]
    except Exception as exc:  # noqa: BLE001 - a dangling or damaged object header
        raise error(f"{where}: cannot open {path!r} ({type(exc).__name__})") from None


def check_dataset(ds: Any, *, path: str, where: str, error: ErrorFactory) -> Any:
    """Refuse a virtual dataset, external storage and non-built-in filters; returns ``ds``."""
    try:
        dcpl = ds.id.get_create_plist()
        virtual = bool(ds.is_virtual)
        external = dcpl.get_external_count()
        filters = [dcpl.get_filter(i)[0] for i in range(dcpl.get_nfilters())]
    except Exception as exc:  # noqa: BLE001 - a damaged creation property list
        raise error(f"{where}: cannot read the storage of {path!r} ({type(exc).__name__})") from None
    if virtual:
        raise error(f"{where}: {path!r} is a virtual dataset (its data lie in other files); refusing to read it")
    if external:
        raise error(f"{where}: {path!r} keeps its data in external files; refusing to read it")
    for code in filters:
        if code not in HDF5_BUILTIN_FILTERS:
            raise error(f"{where}: {path!r} uses HDF5 filter {code}, not a built-in one; refusing to load a plugin")
    return ds


def open_dataset(f: Any, name: str, *, where: str, error: ErrorFactory, missing: str) -> Any:
    """The dataset at ``"a/b/c"`` under ``f``, every step a hard link, checked by
    :func:`check_dataset`. A missing step raises ``error(f"{where}: {missing} (no 'a/b')")``."""
    import h5py

    node, parts = f, name.split("/")
    for k, part in enumerate(parts):
        path = "/".join(parts[: k + 1])
        node = hard_child(node, part, path=path, where=where, error=error)
        if node is None:
            raise error(f"{where}: {missing} (no {path!r})")
    if not isinstance(node, h5py.Dataset):
        raise error(f"{where}: {name!r} is not an HDF5 dataset")
    return check_dataset(node, path=name, where=where, error=error)


def declared_nbytes(ds: Any) -> int:
    """Bytes the dataset declares (shape x item size; a variable-length item counts its
    16-byte descriptor -- its contents are bounded by the file's size)."""
    shape = ds.shape  # None for an empty (null) dataspace
    if not shape:
        return 0 if shape is None else int(ds.dtype.itemsize)
    return math.prod(int(s) for s in shape) * int(ds.dtype.itemsize)


def walk(group: Any, *, where: str, error: ErrorFactory, path: str = "") -> list[tuple[str, Any]]:
    """Every dataset under ``group`` as ``(path, dataset)``, after checking the whole tree:
    members reached through hard links only, groups and datasets only (no committed datatypes),
    every object linked exactly once (no cycles, no sharing), every dataset per
    :func:`check_dataset`. Nothing is read but the tree's structure."""
    import h5py

    datasets: list[tuple[str, Any]] = []
    stack = [(path, group)]
    while stack:
        prefix, grp = stack.pop()
        try:
            names = list(grp.keys())
        except Exception as exc:  # noqa: BLE001 - a damaged group
            raise error(f"{where}: cannot list {prefix or '/'!r} ({type(exc).__name__})") from None
        for name in names:
            sub = f"{prefix}/{name}" if prefix else name
            obj = hard_child(grp, name, path=sub, where=where, error=error)
            if obj is None:  # listed but gone: a damaged link table
                raise error(f"{where}: cannot open {sub!r}")
            try:
                rc = h5py.h5o.get_info(obj.id).rc
            except Exception as exc:  # noqa: BLE001
                raise error(f"{where}: cannot read the object header of {sub!r} ({type(exc).__name__})") from None
            if rc != 1:
                raise error(f"{where}: {sub!r} is linked {rc} times in the file (a cycle or a shared object); refusing to read it")
            if isinstance(obj, h5py.Group):
                stack.append((sub, obj))
            elif isinstance(obj, h5py.Dataset):
                datasets.append((sub, check_dataset(obj, path=sub, where=where, error=error)))
            else:
                raise error(f"{where}: {sub!r} is a {type(obj).__name__}, not a group or dataset")
    return datasets


__all__ = ["HDF5_BUILTIN_FILTERS", "hard_child", "check_dataset", "open_dataset", "declared_nbytes", "walk"]
