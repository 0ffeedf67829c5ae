"""Bounds on sizes, and the validators that enforce them, shared by every input path.

A value typed on the command line, stored in a checkpoint's config or model spec, or read
from a NIR file's metadata is checked by the SAME function against the SAME bound, so a file
can never ask for what a command line may not. Every failure is a one-line
:class:`~trt_nm.errors.ConfigError` naming the value, where it came from and the allowed range.

The bounds (why each number):

* ``MAX_T`` = 100,000 timesteps: the longest event recordings trt_nm bins (SHD: about 1 s at
  1 ms bins = 1,000 steps; DVS Gesture at 1 ms: about 6,000) with room to spare; a simulation
  stores ``[T, B, C]`` logits plus per-step counters, so T = 10**6 alone would allocate
  gigabytes before doing anything useful.
* ``MAX_BATCH`` = 65,536 samples.
* ``MAX_WIDTH`` = 65,536 neurons or channels per layer, ``MAX_CLASSES`` = 100,000,
  ``MAX_INPUT_SIDE`` = 4,096 pixels.
* ``MAX_WORKERS`` = 4 x the CPUs of this machine (at least 4): DataLoader workers are
  processes; a checkpoint asking for 10**6 of them would fork until the OOM killer ends it.
* ``MAX_SEED`` = 2**63 - 1, the largest seed ``torch.manual_seed`` accepts.
* ``MAX_EPOCHS`` = 100,000 epochs: far beyond any schedule in the literature (hundreds); a
  resumed run replays its learning-rate schedule once per epoch done.
* :func:`memory_budget_bytes`: half of this machine's physical memory. Parameter tensors
  declared by a file (a NIR Affine's weight shape, a model spec's widths) are refused when
  their float32 size passes it, before anything is allocated.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from trt_nm.errors import ConfigError

MAX_T = 100_000
MAX_BATCH = 65_536
MAX_WIDTH = 65_536
MAX_CLASSES = 100_000
MAX_INPUT_SIDE = 4_096
MAX_SEED = 2**63 - 1
MAX_WORKERS = max(4, 4 * (os.cpu_count() or 1))
MAX_EPOCHS = 100_000


def memory_budget_bytes() -> int:
    """Half of the machine's physical memory in bytes (16 GiB when it cannot be read)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        total = 32 * 2**30
    return int(total) // 2


def _short(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."


def check_int(value: Any, name: str, low: int, high: int, *, where: str = "") -> int:
    """``value`` as an int in ``[low, high]``; bools, floats with a fraction, strings and other
    types are refused (a float like ``4.0`` is accepted as 4).

    Args:
        value: the value to check.
        name: what it is, for the message (``"T"``, ``"batch size"``).
        low, high: inclusive bounds.
        where: where the value came from (``"checkpoint config"``), for the message.
    """
    src = f" ({where})" if where else ""
    if isinstance(value, bool) or value is None:
        raise ConfigError(f"{name}{src} must be an integer in [{low}, {high}], got {_short(value)}")
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise ConfigError(f"{name}{src} must be an integer in [{low}, {high}], got {value!r}")
        value = int(value)
    if isinstance(value, np.integer):
        value = int(value)
    if not isinstance(value, int):
        raise ConfigError(f"{name}{src} must be an integer in [{low}, {high}], got {_short(value)}")
    if not low <= value <= high:
        raise ConfigError(f"{name}{src} must be in [{low}, {high}], got {value}")
    return value


def check_float(value: Any, name: str, low: float = -math.inf, high: float = math.inf, *,
                where: str = "", low_open: bool = False) -> float:
    """``value`` as a finite float in ``[low, high]`` (``(low, high]`` with ``low_open``)."""
    src = f" ({where})" if where else ""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"{name}{src} must be a number, got {_short(value)}")
    v = float(value)
    bad_low = v <= low if low_open else v < low
    if not math.isfinite(v) or bad_low or v > high:
        rng = f"{'(' if low_open else '['}{low:g}, {high:g}]"
        raise ConfigError(f"{name}{src} must be a finite number in {rng}, got {value!r}")
    return v


