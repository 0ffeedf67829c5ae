"""trt_nm: train SNNs with the TRT loss, export through NIR, exit early, count spikes."""

from __future__ import annotations

__version__ = "0.1.0"

from .backends import Backend, get_backend, list_backends, register_backend
from .config import NeuronConfig, TETConfig, TrainConfig, TRTConfig
from .errors import TrtNmError
from .neuron import LIF, SpikingNeuron, lif_step
from .surrogate import get_surrogate, list_surrogates, spike

__all__ = [
    "__version__",
    "Backend",
    "get_backend",
    "list_backends",
    "register_backend",
    "NeuronConfig",
    "TRTConfig",
    "TETConfig",
    "TrainConfig",
    "TrtNmError",
    "LIF",
    "SpikingNeuron",
    "lif_step",
    "spike",
    "get_surrogate",
    "list_surrogates",
]
