"""Argument helpers shared by several subcommands."""

from __future__ import annotations

import argparse

from trt_nm.limits import arg_type, check_batch, check_epochs, check_seed, check_T, check_workers


def _int_at_least(text: str, low: int) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if v < low:
        raise argparse.ArgumentTypeError(f"must be >= {low}, got {v}")
    return v


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _int_at_least(text, 1)


def nonneg_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _int_at_least(text, 0)


def finite_float(text: str) -> float:
    import math

    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return v


def nonneg_float(text: str) -> float:
    v = finite_float(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return v


# argparse types that apply the bounds of trt_nm.limits: a value typed on the command line meets
# the same validator as the same value read from a checkpoint or a file (ConfigError becomes
# argparse's one-line usage error, exit 2)
timesteps = arg_type(check_T)
batch_size = arg_type(check_batch)
workers = arg_type(check_workers)
seed = arg_type(check_seed)
epochs = arg_type(check_epochs)
