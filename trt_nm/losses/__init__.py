"""TRT, TET, SDT and CE losses with one call shape, a registry, and module wrappers.

Every loss takes ``outputs`` = per-timestep logits ``[T, B, C]``, integer ``targets [B]`` and
the model's ``named_parameters()`` (ignored by losses without a weight term), and returns a
scalar; :func:`get_loss` / :func:`list_losses` / :func:`register_loss` name them and
:class:`Loss` binds one to its frozen config.

* :mod:`.regularizer`: TRT's temporal weight regularizer ``1/T sum_t r(t)``, one pass over the
  weights (per-element factor and derivative written once).
* :mod:`.trt`, :mod:`.tet`, :mod:`.sdt`, :mod:`.ce`: one loss each.
* :mod:`.loss`: the :class:`Loss` module; :mod:`.registry`: the registry.
"""

from __future__ import annotations

from trt_nm.losses.ce import ce_loss, per_timestep_ce
from trt_nm.losses.common import NamedParams
from trt_nm.losses.loss import Loss, SDTLoss, TETLoss, TRTLoss
from trt_nm.losses.registry import LossEntry, get_loss, list_losses, register_loss
from trt_nm.losses.regularizer import regularized_parameters, trt_regularizer
from trt_nm.losses.sdt import sdt_loss
from trt_nm.losses.tet import tet_loss
from trt_nm.losses.trt import trt_loss

__all__ = [
    "Loss",
    "LossEntry",
    "NamedParams",
    "SDTLoss",
    "TETLoss",
    "TRTLoss",
    "ce_loss",
    "get_loss",
    "list_losses",
    "per_timestep_ce",
    "register_loss",
    "regularized_parameters",
    "sdt_loss",
    "tet_loss",
    "trt_loss",
    "trt_regularizer",
]
