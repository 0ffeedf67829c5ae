"""Quantization-aware training for a hardware target's weight width (a trainer callback).

The fake-quantization maths lives in :mod:`trt_nm.quantize` (:func:`~trt_nm.quantize.add_qat`);
this module binds it to a target of :mod:`trt_nm.exporters`, whose profile gives the bit width.
"""

from __future__ import annotations

from typing import Any

from trt_nm.errors import ConfigError
from trt_nm.exporters import get_exporter
from trt_nm.quantize import add_qat, qmax
from trt_nm.training.callbacks import Callback, TrainerView


class QATCallback(Callback):
    """Trainer callback: quantization-aware training for a hardware target's weight width.

    ``QATCallback("loihi2")`` looks the target up in ``trt_nm.exporters`` (unknown names raise
    with the valid list; targets with float weights raise ConfigError) and, in
    ``on_train_start``, registers straight-through fake quantization on the model's weights
    (:func:`trt_nm.quantize.add_qat`). Test accuracy logged by the trainer is then the
    quantized model's; each log row gets ``qat_bits``.

    Args:
        target_name: a name of :func:`trt_nm.exporters.list_exporters`.
        bits: weight bits (default: the target's).
    """

    def __init__(self, target_name: str, bits: int | None = None) -> None:
        profile = get_exporter(target_name).profile
        self.target = target_name
        self.bits = int(bits if bits is not None else (profile.weight_bits or 0))
        if not self.bits:
            raise ConfigError(f"target {target_name!r} has floating-point weights; QAT does not apply")
        qmax(self.bits)

    def on_train_start(self, trainer: TrainerView) -> None:
        n = add_qat(trainer.model, self.bits)
        trainer.log(f"QAT: {n} layers fake-quantized to {self.bits}-bit weights for target {self.target}")

    def on_epoch_end(self, trainer: TrainerView, epoch: int, row: dict[str, Any]) -> None:
        row["qat_bits"] = self.bits


__all__ = ["QATCallback"]
