"""Building blocks of the zoo families: residual blocks and the conv-BN-LIF triple."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from trt_nm.errors import ConfigError
from trt_nm.models.bn_fold import conv_bn
from trt_nm.models.spiking import SpikingSequential, TimeMajor
from trt_nm.neuron.lif import SpikingNeuron

#: builds one neuron module (the backend's, with the model's neuron config)
NeuronFactory = Callable[[], SpikingNeuron]


def conv_bn_lif(cin: int, cout: int, neuron: NeuronFactory) -> list[nn.Module]:
    """``[Conv2d(cin, cout, 3, padding 1, no bias), BatchNorm2d(cout), neuron()]``."""
    return [nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), neuron()]


def require_input_size(input_size: tuple[int, int], factor: int, arch: str) -> None:
    """Raise ConfigError unless ``input_size`` (H, W pixels) is at least ``factor`` each way."""
    if input_size[0] < factor or input_size[1] < factor:
        raise ConfigError(f"{arch} needs input at least {factor}x{factor}, got {input_size}")


class BasicBlock(TimeMajor):
    """ResNet-19 block (TET/TRT): ``out = LIF(BN(conv(LIF(BN(conv(x))))) + shortcut(x))``.

    The residual is added to the input current of the second neuron (membrane-level).
    ``shortcut`` is a 1x1 conv + BN when the shape changes, else the identity.
    Input ``[T, B, cin, H, W]``, output ``[T, B, cout, H/stride, W/stride]`` (spikes).
    """

    def __init__(self, cin: int, cout: int, stride: int, neuron: NeuronFactory) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.lif1 = neuron()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = (
            SpikingSequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else SpikingSequential()
        )
        self.lif2 = neuron()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [T, B, cin, H, W]`` -> spikes ``[T, B, cout, H', W']``."""
        T, B = x.shape[:2]
        h = conv_bn(self.conv1, self.bn1, x.flatten(0, 1))
        h = self.lif1(h.reshape(T, B, *h.shape[1:]))
        h = conv_bn(self.conv2, self.bn2, h.flatten(0, 1))
        h = h.reshape(T, B, *h.shape[1:]) + self.shortcut(x)
        return self.lif2(h)


class SEWBlock(TimeMajor):
    """SEW-ResNet block with ADD connection (Fang et al., NeurIPS 2021).

    ``out = LIF(BN(conv(LIF(BN(conv(x)))))) + downsample(x)``: spikes are added after the
    second neuron, so outputs are small integers. ``downsample`` is conv1x1 + BN + LIF when
    the shape changes, else the identity.
    """

    def __init__(self, cin: int, cout: int, stride: int, neuron: NeuronFactory) -> None:
        super().__init__()
        self.residual = SpikingSequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
            nn.BatchNorm2d(cout),
            neuron(),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout),
            neuron(),
        )
        self.downsample = (
            SpikingSequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout), neuron()
            )
            if stride != 1 or cin != cout
            else SpikingSequential()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [T, B, cin, H, W]`` -> ``[T, B, cout, H', W']`` (sums of spikes, 0..2)."""
        return self.residual(x) + self.downsample(x)


__all__ = ["BasicBlock", "NeuronFactory", "SEWBlock", "conv_bn_lif", "require_input_size"]
