"""trt_nm: train SNNs with the TRT loss, export through NIR, exit early, count spikes."""

from __future__ import annotations

__version__ = "0.1.0"

from .backends import Backend, get_backend, list_backends, register_backend
from .config import NeuronConfig, TETConfig, TrainConfig, TRTConfig
from .errors import TrtNmError
from .neuron import LIF, SpikingNeuron, lif_step
from .surrogate import get_surrogate, list_surrogates, spike

# ``trt_nm.simulate`` is both a module and its main function. Importing the module here (it
# needs only torch) and then binding the name to the function keeps ``trt_nm.simulate(g, x)``
# working however the module is imported later (Python sets the package attribute only on
# a module's first import).
from .simulate import SimResult, simulate  # noqa: E402  isort: skip

# Heavier entry points load on first use (their modules import optional libraries lazily).
_LAZY = {
    "build_model": "trt_nm.models",
    "list_models": "trt_nm.models",
    "trt_loss": "trt_nm.losses",
    "tet_loss": "trt_nm.losses",
    "sdt_loss": "trt_nm.losses",
    "Trainer": "trt_nm.train",
    "to_nir": "trt_nm.nir_io",
    "fold_batchnorm": "trt_nm.bn_fold",
    "from_nir": "trt_nm.nir_io",
    "read_nir": "trt_nm.nir_io",
    "write_nir": "trt_nm.nir_io",
    "to_onnx": "trt_nm.onnx_io",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'trt_nm' has no attribute {name!r}")


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
    "simulate",
    "SimResult",
]
