"""The model zoo registry: :func:`register_model`, :func:`list_models`, :func:`get_model_entry`,
:func:`build_model` and :func:`build_from_spec`.

A family module registers a builder ``builder(in_channels, num_classes, input_size, neuron,
**kwargs) -> SpikingSequential`` with :func:`register_model`; :func:`build_model` binds it to a
neuron backend and wraps it in a :class:`~trt_nm.models.spiking.SpikingModel`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from trt_nm.config import NeuronConfig
from trt_nm.errors import ConfigError
from trt_nm.limits import (
    MAX_CLASSES,
    MAX_INPUT_SIDE,
    MAX_WIDTH,
    check_int,
    check_parameter_count,
    check_T,
)
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
        check_kwargs: validates the architecture-specific options of a model spec
            (``check_kwargs(kwargs, where) -> kwargs``, one-line ConfigError); None: the
            generic check (names the builder takes, plain scalars or lists of widths).
    """

    name: str
    builder: Builder
    default_input_size: tuple[int, int]
    description: str
    check_kwargs: Callable[[dict[str, Any], str], dict[str, Any]] | None = None


_REGISTRY: Registry[ModelEntry] = Registry("model")


def register_model(
    name: str,
    default_input_size: tuple[int, int],
    description: str,
    check_kwargs: Callable[[dict[str, Any], str], dict[str, Any]] | None = None,
) -> Callable[[Builder], Builder]:
    """Decorator registering ``builder(in_channels, num_classes, input_size, neuron, **kw)``
    (``check_kwargs``: see :class:`ModelEntry`)."""

    def deco(fn: Builder) -> Builder:
        _REGISTRY.register(name, ModelEntry(name, fn, default_input_size, description, check_kwargs))
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
    T = check_T(T)
    num_classes = check_int(num_classes, "num_classes", 1, MAX_CLASSES)
    in_channels = check_int(in_channels, "in_channels", 1, MAX_WIDTH)
    cfg = neuron if isinstance(neuron, NeuronConfig) else NeuronConfig(**(neuron or {}))
    be = get_backend(backend)
    size = _input_size(entry.default_input_size if input_size is None else input_size, "")
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


def _input_size(value: Any, where: str) -> tuple[int, int]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or len(value) != 2:
        src = f" ({where})" if where else ""
        raise ConfigError(f"input_size{src} must be (H, W), got {_short(value)}")
    return tuple(check_int(v, "input_size", 1, MAX_INPUT_SIDE, where=where) for v in value)  # type: ignore[return-value]


