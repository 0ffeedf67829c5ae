"""Model zoo: ``build_model(arch, ...)`` and ``list_models()``.

Every model takes time-major input ``[T, B, C, H, W]`` (or ``[T, B, F]`` for ``mlp``) and
returns per-timestep logits ``[T, B, num_classes]`` from a non-spiking final Linear.
Stateless layers (conv, BatchNorm, pooling, linear) run once over the merged ``T*B`` batch,
so BatchNorm statistics are shared over time; neurons loop over T.

Neuron modules hold no parameters, so parameter names and shapes are the same for every
backend and a ``state_dict`` moves between backends unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from trt_nm.config import NeuronConfig
from trt_nm.errors import ConfigError
from trt_nm.models.bn_fold import conv_bn
from trt_nm.neuron.backends import get_backend
from trt_nm.neuron.lif import SpikingNeuron
from trt_nm.registry import Registry


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


class SpikingSequential(nn.Sequential):
    """``nn.Sequential`` over time-major tensors ``[T, B, ...] -> [T, B, ...]``.

    Children that are :class:`SpikingNeuron` or :class:`TimeMajor` receive ``[T, B, ...]``;
    every other child is stateless and receives the merged batch ``[T*B, ...]``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
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


class TimeMajor(nn.Module):
    """Marker base for composite blocks whose forward takes ``[T, B, ...]``."""


class BasicBlock(TimeMajor):
    """ResNet-19 block (TET/TRT): ``out = LIF(BN(conv(LIF(BN(conv(x))))) + shortcut(x))``.

    The residual is added to the input current of the second neuron (membrane-level).
    ``shortcut`` is a 1x1 conv + BN when the shape changes, else the identity.
    """

    def __init__(self, cin: int, cout: int, stride: int, neuron: Callable[[], SpikingNeuron]):
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

    def __init__(self, cin: int, cout: int, stride: int, neuron: Callable[[], SpikingNeuron]):
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
        return self.residual(x) + self.downsample(x)


class SpikingModel(nn.Module):
    """A zoo model: ``body`` maps ``[T, B, *input_shape]`` to logits ``[T, B, num_classes]``.

    ``spec`` holds the plain-data arguments that rebuild the same architecture
    (see :func:`build_model`); checkpoints store it.
    """

    def __init__(self, body: SpikingSequential, spec: dict[str, Any]) -> None:
        super().__init__()
        self.body = body
        self.spec = dict(spec)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.spec["input_shape"])

    @property
    def num_classes(self) -> int:
        return int(self.spec["num_classes"])

    @property
    def T(self) -> int:
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


@dataclass(frozen=True)
class ModelEntry:
    """A registered architecture."""

    name: str
    builder: Callable[..., SpikingSequential]
    default_input_size: tuple[int, int]
    description: str


_REGISTRY: Registry[ModelEntry] = Registry("model")


def register_model(name: str, default_input_size: tuple[int, int], description: str):
    """Decorator registering ``builder(in_channels, num_classes, input_size, neuron, **kw)``."""

    def deco(fn: Callable[..., SpikingSequential]) -> Callable[..., SpikingSequential]:
        _REGISTRY.register(name, ModelEntry(name, fn, default_input_size, description))
        return fn

    return deco


def list_models() -> list[str]:
    """Registered architecture names."""
    return _REGISTRY.names()


def get_model_entry(name: str) -> ModelEntry:
    """The registered architecture ``name``; unknown names list the valid ones."""
    return _REGISTRY.get(name)


def _conv_bn_lif(cin: int, cout: int, neuron: Callable[[], SpikingNeuron]) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), neuron()]


def _check_divisible(input_size: tuple[int, int], factor: int, arch: str) -> None:
    if input_size[0] < factor or input_size[1] < factor:
        raise ConfigError(f"{arch} needs input at least {factor}x{factor}, got {input_size}")


@register_model("mlp", (28, 28), "Flatten-256-256 spiking MLP with BatchNorm, linear classifier")
def _mlp(in_channels, num_classes, input_size, neuron, hidden=(256, 256)):
    features = in_channels * input_size[0] * input_size[1]
    layers: list[nn.Module] = [nn.Flatten()]
    for h in hidden:
        layers += [nn.Linear(features, h, bias=False), nn.BatchNorm1d(h), neuron()]
        features = h
    layers.append(nn.Linear(features, num_classes))
    return SpikingSequential(*layers)


