"""``Loss``: a registered loss bound to a frozen, validated config, as an ``nn.Module``."""

from __future__ import annotations

import torch
from torch import nn

from trt_nm.errors import ConfigError
from trt_nm.losses.common import NamedParams
from trt_nm.losses.registry import get_loss


class Loss(nn.Module):
    """A loss bound to a frozen config: ``Loss("trt", lamb=5e-5)(outputs, targets, named_params)``.

    Unknown names raise a ConfigError listing the valid losses; bad hyperparameters raise
    ConfigError too.
    """

    def __init__(self, name: str, **kwargs: float) -> None:
        super().__init__()
        entry = get_loss(name)
        if entry.config is None:
            if kwargs:
                raise ConfigError(f"loss {name!r} takes no hyperparameters, got {sorted(kwargs)}")
            self.config = None
        else:
            try:
                self.config = entry.config(**kwargs)
            except TypeError as exc:
                raise ConfigError(f"bad hyperparameters for loss {name!r}: {exc}") from None
        self.name = name
        self._fn = entry.fn

    def forward(
        self, outputs: torch.Tensor, targets: torch.Tensor, named_parameters: NamedParams | None = None
    ) -> torch.Tensor:
        """``outputs [T, B, C]``, ``targets [B]`` (and the model's named parameters) -> scalar."""
        kw = {} if self.config is None else vars(self.config)
        return self._fn(outputs, targets, named_parameters, **kw)

    def extra_repr(self) -> str:
        return f"{self.name}, {self.config}"


def TRTLoss(**kwargs: float) -> Loss:
    """Module wrapper for :func:`trt_nm.losses.trt_loss`."""
    return Loss("trt", **kwargs)


def TETLoss(**kwargs: float) -> Loss:
    """Module wrapper for :func:`trt_nm.losses.tet_loss`."""
    return Loss("tet", **kwargs)


def SDTLoss() -> Loss:
    """Module wrapper for :func:`trt_nm.losses.sdt_loss`."""
    return Loss("sdt")


__all__ = ["Loss", "SDTLoss", "TETLoss", "TRTLoss"]
