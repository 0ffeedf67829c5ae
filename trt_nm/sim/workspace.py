"""Work buffers a compiled node reuses from one chunk (and call) to the next.

A fresh large CPU tensor costs a page fault per 4 KiB on first touch (glibc hands big blocks
back to the OS when they are freed), which on the CPU can cost as much as the arithmetic done
in it; see also :func:`trt_nm.sim.allocator.retain_freed_memory`. The engine keeps one
:class:`_Workspace` per node and thread; a result that leaves a call is never a workspace buffer.
"""

from __future__ import annotations

import math

import torch


class _Workspace:
    """Named flat buffers, each handed out as a view of the shape asked for last."""

    def __init__(self) -> None:
        # key -> (flat buffer, shape of the last view, that view)
        self.bufs: dict[str, tuple[torch.Tensor, tuple[int, ...], torch.Tensor]] = {}

    def get(self, key: str, shape: tuple[int, ...] | torch.Size, like: torch.Tensor) -> torch.Tensor:
        """Buffer ``key`` viewed as ``shape`` (contents undefined; dtype and device of ``like``);
        it grows when too small, so chunks of different sizes share one allocation."""
        shape = tuple(shape)
        entry = self.bufs.get(key)
        if entry is not None and entry[1] == shape and entry[0].dtype == like.dtype and entry[0].device == like.device:
            return entry[2]  # the common case: same shape as last time, same view
        n = math.prod(shape)
        buf = None if entry is None else entry[0]
        if buf is None or buf.numel() < n or buf.dtype != like.dtype or buf.device != like.device:
            buf = torch.empty(n, dtype=like.dtype, device=like.device)
        view = buf[:n].view(shape)
        self.bufs[key] = (buf, shape, view)
        return view

    def swap(self, key_a: str, key_b: str, a: torch.Tensor, b: torch.Tensor) -> None:
        """Record that views ``a`` and ``b`` (of buffers ``key_a``/``key_b``) traded places."""
        bufs = self.bufs
        if key_b in bufs and a.data_ptr() == bufs[key_b][2].data_ptr():
            if key_a in bufs:
                bufs[key_a], bufs[key_b] = bufs[key_b], bufs[key_a]
            else:  # ``b`` was never a buffer here (a state handed in from outside)
                bufs[key_a] = bufs.pop(key_b)


def _empty(ws: _Workspace | None, key: str, shape: tuple[int, ...] | torch.Size, like: torch.Tensor) -> torch.Tensor:
    """A tensor of ``shape`` to overwrite: the workspace's buffer ``key`` when given, else a fresh one."""
    if ws is None:
        return torch.empty(shape, dtype=like.dtype, device=like.device)
    return ws.get(key, shape, like)