@register_model("cnn-small", (28, 28), "32C3-AP2-64C3-AP2-FC128, fast on CPU for 28/34 px input")
def _cnn_small(in_channels, num_classes, input_size, neuron):
    _check_divisible(input_size, 4, "cnn-small")
    h, w = input_size[0] // 4, input_size[1] // 4
    return SpikingSequential(
        *_conv_bn_lif(in_channels, 32, neuron),
        nn.AvgPool2d(2),
        *_conv_bn_lif(32, 64, neuron),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * h * w, 128),
        neuron(),
        nn.Linear(128, num_classes),
    )


@register_model("vggsnn", (48, 48), "VGGSNN (TET/TRT): 64-128-AP-256-256-AP-512-512-AP-512-512-AP")
def _vggsnn(in_channels, num_classes, input_size, neuron):
    _check_divisible(input_size, 16, "vggsnn")
    cfg = [64, 128, "A", 256, 256, "A", 512, 512, "A", 512, 512, "A"]
    layers: list[nn.Module] = []
    c = in_channels
    for v in cfg:
        if v == "A":
            layers.append(nn.AvgPool2d(2))
        else:
            layers += _conv_bn_lif(c, int(v), neuron)
            c = int(v)
    h, w = input_size[0] // 16, input_size[1] // 16
    layers += [nn.Flatten(), nn.Linear(512 * h * w, num_classes)]
    return SpikingSequential(*layers)


@register_model("resnet19", (32, 32), "ResNet-19 (TET/TRT): 3x128, 3x256, 2x512, spiking FC 256")
def _resnet19(in_channels, num_classes, input_size, neuron):
    _check_divisible(input_size, 4, "resnet19")
    layers: list[nn.Module] = _conv_bn_lif(in_channels, 128, neuron)
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
def _sew_resnet34(in_channels, num_classes, input_size, neuron):
    _check_divisible(input_size, 32, "sew-resnet34")
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


def build_model(
    arch: str,
    *,
    backend: str = "torch",
    num_classes: int = 10,
    in_channels: int = 1,
    T: int = 4,
    input_size: tuple[int, int] | None = None,
    neuron: NeuronConfig | dict[str, Any] | None = None,
    **kwargs: Any,
) -> SpikingModel:
    """Build a zoo architecture on a neuron backend.

    Args:
        arch: one of :func:`list_models`.
        backend: one of :func:`trt_nm.list_backends`.
        num_classes: output classes C.
        in_channels: input channels (for ``mlp``: channels of the image it flattens).
        T: default number of timesteps (stored with the model; forward accepts any T).
        input_size: ``(H, W)``; the architecture's default when None.
        neuron: neuron parameters (the paper's LIF when None).
        **kwargs: architecture-specific options (e.g. ``hidden`` for ``mlp``).

    Returns:
        A :class:`SpikingModel` mapping ``[T, B, in_channels, H, W]`` to ``[T, B, num_classes]``.
    """
    entry = get_model_entry(arch)
    if int(T) != T or T < 1:
        raise ConfigError(f"T must be an integer >= 1, got {T}")
    if num_classes < 1 or in_channels < 1:
        raise ConfigError("num_classes and in_channels must be >= 1")
    cfg = neuron if isinstance(neuron, NeuronConfig) else NeuronConfig(**(neuron or {}))
    be = get_backend(backend)
    size = tuple(int(s) for s in (input_size or entry.default_input_size))
    if len(size) != 2 or min(size) < 1:
        raise ConfigError(f"input_size must be (H, W) with positive sizes, got {input_size}")
    body = entry.builder(in_channels, num_classes, size, lambda: be.neuron(cfg), **kwargs)
    spec = {
        "arch": arch,
        "backend": backend,
        "num_classes": int(num_classes),
        "in_channels": int(in_channels),
        "T": int(T),
        "input_size": list(size),
        "input_shape": [int(in_channels), *size],
        "neuron": cfg.to_dict(),
        "kwargs": {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()},
    }
    return SpikingModel(body, spec)


def build_from_spec(spec: dict[str, Any], backend: str | None = None) -> SpikingModel:
    """Rebuild a model from :attr:`SpikingModel.spec` (optionally on another backend)."""
    return build_model(
        spec["arch"],
        backend=backend or spec["backend"],
        num_classes=spec["num_classes"],
        in_channels=spec["in_channels"],
        T=spec["T"],
        input_size=tuple(spec["input_size"]),
        neuron=NeuronConfig(**spec["neuron"]),
        **{k: tuple(v) if isinstance(v, list) else v for k, v in spec.get("kwargs", {}).items()},
    )
