"""Keep freed CPU memory in the process so large tensors reuse warm pages (glibc only).

PyTorch allocates CPU tensors with the C library's ``malloc``. glibc returns freed blocks of a
few MiB to the operating system (``munmap``, or trimming the top of the heap once more than
``M_TRIM_THRESHOLD`` is free, by default twice the largest block freed so far), so the next
tensor of that size is fresh memory: one page fault per 4 KiB on first touch. A CPU
convolution makes two such blocks per call (its blocked-layout temporary and its output); in
a tight loop over timesteps the faults can cost more than the arithmetic (measured: cnn-small's
first convolution, 64 x 32 x 28 x 28 output, one thread, in a loop: 7.3 ms per call with a fault
on every page vs 0.6 ms with freed memory retained). PyTorch's CPU performance guide
recommends preloading jemalloc or tcmalloc for this; :func:`retain_freed_memory` gets the same
effect from glibc itself by raising two thresholds with ``mallopt``.

It changes the whole process (memory freed stays reserved for reuse, up to ``trim_bytes`` at
the top of the heap), so the library never calls it on its own: the ``trt-nm`` command line
calls it at start-up (set ``TRT_NM_MALLOC=default`` to opt out) and a script may call it once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

#: glibc ``mallopt`` parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: glibc refuses an mmap threshold above HEAP_MAX_SIZE / 2 (32 MiB on 64-bit)
_MAX_MMAP_THRESHOLD = 32 * 2**20

_applied: tuple[int, int] | None = None


def retain_freed_memory(trim_bytes: int = 256 * 2**20, mmap_bytes: int = _MAX_MMAP_THRESHOLD) -> bool:
    """Let glibc keep freed memory for reuse instead of handing it back to the OS.

    Args:
        trim_bytes: free memory (bytes) at the top of the heap kept before trimming.
        mmap_bytes: blocks below this size (bytes, at most 32 MiB) come from the heap, so they
            are reused after being freed; larger ones are still mapped and unmapped each time.

    Returns:
        True when the thresholds are in effect (glibc, both calls accepted), False elsewhere
        (macOS, Windows, musl), where it does nothing.
    """
    global _applied
    if trim_bytes < 0 or not 0 <= mmap_bytes <= _MAX_MMAP_THRESHOLD:
        raise ValueError(f"trim_bytes >= 0 and 0 <= mmap_bytes <= {_MAX_MMAP_THRESHOLD} required")
    if _applied == (trim_bytes, mmap_bytes):
        return True
    libc = _glibc()
    if libc is None:
        return False
    ok = libc.mallopt(_M_MMAP_THRESHOLD, mmap_bytes) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, trim_bytes) == 1
    _applied = (trim_bytes, mmap_bytes) if ok else None
    return ok


def retained() -> bool:
    """Whether :func:`retain_freed_memory` is in effect in this process."""
    return _applied is not None


def apply_from_env() -> bool:
    """:func:`retain_freed_memory` unless ``TRT_NM_MALLOC=default`` (the CLI's start-up hook)."""
    if os.environ.get("TRT_NM_MALLOC", "").strip().lower() == "default":
        return False
    return retain_freed_memory()


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        _ = libc.gnu_get_libc_version  # glibc only: musl has no such symbol
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return libc


__all__ = ["retain_freed_memory", "retained", "apply_from_env"]
