"""trt_nm: train SNNs with the TRT loss, export through NIR, exit early, count spikes.

The packages name the layers (README "Layout"): :mod:`trt_nm.neuron` (the canonical LIF,
surrogates, backend adapters), :mod:`trt_nm.models`, :mod:`trt_nm.losses`,
:mod:`trt_nm.training`, :mod:`trt_nm.nir` (the node table and every NIR reader/writer),
:mod:`trt_nm.sim` (reference interpreter and fast engine), :mod:`trt_nm.metrics`,
:mod:`trt_nm.report`, :mod:`trt_nm.analysis`, :mod:`trt_nm.cli`, plus
:mod:`trt_nm.exporters` and :mod:`trt_nm.datasets`.
"""

from __future__ import annotations

import importlib

from trt_nm.config import NeuronConfig, TETConfig, TrainConfig, TRTConfig
from trt_nm.errors import TrtNmError
from trt_nm.neuron.backends import Backend, get_backend, list_backends, register_backend
from trt_nm.neuron.lif import LIF, SpikingNeuron, lif_step
from trt_nm.neuron.surrogate import get_surrogate, list_surrogates, spike
from trt_nm.version import __version__

# Entry points that live deeper load on first use: a plain ``import trt_nm`` stays cheap
# (no nir/h5py/onnx), and no package name is rebound to a function (``trt_nm.sim`` is the
# simulator package, ``trt_nm.simulate`` its main function).
_LAZY = {
    "simulate": "trt_nm.sim",
    "Simulator": "trt_nm.sim",
    "SimResult": "trt_nm.sim",
    "build_model": "trt_nm.models",
    "list_models": "trt_nm.models",
    "trt_loss": "trt_nm.losses",
    "tet_loss": "trt_nm.losses",
    "sdt_loss": "trt_nm.losses",
    "Trainer": "trt_nm.training.trainer",
    "to_nir": "trt_nm.nir.io",
    "fold_batchnorm": "trt_nm.models.bn_fold",
    "from_nir": "trt_nm.nir.io",
    "read_nir": "trt_nm.nir.io",
    "write_nir": "trt_nm.nir.io",
    "to_onnx": "trt_nm.nir.onnx_export",
}


def __getattr__(name: str):
    if name in _LAZY:
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
    *_LAZY,
]
