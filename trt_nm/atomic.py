"""Atomic file writes, the one implementation every writer in trt_nm uses.

The data goes to a temporary file beside the target, is flushed to disk, gets the usual file
mode (``0o666`` minus the umask, as ``open`` would give; ``mkstemp`` alone makes ``0o600``), and
is renamed over the target. A crash or an error at any point leaves either the old file or the
new one, never a torn file, and no temporary file behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

_UMASK: int | None = None


def _file_mode() -> int:
    global _UMASK
    if _UMASK is None:  # read once: os.umask can only be read by setting it
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return 0o666 & ~_UMASK


def _fsync(path: str | Path, directory: bool = False) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. directories on some platforms
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems cannot fsync a directory
        if not directory:
            raise
    finally:
        os.close(fd)


def check_writable(path: str | os.PathLike, *, directory: bool = False, what: str = "output") -> Path:
    """Fail early, before any work, when ``path`` cannot be written; returns it as a Path.

    ``path`` is an output file (``directory=False``: it may not be a directory) or an output
    directory (``directory=True``: it may not be a file). Neither may lie under a file
    (``afile/sub``). The nearest existing directory on the way (the path itself, its parent, or
    the first ancestor that exists -- the writers create the rest) must accept a new file: one
    is created there and removed, which also catches read-only mounts, ``/proc`` and
    permissions (``os.access`` misses the first two). Every failure is a one-line
    :class:`~trt_nm.errors.ConfigError` naming ``what`` (``"--out"``, ``"--json"``).
    """
    from trt_nm.errors import ConfigError

    p = Path(path)
    if directory and p.exists() and not p.is_dir():
        raise ConfigError(f"{what} directory is a file: {p}")
    if not directory and p.is_dir():
        raise ConfigError(f"{what} path is a directory: {p}")
    start = p if directory else p.parent
    for anc in (start, *start.parents):
        if anc.exists() or anc.is_symlink():
            break
    else:  # pragma: no cover - "." always exists
        anc = Path(".")
    if not anc.is_dir():
        raise ConfigError(f"{what} {p} lies under a file: {anc}")
    try:
        fd, probe = tempfile.mkstemp(prefix=".trt_nm-write-check.", dir=anc)
    except OSError as exc:
        raise ConfigError(f"{what} {p} is not writable: cannot create a file in {anc} ({exc.strerror or exc})") from None
    os.close(fd)
    Path(probe).unlink(missing_ok=True)
    return p


def atomic_write_path(path: str | os.PathLike, write: Callable[[str], Any]) -> Path:
    """Call ``write(tmp_path)`` (a library that wants a file name: HDF5, ONNX), then make the
    result ``path`` atomically. Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        _fsync(tmp)
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync(path.parent, directory=True)
    return path


def atomic_write_bytes(path: str | os.PathLike, writer: Callable[[BinaryIO], Any]) -> Path:
    """Call ``writer(binary_file_object)``, then make the result ``path`` atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            writer(fh)

    return atomic_write_path(path, write)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, lambda fh: fh.write(text.encode("utf-8")))


__all__ = ["check_writable", "atomic_write_path", "atomic_write_bytes", "atomic_write_text"]
