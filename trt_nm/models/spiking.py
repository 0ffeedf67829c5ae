"""Time-major containers of the zoo: :class:`SpikingSequential`, :class:`TimeMajor`,
:class:`SpikingModel`, and :func:`randomize_batchnorm` for exactness checks.

Stateless layers (conv, BatchNorm, pooling, linear) run once over the merged ``T*B`` batch, so
BatchNorm statistics are shared over time; neurons loop over T.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from trt_nm.errors import ConfigError
from trt_nm.models.bn_fold import conv_bn
from trt_nm.neuron.lif import SpikingNeuron


@torch.no_grad()
def randomize_batchnorm(model: nn.Module) -> nn.Module:
    """Give every BatchNorm random, realistic eval statistics (mean in [-0.2, 0.2], variance in
    [0.5, 1.5], gain in [0.6, 1.6], shift in [-0.1, 0.4]; torch's global RNG), in place: freshly
    built models have trivial ones (mean 0, variance 1), which hide folding and rounding effects
    that exactness checks are meant to catch. Returns ``model``."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            if m.weight is not None:
                m.weight.uniform_(0.6, 1.6)
            if m.bias is not None:
                m.bias.uniform_(-0.1, 0.4)
    return model


class TimeMajor(nn.Module):
    """Marker base for composite blocks whose forward takes ``[T, B, ...]``."""


class SpikingSequential(nn.Sequential):
    """``nn.Sequential`` over time-major tensors ``[T, B, ...] -> [T, B, ...]``.

    Children that are :class:`SpikingNeuron` or :class:`TimeMajor` receive ``[T, B, ...]``;
    every other child is stateless and receives the merged batch ``[T*B, ...]``. A Conv/Linear
    directly followed by a BatchNorm runs as :func:`trt_nm.models.bn_fold.conv_bn` (folded in
    eval mode).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """``x [T, B, ...]`` -> ``[T, B, ...]``."""
        T, B = x.shape[0], x.shape[1]
        flat: torch.Tensor | None = None
        layers = list(self)
        i = 0
        while i < len(layers):
            layer = layers[i]
            if isinstance(layer, (SpikingNeuron, TimeMajor)):
                if flat is not None:
                    x, flat = flat.reshape(T, B, *flat.shape[1:]), None
                x = layer(x)
            else:
                inp = x.flatten(0, 1) if flat is None else flat
                nxt = layers[i + 1] if i + 1 < len(layers) else None
                if isinstance(nxt, nn.modules.batchnorm._BatchNorm) and isinstance(layer, (nn.Conv2d, nn.Linear)):
                    flat = conv_bn(layer, nxt, inp)  # folded when evaluating (trt_nm.models.bn_fold)
                    i += 1
                else:
                    flat = layer(inp)
            i += 1
        return x if flat is None else flat.reshape(T, B, *flat.shape[1:])


class SpikingModel(nn.Module):
    """A zoo model: ``body`` maps ``[T, B, *input_shape]`` to logits ``[T, B, num_classes]``.

    ``spec`` holds the plain-data arguments that rebuild the same architecture
    (see :func:`trt_nm.models.build_model`); checkpoints store it.
    """

    def __init__(self, body: SpikingSequential, spec: dict[str, Any]) -> None:
        super().__init__()
        self.body = body
        self.spec = dict(spec)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """``(C, H, W)`` (or ``(C, H, W)`` of the image an ``mlp`` flattens)."""
        return tuple(self.spec["input_shape"])

    @property
    def num_classes(self) -> int:
        """Number of output classes C."""
        return int(self.spec["num_classes"])

    @property
    def T(self) -> int:
        """Default number of timesteps (forward accepts any T)."""
        return int(self.spec["T"])

    def neurons(self) -> list[tuple[str, SpikingNeuron]]:
        """All neuron modules with their qualified names, in forward order."""
        return [(n, m) for n, m in self.named_modules() if isinstance(m, SpikingNeuron)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [T, B, *input_shape]`` -> logits ``[T, B, num_classes]``."""
        shape = tuple(x.shape[2:])
        if x.dim() < 3 or shape != self.input_shape:
            raise ConfigError(
                f"expected time-major input [T, B, {', '.join(map(str, self.input_shape))}], "
                f"got {list(x.shape)}"
            )
        return self.body(x)


__all__ = ["SpikingModel", "SpikingSequential", "TimeMajor", "randomize_batchnorm"]
