"""The ``vggsnn`` family (TET/TRT's VGGSNN for DVS data, 48x48 input)."""

from __future__ import annotations

from torch import nn

from trt_nm.models.blocks import NeuronFactory, conv_bn_lif, require_input_size
from trt_nm.models.registry import register_model
from trt_nm.models.spiking import SpikingSequential


@register_model("vggsnn", (48, 48), "VGGSNN (TET/TRT): 64-128-AP-256-256-AP-512-512-AP-512-512-AP")
def vggsnn(
    in_channels: int, num_classes: int, input_size: tuple[int, int], neuron: NeuronFactory
) -> SpikingSequential:
    """64C3-128C3-AP2-256C3-256C3-AP2-512C3-512C3-AP2-512C3-512C3-AP2 (conv-BN-LIF each),
    Flatten, Linear(512 * H/16 * W/16 -> num_classes) (H, W >= 16)."""
    require_input_size(input_size, 16, "vggsnn")
    cfg = [64, 128, "A", 256, 256, "A", 512, 512, "A", 512, 512, "A"]
    layers: list[nn.Module] = []
    c = in_channels
    for v in cfg:
        if v == "A":
            layers.append(nn.AvgPool2d(2))
        else:
            layers += conv_bn_lif(c, int(v), neuron)
            c = int(v)
    h, w = input_size[0] // 16, input_size[1] // 16
    layers += [nn.Flatten(), nn.Linear(512 * h * w, num_classes)]
    return SpikingSequential(*layers)


__all__ = ["vggsnn"]
