"""How the engine cuts an input ``[T, B, ...]`` into chunks of consecutive timesteps x a piece
of the batch, and how it joins the chunks' results again.

Every chunk keeps at least :data:`MIN_CHUNK_ROWS` merged rows (steps x samples), so the
stateless nodes of every chunk run with the same kernels as on the whole input: the result is
bit-identical for every plan (see ``docs/simulate.md``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from trt_nm.errors import ConfigError

#: default budget of one chunk (bytes of its largest node value), see :func:`plan`
DEFAULT_CHUNK_BYTES = 32 * 2**20
#: default budget of one batch piece's largest per-step value, bytes per torch thread (about one
#: core's L2): a neuron's state and work buffers for one step stay this small, so its loop over
#: the steps runs in cache, while each thread still gets a large share of every elementwise op
DEFAULT_STATE_BYTES = 2 * 2**20
#: fewest merged rows (steps x samples) in a chunk: torch's CPU convolution picks its algorithm
#: by batch size (below 16 rows, e.g. 1x1 kernels single-threaded or a batch of 1, it may take a
#: different kernel with different float rounding), so smaller chunks could change the last bit
MIN_CHUNK_ROWS = 16


def check_positive(name: str, value: int | None) -> None:
    """ConfigError unless ``value`` is None or a positive int (bools refused)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def plan(
    T: int,
    B: int,
    row_bytes: Callable[[], int],
    *,
    chunk_steps: int | None,
    chunk_batch: int | None,
    chunk_bytes: int | None,
    state_bytes: int | None,
    on_cpu: bool,
) -> tuple[int, int]:
    """``(steps, samples)`` per chunk for an input of ``T`` steps x ``B`` samples.

    Args:
        T: timesteps of the input.
        B: samples of the input.
        row_bytes: returns the largest per-sample, per-step node value in bytes (called only
            when the plan needs it: it may run a probe simulation).
        chunk_steps: forced timesteps per chunk (None: automatic).
        chunk_batch: forced samples per piece (None: automatic).
        chunk_bytes: budget of a chunk's largest value (bytes); None: one chunk.
        state_bytes: budget of a piece's largest per-step value, bytes per torch thread;
            None: never split the batch.
        on_cpu: whether the graph runs on the CPU (elsewhere the whole input is one chunk).

    Explicit ``chunk_steps`` / ``chunk_batch`` win (chunks are still widened to at least
    :data:`MIN_CHUNK_ROWS` rows by :func:`_time_chunks` / :func:`_batch_pieces`). Otherwise the
    batch is split into equal pieces of at most ``state_bytes x threads / row`` samples (at
    least ``16 / T``), and each piece runs as many steps per chunk as keep the chunk's largest
    value within ``chunk_bytes`` (at least one step).
    """
    check_positive("chunk_steps", chunk_steps)
    check_positive("chunk_batch", chunk_batch)
    if chunk_bytes is None or not on_cpu or (chunk_steps is not None and chunk_batch is not None):
        return min(chunk_steps or T, T), min(chunk_batch or B, B)
    row = row_bytes()
    if chunk_batch is None:
        budget = None if state_bytes is None else state_bytes * torch.get_num_threads()
        if budget is None or B * row <= budget:
            chunk_batch = B
        else:
            per = max(1, budget // row, math.ceil(MIN_CHUNK_ROWS / T))
            chunk_batch = math.ceil(B / math.ceil(B / per))  # equal pieces
    if chunk_steps is None:
        chunk_steps = max(1, chunk_bytes // (min(chunk_batch, B) * row))
    return min(chunk_steps, T), min(chunk_batch, B)


def _time_chunks(T: int, steps: int, batch: int) -> list[tuple[int, int]]:
    """``[(t0, t1), ...]`` covering ``range(T)`` in pieces of ``steps``; a piece with fewer than
    :data:`MIN_CHUNK_ROWS` rows (``(t1 - t0) * batch``) is merged into its neighbour, so every
    chunk's stateless nodes run on a batch of >= 16 rows (or on the whole input when smaller)."""
    need = min(T, math.ceil(MIN_CHUNK_ROWS / batch))
    steps = max(steps, need)
    even = math.ceil(T / math.ceil(T / steps))  # as even as possible: fewer kernel shapes
    if even >= need:  # evening out must not fall below 16 rows (T=6, 5 samples: 3 steps = 15 rows)
        steps = even
    bounds = list(range(0, T, steps)) + [T]
    if len(bounds) > 2 and (bounds[-1] - bounds[-2]) * batch < MIN_CHUNK_ROWS:
        del bounds[-2]  # the short tail joins the previous chunk
    return list(zip(bounds[:-1], bounds[1:]))


def _batch_pieces(B: int, samples: int, T: int) -> list[tuple[int, int]]:
    """``[(b0, b1), ...]`` covering ``range(B)`` in pieces of ``samples``; a last piece with
    fewer than :data:`MIN_CHUNK_ROWS` rows (``(b1 - b0) * T``) joins the previous one."""
    bounds = list(range(0, B, samples)) + [B]
    if len(bounds) > 2 and (bounds[-1] - bounds[-2]) * T < MIN_CHUNK_ROWS:
        del bounds[-2]
    return list(zip(bounds[:-1], bounds[1:]))


def _join(parts: list[tuple], dim: int) -> tuple:
    """Concatenate chunk results ``(logits, spikes, synops, trains, layers)`` along ``dim``
    (0: consecutive timesteps, 1: consecutive samples); ``layers`` come from the first part."""
    if len(parts) == 1:
        return parts[0]

    def cat(i: int) -> dict[str, torch.Tensor]:
        return {k: torch.cat([p[i][k] for p in parts], dim) for k in parts[0][i]}

    return torch.cat([p[0] for p in parts], dim), cat(1), cat(2), cat(3), parts[0][4]