def _short(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."


#: most layers a list-of-widths option (``hidden`` of ``mlp``) may declare
MAX_LAYERS = 1024


def check_widths(value: Any, name: str, where: str) -> list[int]:
    """A list of layer widths: 1..``MAX_LAYERS`` integers in ``[1, MAX_WIDTH]``."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or not 0 < len(value) <= MAX_LAYERS:
        raise ConfigError(f"{name} ({where}) must be a list of 1 to {MAX_LAYERS} layer widths, got {_short(value)}")
    return [check_int(v, f"{name} width", 1, MAX_WIDTH, where=where) for v in value]


def _generic_kwargs(entry: ModelEntry, kwargs: dict[str, Any], where: str) -> dict[str, Any]:
    params = list(inspect.signature(entry.builder).parameters)[4:]  # after the four positional ones
    out: dict[str, Any] = {}
    for k, v in kwargs.items():
        if k not in params:
            valid = ", ".join(params) or "none"
            raise ConfigError(f"{where}: {entry.name} takes no option {_short(k)} (options: {valid})")
        if isinstance(v, (list, tuple)):
            out[k] = check_widths(v, k, where)
        elif isinstance(v, bool) or v is None or (isinstance(v, str) and len(v) <= 256):
            out[k] = v
        elif isinstance(v, (int, float)):
            out[k] = check_int(v, k, 0, MAX_WIDTH, where=where) if isinstance(v, int) else v
        else:
            raise ConfigError(f"{where}: option {k} of {entry.name} has an unsupported value {_short(v)}")
    return out


def validate_spec(spec: Any, *, where: str = "model spec") -> dict[str, Any]:
    """Check a model spec read from a file (:attr:`SpikingModel.spec`) before anything is built.

    Every value meets the bounds of :mod:`trt_nm.limits` (the same as the command line's): a
    registered ``arch`` and ``backend``, ``T`` by :func:`~trt_nm.limits.check_T`,
    ``num_classes`` <= ``MAX_CLASSES``, ``in_channels`` and widths <= ``MAX_WIDTH``,
    ``input_size`` sides <= ``MAX_INPUT_SIDE``, a valid neuron config, only the options the
    architecture takes; then the architecture's parameter count (computed on the ``meta``
    device, which allocates nothing) must pass :func:`~trt_nm.limits.check_parameter_count`.
    Returns the spec with plain, normalised values; every failure is one ConfigError line.
    """
    if not isinstance(spec, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(spec).__name__}")
    arch = spec.get("arch")
    if not isinstance(arch, str):
        raise ConfigError(f"{where}: arch must be a name, got {_short(arch)}")
    entry = get_model_entry(arch)
    backend = spec.get("backend", "torch")
    if not isinstance(backend, str):
        raise ConfigError(f"{where}: backend must be a name, got {_short(backend)}")
    get_backend(backend)
    num_classes = check_int(spec.get("num_classes"), "num_classes", 1, MAX_CLASSES, where=where)
    in_channels = check_int(spec.get("in_channels"), "in_channels", 1, MAX_WIDTH, where=where)
    T = check_T(spec.get("T"), where=where)
    size = _input_size(spec.get("input_size"), where)
    shape = spec.get("input_shape", [in_channels, *size])
    if not isinstance(shape, (list, tuple)) or list(shape) != [in_channels, *size]:
        raise ConfigError(f"{where}: input_shape {_short(shape)} is not [in_channels, *input_size]")
    neuron = spec.get("neuron", {})
    if not isinstance(neuron, dict):
        raise ConfigError(f"{where}: neuron must be a mapping, got {_short(neuron)}")
    try:
        cfg = NeuronConfig(**neuron)
    except TypeError as exc:
        raise ConfigError(f"{where}: bad neuron config ({exc})") from None
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    kwargs = spec.get("kwargs", {})
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise ConfigError(f"{where}: kwargs must be a mapping of option names, got {_short(kwargs)}")
    kwargs = (entry.check_kwargs or (lambda kw, w: _generic_kwargs(entry, kw, w)))(kwargs, where)
    out = {
        **spec,
        "arch": arch,
        "backend": backend,
        "num_classes": num_classes,
        "in_channels": in_channels,
        "T": T,
        "input_size": list(size),
        "input_shape": [in_channels, *size],
        "neuron": cfg.to_dict(),
        "kwargs": kwargs,
    }
    count = sum(s.numel() for s in declared_state_shapes(out).values())
    check_parameter_count(count, f"{arch} model", where=where)
    return out


def declared_state_shapes(spec: dict[str, Any]) -> dict[str, torch.Size]:
    """The ``state_dict`` entry shapes of the model a (validated) spec describes, computed on
    the ``meta`` device: nothing is allocated, however large the spec."""
    entry = get_model_entry(spec["arch"])
    cfg = NeuronConfig(**spec["neuron"])
    be = get_backend("torch")  # neurons hold no state: every backend has the same state dict
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.get("kwargs", {}).items()}
    with torch.device("meta"):
        body = entry.builder(
            spec["in_channels"], spec["num_classes"], tuple(spec["input_size"]), lambda: be.neuron(cfg), **kwargs
        )
        model = SpikingModel(body, spec)
    return {k: v.shape for k, v in model.state_dict().items()}


def build_from_spec(spec: dict[str, Any], backend: str | None = None) -> SpikingModel:
    """Rebuild a model from :attr:`SpikingModel.spec` (optionally on another backend); the spec
    is checked by :func:`validate_spec` first."""
    spec = validate_spec(spec)
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


__all__ = [
    "MAX_LAYERS", "Builder", "ModelEntry", "build_from_spec", "build_model", "check_widths",
    "declared_state_shapes", "get_model_entry", "list_models", "register_model", "validate_spec",
]
