"""Neuron backends: a small Protocol and a registry (``list_backends`` / ``get_backend``).

A backend turns a :class:`~trt_nm.config.NeuronConfig` into a
:class:`~trt_nm.neuron.lif.SpikingNeuron` built on a library's own neuron implementation,
configured to reproduce the canonical neuron exactly (forward spikes and backward gradients).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from trt_nm.config import NeuronConfig
from trt_nm.errors import MissingDependencyError
from trt_nm.neuron.lif import SpikingNeuron
from trt_nm.registry import Registry


@runtime_checkable
class Backend(Protocol):
    """What a neuron backend provides."""

    name: str
    #: pip extra that installs the backend's library (None: always available)
    extra: str | None
    #: importable module the backend needs (None: nothing beyond torch)
    requires: str | None

    def available(self) -> bool:
        """Whether the backend's library can be imported here."""
        ...

    def neuron(self, cfg: NeuronConfig) -> SpikingNeuron:
        """A multi-step neuron module that reproduces the canonical LIF for ``cfg``."""
        ...


_REGISTRY: Registry[Backend] = Registry("backend")


def register_backend(backend: Backend) -> Backend:
    """Add a backend to the registry."""
    return _REGISTRY.register(backend.name, backend)


def list_backends(available_only: bool = False) -> list[str]:
    """Registered backend names (only importable ones with ``available_only``)."""
    return [n for n in _REGISTRY.names() if not available_only or _REGISTRY.get(n).available()]


def get_backend(name: str) -> Backend:
    """The backend called ``name``; raises if unknown or if its library is missing."""
    backend = _REGISTRY.get(name)
    if not backend.available():
        raise MissingDependencyError(
            f"backend {name!r} needs {backend.requires}; install it with: "
            f"pip install 'trt-nm[{backend.extra}]'"
        )
    return backend


def _register_builtin() -> None:
    from trt_nm.neuron.backends.norse_backend import NorseBackend
    from trt_nm.neuron.backends.snntorch_backend import SnnTorchBackend
    from trt_nm.neuron.backends.torch_backend import TorchBackend

    for b in (TorchBackend(), SnnTorchBackend(), NorseBackend()):
        register_backend(b)


_register_builtin()

__all__ = ["Backend", "register_backend", "list_backends", "get_backend"]
