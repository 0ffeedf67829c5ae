"""The loss registry: ``register_loss``, ``get_loss``, ``list_losses``.

Every loss is a function ``fn(outputs [T, B, C], targets [B], named_parameters=None, **hp)``
returning a scalar, registered with the frozen config dataclass that validates its
hyperparameters (None for a loss without any).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from trt_nm.losses.common import NamedParams
from trt_nm.registry import Registry

LossFn = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class LossEntry:
    """A registered loss.

    Attributes:
        name: registry name (``"trt"``, ...).
        fn: ``fn(outputs [T, B, C], targets [B], named_parameters=None, **hyperparameters)``
            -> scalar tensor.
        config: frozen dataclass of the hyperparameters (validates them), or None when the loss
            takes none.
    """

    name: str
    fn: LossFn
    config: type | None


_LOSSES: Registry[LossEntry] = Registry("loss")


def register_loss(name: str, fn: LossFn, config: type | None = None) -> LossEntry:
    """Add (or replace) the loss ``name``; returns its entry."""
    return _LOSSES.register(name, LossEntry(name, fn, config))


def get_loss(name: str) -> LossEntry:
    """The loss called ``name``; unknown names raise a ConfigError listing the valid ones."""
    return _LOSSES.get(name)


def list_losses() -> list[str]:
    """Registered loss names, sorted."""
    return _LOSSES.names()


__all__ = ["LossEntry", "LossFn", "NamedParams", "get_loss", "list_losses", "register_loss"]
