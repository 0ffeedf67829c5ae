"""Model zoo: ``build_model(arch, ...)`` and ``list_models()``.

Every model takes time-major input ``[T, B, C, H, W]`` (or ``[T, B, F]`` for ``mlp``) and
returns per-timestep logits ``[T, B, num_classes]`` from a non-spiking final Linear.
Stateless layers (conv, BatchNorm, pooling, linear) run once over the merged ``T*B`` batch,
so BatchNorm statistics are shared over time; neurons loop over T. In eval mode a
Conv/Linear followed by BatchNorm runs with the folded weights of the NIR export
(:mod:`trt_nm.models.bn_fold`).

Neuron modules hold no parameters, so parameter names and shapes are the same for every
backend and a ``state_dict`` moves between backends unchanged.

* :mod:`.registry`: ``register_model`` / ``list_models`` / ``get_model_entry`` /
  ``build_model`` / ``build_from_spec`` / ``validate_spec`` (a stored spec, checked
  before anything is built).
* :mod:`.spiking`: ``SpikingSequential``, ``TimeMajor``, ``SpikingModel``.
* :mod:`.blocks`: ``BasicBlock``, ``SEWBlock``; :mod:`.bn_fold`: BatchNorm folding.
* one module per family: :mod:`.mlp`, :mod:`.cnn`, :mod:`.vgg`, :mod:`.resnet`.
"""

from __future__ import annotations

from trt_nm.models import cnn, mlp, resnet, vgg  # noqa: F401  (registers the families)
from trt_nm.models.blocks import BasicBlock, SEWBlock
from trt_nm.models.registry import (
    ModelEntry,
    build_from_spec,
    build_model,
    declared_state_shapes,
    get_model_entry,
    list_models,
    register_model,
    validate_spec,
)
from trt_nm.models.spiking import SpikingModel, SpikingSequential, TimeMajor, randomize_batchnorm

__all__ = [
    "BasicBlock",
    "ModelEntry",
    "SEWBlock",
    "SpikingModel",
    "SpikingSequential",
    "TimeMajor",
    "build_from_spec",
    "build_model",
    "declared_state_shapes",
    "get_model_entry",
    "list_models",
    "randomize_batchnorm",
    "register_model",
    "validate_spec",
]
