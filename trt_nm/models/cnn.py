"""The ``cnn-small`` family: a small spiking CNN that trains quickly on CPU (28/34 px input)."""

from __future__ import annotations

from torch import nn

from trt_nm.models.blocks import NeuronFactory, conv_bn_lif, require_input_size
from trt_nm.models.registry import register_model
from trt_nm.models.spiking import SpikingSequential


@register_model("cnn-small", (28, 28), "32C3-AP2-64C3-AP2-FC128, fast on CPU for 28/34 px input")
def cnn_small(
    in_channels: int, num_classes: int, input_size: tuple[int, int], neuron: NeuronFactory
) -> SpikingSequential:
    """32C3-BN-LIF, AP2, 64C3-BN-LIF, AP2, FC128-LIF, Linear: ``[T, B, C, H, W]`` ->
    ``[T, B, num_classes]`` (H, W >= 4)."""
    require_input_size(input_size, 4, "cnn-small")
    h, w = input_size[0] // 4, input_size[1] // 4
    return SpikingSequential(
        *conv_bn_lif(in_channels, 32, neuron),
        nn.AvgPool2d(2),
        *conv_bn_lif(32, 64, neuron),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * h * w, 128),
        neuron(),
        nn.Linear(128, num_classes),
    )


__all__ = ["cnn_small"]
