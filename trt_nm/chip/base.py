"""What one neuromorphic chip is to trt_nm: its integer arithmetic, its hardware-aware model,
its vendor files and its vendor toolchain (a :class:`Chip`).

A chip module (``trt_nm/chip/xylo.py``, ``loihi2.py``, ``speck.py``) subclasses :class:`Chip`
and registers ONE instance with :func:`trt_nm.chip.register_chip`. Everything chip-specific
lives there; the shared flow (hardware-aware training, ``trt-nm deploy``, ``--verify``) is
written once in :mod:`trt_nm.chip.train`, :mod:`trt_nm.chip.deploy` and
:mod:`trt_nm.chip.vendor` and only calls the methods below.

Shapes and units:

* dataset samples are float ``[T, B, *in_shape]`` (time-major); :meth:`Chip.encode` turns them
  into the integer events the chip receives, ``int64 [T, B, *chip_in_shape]``.
* :meth:`Chip.build` returns a torch module (the hardware-aware model) taking those integer
  inputs as float ``[T, B, *chip_in_shape]`` and returning ``[T, B, C]`` floats that the TRT loss
  reads (spike counts or membrane readout, per step).
* :meth:`Chip.integerize` turns the trained module into a :class:`ChipNet` (integer arrays and
  json metadata), the single source of truth for what the chip computes.
* :meth:`Chip.simulate` runs a :class:`ChipNet` in the chip's exact integer arithmetic:
  ``{record_name: int64 [T_out, B, ...]}`` with ``"out"`` the output in the form the vendor's
  simulator reports it, and one entry per hidden layer the vendor tool exposes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

#: a chip's hidden-layer records in :meth:`Chip.simulate` are named ``LAYER_PREFIX + name``
LAYER_PREFIX = "layer:"


@dataclass(frozen=True)
class ChipTask:
    """The embedded task a chip trains on when ``trt-nm train --target NAME`` gets no other flag.

    Attributes:
        dataset: registered dataset name (``mnist5k``, ``nmnist5k``).
        T: timesteps per sample.
        classes: labels kept (relabelled ``0..len-1`` in this order); None keeps all.
        hidden: hidden layer widths (dense chips) or channels (conv chips).
        why: one sentence on why this task fits the chip (README and manifest).
        epochs: training epochs of ``trt-nm train --target NAME`` without ``--epochs``.
        batch_size: its batch size without ``--batch-size``.
    """

    dataset: str
    T: int
    classes: tuple[int, ...] | None = None
    hidden: tuple[int, ...] = ()
    why: str = ""
    epochs: int = 3
    batch_size: int = 64


@dataclass(frozen=True)
class VendorRecipe:
    """How to build the vendor toolchain in a throw-away venv (cached by :mod:`.vendor`).

    Attributes:
        packages: what the recipe installs, in words for errors (``"rockpool 3.1.0 + xylosim"``).
        python: interpreter for the venv: ``"python3"``, or ``"pyenv:3.10.13"`` for a pyenv
            version (``$(pyenv root)/versions/3.10.13/bin/python``).
        pip: successive ``pip install`` argument lists (a constraints file pinning torch to the
            local wheel is always passed, as ``-c``).
        post: Python source run with the venv's interpreter after installing (patches,
            uninstalling a bootstrapper); empty for none.
        runner: file name in ``trt_nm/chip/runners/`` the venv runs as
            ``python RUNNER DEPLOY_DIR RESULT_NPZ`` (see :meth:`Chip.verify_records`).
        torch: the torch version pinned inside the venv (None: the recipe needs no torch).
    """

    packages: str
    pip: tuple[tuple[str, ...], ...]
    runner: str
    python: str = "python3"
    post: str = ""
    torch: str | None = "2.13.0"


@dataclass
class ChipNet:
    """An integer network for one chip: what the chip computes, as plain data.

    Attributes:
        chip: the chip's name.
        arrays: integer (or small float, e.g. per-layer dt) numpy arrays by name.
        meta: json-able description (layer names and kinds, shapes, decays, T, delays...).
    """

    chip: str
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)


class Chip(ABC):
    """One chip: see the module docstring for the shapes. Subclasses set the class attributes
    and implement the abstract methods; the defaults below are shared."""

    #: target name (the same as in :mod:`trt_nm.exporters.targets`)
    name: str
    #: the default embedded task
    task: ChipTask
    #: how ``--verify`` builds the vendor toolchain
    vendor: VendorRecipe
    #: what the chip's output records are (``"spike counts"``, ``"membrane"``), for reports
    readout: str = "spike counts"

    # ------------------------------------------------------------------ data
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Dataset samples float ``[T, B, *in_shape]`` -> the integer events the chip receives,
        ``int64 [T, B, *chip_in_shape]`` (default: round and clamp to ``[0, 15]``)."""
        return x.round().clamp(0, 15).to(torch.int64)

    def input_range(self) -> tuple[int, int]:
        """The integer input values the chip accepts per channel and step (``--inputs`` check)."""
        return 0, 15

    def input_steps(self, T: int) -> int:
        """How many input steps :meth:`encode` produces for a task of ``T`` steps (more than
        ``T`` when it appends zero steps to flush the layer delays)."""
        return T

    # ------------------------------------------------------------------ model
    @abstractmethod
    def build(self, in_shape: tuple[int, ...], n_classes: int, hidden: tuple[int, ...],
              seed: int = 0) -> nn.Module:
        """The hardware-aware torch model: float ``[T, B, *in_shape]`` (integer-valued) ->
        ``[T, B, n_classes]``; it must compute what :meth:`simulate` computes on
        :meth:`integerize` of it, up to the straight-through quantizers' rounding in training."""

    @abstractmethod
    def check_model(self, model: nn.Module, in_shape: tuple[int, ...]) -> list[str]:
        """The chip's size limits and design rules for a built model; each violation one line
        (empty: it fits). Called before training starts."""

    @abstractmethod
    def integerize(self, model: nn.Module) -> ChipNet:
        """The trained model on the chip's integer grids (weights, thresholds, decays)."""

    @abstractmethod
    def simulate(self, net: ChipNet, x: np.ndarray) -> dict[str, np.ndarray]:
        """Run ``net`` on integer inputs ``x [T, B, *chip_in_shape]`` in the chip's exact
        arithmetic: ``{"out": int64 [T_out, B, C], LAYER_PREFIX + name: int64 [T_out, B, ...]}``."""

    def predict(self, out: np.ndarray) -> np.ndarray:
        """Class predictions ``[B]`` from ``out [T_out, B, C]`` (default: argmax of the sum over
        time, ties to the lowest class)."""
        return np.asarray(out).sum(axis=0).argmax(axis=-1)

    # ------------------------------------------------------------------ vendor files
    @abstractmethod
    def write(self, net: ChipNet, out_dir: Path) -> dict[str, str]:
        """Write the files the vendor toolchain loads into ``out_dir`` (atomically); returns
        ``{file name: how the vendor loads it}`` for ``manifest.json``."""

    def check_graph_lines(self, net: ChipNet) -> list[str]:
        """Design-rule violations of an integer network (default: none); deploy refuses on any."""
        return []

    def synops(self, net: ChipNet, records: dict[str, np.ndarray], x: np.ndarray) -> int | None:
        """Synaptic operations the chip performs on inputs ``x`` given the records of
        :meth:`simulate` (events times nonzero fan-out, summed over layers and samples); None
        when the chip does not define it. Energy reports multiply it by the target profile."""
        return None

    def neuron_count(self, net: ChipNet) -> int | None:
        """Neurons the network occupies on the chip (updated every step); None if unknown."""
        return None

    def size_line(self, net: ChipNet) -> str:
        """The network's size against the chip's limits, one short line (README table)."""
        return ""

    def manifest_extra(self, net: ChipNet) -> dict[str, Any]:
        """Chip-specific manifest fields (delays, sizes against limits...)."""
        return {}
