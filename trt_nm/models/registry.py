"""The model zoo registry: :func:`register_model`, :func:`list_models`, :func:`get_model_entry`,
:func:`build_model` and :func:`build_from_spec`.

A family module registers a builder ``builder(in_channels, num_classes, input_size, neuron,
**kwargs) -> SpikingSequential`` with :func:`register_model`; :func:`build_model` binds it to a
neuron backend and wraps it in a :class:`~trt_nm.models.spiking.SpikingModel`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from trt_nm.config import NeuronConfig
from trt_nm.errors import ConfigError
from trt_nm.models.spiking import SpikingModel, SpikingSequential
from trt_nm.neuron.backends import get_backend
from trt_nm.registry import Registry

Builder = Callable[..., SpikingSequential]


@dataclass(frozen=True)
class ModelEntry:
    """A registered architecture.

    Attributes:
        name: registry name (``"resnet19"``, ...).
        builder: ``builder(in_channels, num_classes, input_size, neuron, **kw)`` ->
            :class:`SpikingSequential`; ``neuron()`` makes one neuron module.
        default_input_size: ``(H, W)`` pixels when ``build_model`` gets none.
        description: one line for ``trt-nm train --list``-style listings.
    """

    name: str
    builder: Builder
    default_input_size: tuple[int, int]
    description: str


_REGISTRY: Registry[ModelEntry] = Registry("model")


def register_model(name: str, default_input_size: tuple[int, int], description: str) -> Callable[[Builder], Builder]:
    """Decorator registering ``builder(in_channels, num_classes, input_size, neuron, **kw)``."""

    def deco(fn: Builder) -> Builder:
        _REGISTRY.register(name, ModelEntry(name, fn, default_input_size, description))
        return fn

    return deco


def list_models() -> list[str]:
    """Registered architecture names, sorted."""
    return _REGISTRY.names()


def get_model_entry(name: str) -> ModelEntry:
    """The registered architecture ``name``; unknown names list the valid ones."""
    return _REGISTRY.get(name)


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


__all__ = ["Builder", "ModelEntry", "build_from_spec", "build_model", "get_model_entry", "list_models", "register_model"]