def check_T(value: Any, *, where: str = "") -> int:
    """Timesteps: an integer in ``[1, MAX_T]``."""
    return check_int(value, "T", 1, MAX_T, where=where)


def check_batch(value: Any, *, where: str = "") -> int:
    """Batch size: an integer in ``[1, MAX_BATCH]``."""
    return check_int(value, "batch size", 1, MAX_BATCH, where=where)


def check_workers(value: Any, *, where: str = "") -> int:
    """DataLoader workers: an integer in ``[0, MAX_WORKERS]``."""
    return check_int(value, "workers", 0, MAX_WORKERS, where=where)


def check_seed(value: Any, *, where: str = "") -> int:
    """Random seed: an integer in ``[0, MAX_SEED]``."""
    return check_int(value, "seed", 0, MAX_SEED, where=where)


def check_epochs(value: Any, *, where: str = "") -> int:
    """Training epochs: an integer in ``[1, MAX_EPOCHS]``."""
    return check_int(value, "epochs", 1, MAX_EPOCHS, where=where)


def check_parameter_count(count: int, what: str, *, where: str = "") -> int:
    """Refuse ``count`` float32 parameters when they pass :func:`memory_budget_bytes`."""
    budget = memory_budget_bytes()
    if count * 4 > budget:
        src = f" ({where})" if where else ""
        raise ConfigError(
            f"{what}{src} declares {count:,} parameters ({count * 4 / 2**30:.1f} GiB as float32), "
            f"more than this machine's budget of {budget / 2**30:.1f} GiB"
        )
    return count


def check_memory(nbytes: int, what: str, *, where: str = "") -> int:
    """Refuse ``nbytes`` bytes that something declares (a file's arrays, before they are read)
    when they pass :func:`memory_budget_bytes`; returns ``nbytes``."""
    budget = memory_budget_bytes()
    if nbytes > budget:
        src = f" ({where})" if where else ""
        raise ConfigError(
            f"{what}{src} needs {nbytes / 2**30:.1f} GiB, more than this machine's budget of "
            f"{budget / 2**30:.1f} GiB"
        )
    return nbytes


def arg_type(check: Callable[..., Any], **kwargs: Any) -> Callable[[str], Any]:
    """An argparse ``type=`` that parses a number and applies ``check`` (e.g. ``arg_type(check_T)``),
    so a command-line value meets the same bound as the same value from a file; its
    :class:`~trt_nm.errors.ConfigError` becomes argparse's one-line usage error (exit 2)."""
    import argparse

    def parse(text: str) -> Any:
        value: Any = text
        for conv in (int, float):
            try:
                value = conv(text)
                break
            except (TypeError, ValueError):
                continue
        try:
            return check(value, **kwargs)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = getattr(check, "__name__", "value").removeprefix("check_")
    return parse


def check_shape(shape: Sequence[Any], what: str, *, where: str = "") -> tuple[int, ...]:
    """A declared array shape: non-negative integers whose product passes
    :func:`check_parameter_count`; returns it as a tuple of ints."""
    dims = tuple(check_int(s, f"{what} dimension", 0, 2**40, where=where) for s in shape)
    check_parameter_count(math.prod(dims), what, where=where)
    return dims


__all__ = [
    "MAX_T", "MAX_BATCH", "MAX_WIDTH", "MAX_CLASSES", "MAX_INPUT_SIDE", "MAX_SEED", "MAX_WORKERS",
    "memory_budget_bytes", "check_int", "check_float", "check_T", "check_batch", "check_workers",
    "check_seed", "check_epochs", "MAX_EPOCHS", "check_parameter_count", "check_memory", "check_shape", "arg_type",
]
