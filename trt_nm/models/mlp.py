"""The ``mlp`` family: Flatten, spiking hidden layers with BatchNorm, linear classifier."""

from __future__ import annotations

from torch import nn

from trt_nm.errors import ConfigError
from trt_nm.models.blocks import NeuronFactory
from trt_nm.models.registry import check_widths, register_model
from trt_nm.models.spiking import SpikingSequential


def _check_kwargs(kwargs: dict, where: str) -> dict:
    """A stored spec's options for ``mlp``: only ``hidden``, a list of layer widths."""
    unknown = sorted(set(kwargs) - {"hidden"})
    if unknown:
        raise ConfigError(f"{where}: mlp takes no option {unknown[0]!r} (options: hidden)")
    return {"hidden": check_widths(kwargs["hidden"], "hidden", where)} if "hidden" in kwargs else {}


@register_model("mlp", (28, 28), "Flatten-256-256 spiking MLP with BatchNorm, linear classifier", _check_kwargs)
def mlp(
    in_channels: int,
    num_classes: int,
    input_size: tuple[int, int],
    neuron: NeuronFactory,
    hidden: tuple[int, ...] = (256, 256),
) -> SpikingSequential:
    """``[T, B, in_channels, H, W]`` -> Flatten -> (Linear-BN-LIF) per ``hidden`` width ->
    Linear -> logits ``[T, B, num_classes]``."""
    features = in_channels * input_size[0] * input_size[1]
    layers: list[nn.Module] = [nn.Flatten()]
    for h in hidden:
        layers += [nn.Linear(features, h, bias=False), nn.BatchNorm1d(h), neuron()]
        features = h
    layers.append(nn.Linear(features, num_classes))
    return SpikingSequential(*layers)


__all__ = ["mlp"]
