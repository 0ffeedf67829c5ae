"""The trainer's extension point: :class:`Callback`, and the :class:`TrainerView` it sees.

A callback depends on this module only, never on the trainer itself, so callbacks can live
anywhere (quantization-aware training in :mod:`trt_nm.training.qat`, Fisher recording in
:mod:`trt_nm.analysis.fisher`) and the trainer imports them at module top without a cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.data import Dataset

from trt_nm.config import TrainConfig


class TrainerView(Protocol):
    """What a callback may read from the running trainer (:class:`trt_nm.training.trainer.Trainer`).

    Attributes:
        cfg: the run's configuration.
        model: the model being trained (not the DDP / compiled wrapper).
        device: where it runs.
        out_dir: the run directory (checkpoints, ``log.csv``, callback files).
        train_set: the training split (after ``train_limit``).
        start_epoch: epochs already done (> 0 after a resume).
        log: the run's log function (rank 0 only; a no-op elsewhere).
        dist: the data-parallel context (``.is_main`` is True on the rank that writes files).
    """

    cfg: TrainConfig
    model: nn.Module
    device: torch.device
    out_dir: Path
    train_set: Dataset
    start_epoch: int
    log: Callable[..., Any]
    dist: Any


class Callback:
    """Trainer extension point; override what you need.

    ``on_train_start`` runs once after the model, optimizer and data exist (and after a
    resume); ``on_epoch_end`` after each epoch's evaluation, before checkpoints are written,
    with the epoch's log row (add keys to it to log them). ``epoch`` is 1-based.
    """

    def on_train_start(self, trainer: TrainerView) -> None:  # noqa: B027
        """Called once before the first epoch (after a resume too)."""

    def on_epoch_end(self, trainer: TrainerView, epoch: int, row: dict[str, Any]) -> None:  # noqa: B027
        """Called after epoch ``epoch`` (1-based) was evaluated; may add keys to ``row``."""


__all__ = ["Callback", "TrainerView"]
