"""On-disk cache for preprocessed frames and generated events.

Every cache entry is keyed by a hash of *all* parameters that produced it plus
:data:`CACHE_VERSION`, so changing a preprocessing parameter never serves stale data and a
cache written by an older version of this code is rebuilt (a meta file inside each entry
records the version and parameters; a mismatch or an unreadable file means "rebuild").

Cache files are read as hostile: ``np.load(allow_pickle=False)`` only, after checking that
every member of the ``.npz`` is a plain stored (uncompressed) ``.npy`` array whose declared
size fits the bytes in the file (no decompression or allocation bombs). Loaders pass a
``validate`` function that checks the *contents* (shapes, dtypes, label and index ranges);
an entry that fails it is treated exactly like an unreadable one: rebuilt and replaced.

Location: the ``cache_dir`` argument of a loader, else ``$TRT_NM_CACHE``, else
``~/.cache/trt_nm``. Writes are atomic (temporary file + ``os.replace``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from trt_nm.atomic import atomic_write_bytes, atomic_write_text
from trt_nm.errors import TrtNmError

#: bump when the layout or the preprocessing code changes; older entries are rebuilt
CACHE_VERSION = 1
ENV_VAR = "TRT_NM_CACHE"


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache directory: ``cache_dir``, else ``$TRT_NM_CACHE``, else ``~/.cache/trt_nm``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path("~/.cache/trt_nm").expanduser()


def _jsonable(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in sorted(v.items())}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.integer, np.floating)):
        return v.item()
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return repr(v)


def cache_key(params: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(hex digest, canonical params)`` of ``params`` plus :data:`CACHE_VERSION`."""
    canon = _jsonable({**params, "cache_version": CACHE_VERSION})
    text = json.dumps(canon, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16], canon


def _ensure_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrtNmError(f"cannot create cache directory {path}: {exc.strerror or exc}") from None


#: ``validate(arrays) -> None`` when the cached contents are usable, else what is wrong
Validator = Callable[[Mapping[str, np.ndarray]], str | None]


def atomic_save_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` (``.npz``, uncompressed) atomically."""
    _ensure_dir(path.parent)
    try:
        atomic_write_bytes(path, lambda fh: np.savez(fh, **arrays))
    except OSError as exc:
        raise TrtNmError(f"cannot write cache file {path}: {exc.strerror or exc}") from None


def _npz_layout_ok(path: Path) -> bool:
    """True when every member is a stored ``.npy`` whose header's shape x itemsize is exactly
    the member's size, and the members fit in the file: so ``np.load`` allocates no more
    than the file holds."""
    file_size = path.stat().st_size
    total = 0
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if (info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1
                    or info.compress_size != info.file_size or not info.filename.endswith(".npy")):
                return False
            total += info.file_size
            if total > file_size:
                return False
            with zf.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
                else:
                    return False
                header = fh.tell()
            if dtype.hasobject or any(int(n) < 0 for n in shape):
                return False
            if header + math.prod(int(n) for n in shape) * dtype.itemsize != info.file_size:
                return False
    return True


def load_npz(path: Path, validate: Validator | None = None) -> dict[str, np.ndarray] | None:
    """All arrays of an ``.npz`` file, or None when it is missing, truncated, corrupt, not
    laid out as :func:`atomic_save_npz` writes, or ``validate`` finds a problem in it."""
    try:
        if not _npz_layout_ok(path):
            return None
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, KeyError, MemoryError, RuntimeError, NotImplementedError, zipfile.BadZipFile):
        return None
    if validate is not None and validate(arrays) is not None:
        return None
    return arrays


def cached_arrays(
    name: str,
    params: Mapping[str, Any],
    build: Callable[[], Mapping[str, np.ndarray]],
    cache_dir: str | os.PathLike | None = None,
    validate: Validator | None = None,
) -> tuple[dict[str, np.ndarray], Path, bool]:
    """Arrays built by ``build()`` once, then read from ``<cache>/<name>-<key>.npz``.

    Returns ``(arrays, path, hit)`` with ``hit`` True when the cache was read. A file with a
    different version or parameters (hash collision, older code), an unreadable one, or one
    whose arrays ``validate`` rejects (``validate(arrays)`` returns what is wrong, or None)
    is rebuilt and replaced.
    """
    key, canon = cache_key(params)
    path = cache_root(cache_dir) / f"{name}-{key}.npz"
    meta_json = json.dumps(canon, sort_keys=True)
    data = load_npz(path) if path.exists() else None
    meta = data.pop("__meta__", None) if data is not None else None
    if (
        data is not None
        and meta is not None
        and meta.shape == ()
        and meta.dtype.kind == "U"
        and str(meta) == meta_json
        and (validate is None or validate(data) is None)
    ):
        return data, path, True
    arrays = {k: np.asarray(v) for k, v in build().items()}
    atomic_save_npz(path, {**arrays, "__meta__": np.array(meta_json)})
    return arrays, path, False


class SampleCache:
    """A directory of per-sample ``.npz`` files keyed by the preprocessing parameters.

    ``<cache>/<name>-<key>/meta.json`` holds the version and the parameters; an entry whose
    meta does not match is cleared of its sample files and rebuilt. ``get(i, validate)``
    returns the cached arrays of sample ``i``, or None when they are missing, unreadable or
    rejected by ``validate`` (the caller rebuilds them); ``put(i, arrays)`` writes them
    atomically.
    """

    def __init__(self, name: str, params: Mapping[str, Any], cache_dir: str | os.PathLike | None = None):
        key, canon = cache_key(params)
        self.params = canon
        self.dir = cache_root(cache_dir) / f"{name}-{key}"
        self.hits = 0
        self.misses = 0
        self._checked = False

    def _check_meta(self) -> None:
        if self._checked:
            return
        _ensure_dir(self.dir)
        meta = self.dir / "meta.json"
        try:
            ok = json.loads(meta.read_text()) == self.params
        except (OSError, ValueError):
            ok = False
        if not ok:
            for f in self.dir.glob("*.npz"):  # only files this class wrote
                f.unlink(missing_ok=True)
            atomic_write_text(meta, json.dumps(self.params, sort_keys=True))
        self._checked = True

    def path(self, i: int) -> Path:
        return self.dir / f"{i:07d}.npz"

    def get(self, i: int, validate: Validator | None = None) -> dict[str, np.ndarray] | None:
        self._check_meta()
        p = self.path(i)
        data = load_npz(p, validate) if p.exists() else None
        if data is None:
            self.misses += 1
        else:
            self.hits += 1
        return data

    def put(self, i: int, arrays: Mapping[str, np.ndarray]) -> None:
        self._check_meta()
        atomic_save_npz(self.path(i), arrays)
