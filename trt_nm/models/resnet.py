"""The residual families: ``resnet19`` (TET/TRT, CIFAR) and ``sew-resnet34`` (ImageNet)."""

from __future__ import annotations

from torch import nn

from trt_nm.models.blocks import (
    BasicBlock,
    NeuronFactory,
    SEWBlock,
    conv_bn_lif,
    require_input_size,
)
from trt_nm.models.registry import register_model
from trt_nm.models.spiking import SpikingSequential


@register_model("resnet19", (32, 32), "ResNet-19 (TET/TRT): 3x128, 3x256, 2x512, spiking FC 256")
def resnet19(
    in_channels: int, num_classes: int, input_size: tuple[int, int], neuron: NeuronFactory
) -> SpikingSequential:
    """conv-BN-LIF 128, BasicBlocks 3x128, 3x256 (stride 2), 2x512 (stride 2), global AvgPool,
    FC 256-LIF, Linear -> ``[T, B, num_classes]`` (H, W >= 4)."""
    require_input_size(input_size, 4, "resnet19")
    layers: list[nn.Module] = conv_bn_lif(in_channels, 128, neuron)
    c = 128
    for cout, blocks, stride in ((128, 3, 1), (256, 3, 2), (512, 2, 2)):
        for i in range(blocks):
            layers.append(BasicBlock(c, cout, stride if i == 0 else 1, neuron))
            c = cout
    h, w = (input_size[0] + 3) // 4, (input_size[1] + 3) // 4
    layers += [
        nn.AvgPool2d((h, w)),
        nn.Flatten(),
        nn.Linear(512, 256),
        neuron(),
        nn.Linear(256, num_classes),
    ]
    return SpikingSequential(*layers)


@register_model(
    "sew-resnet34", (224, 224), "SEW-ResNet-34 (ADD), stem pooling as AvgPool2d so NIR can express it"
)
def sew_resnet34(
    in_channels: int, num_classes: int, input_size: tuple[int, int], neuron: NeuronFactory
) -> SpikingSequential:
    """Stem conv7 stride 2-BN-LIF, AvgPool2, SEW blocks 3x64, 4x128, 6x256, 3x512 (stride 2 at
    each stage change), global AvgPool, Linear -> ``[T, B, num_classes]`` (H, W >= 32)."""
    require_input_size(input_size, 32, "sew-resnet34")
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False),
        nn.BatchNorm2d(64),
        neuron(),
        nn.AvgPool2d(2),
    ]
    c = 64
    for cout, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for i in range(blocks):
            layers.append(SEWBlock(c, cout, stride if i == 0 else 1, neuron))
            c = cout
    h, w = input_size[0], input_size[1]
    h, w = (h + 1) // 2, (w + 1) // 2  # stem conv: k 7, stride 2, pad 3
    h, w = h // 2, w // 2  # stem pool 2
    for _ in range(3):  # three stride-2 3x3 convs with padding 1
        h, w = (h + 1) // 2, (w + 1) // 2
    layers += [nn.AvgPool2d((h, w)), nn.Flatten(), nn.Linear(512, num_classes)]
    return SpikingSequential(*layers)


__all__ = ["resnet19", "sew_resnet34"]
