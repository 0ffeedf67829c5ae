"""What every loss shares: the call shape's validation and the float32 upcast."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from trt_nm.errors import ConfigError

#: ``model.named_parameters()``: ``(name, tensor)`` pairs
NamedParams = Iterable[tuple[str, torch.Tensor]]


def as_float(x: torch.Tensor) -> torch.Tensor:
    """Upcast half/bfloat16 to float32 (loss maths); float32 and float64 stay as they are."""
    return x if x.dtype == torch.float64 else x.float()


def check_logits(outputs: torch.Tensor, targets: torch.Tensor) -> None:
    """Raise :class:`ConfigError` unless ``outputs`` is ``[T, B, C]`` and ``targets`` is ``[B]``."""
    if outputs.dim() != 3:
        raise ConfigError(f"outputs must be per-timestep logits [T, B, C], got {list(outputs.shape)}")
    if targets.shape != outputs.shape[1:2]:
        raise ConfigError(
            f"targets must be [B] = [{outputs.shape[1]}], got {list(targets.shape)}"
        )


__all__ = ["NamedParams", "as_float", "check_logits"]
