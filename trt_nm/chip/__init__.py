"""Chips as trt_nm runs them exactly: integer arithmetic, hardware-aware models, vendor files.

Registry (timm style, :mod:`.registry`): :func:`list_chips`, :func:`get_chip`,
:func:`register_chip`. One module per chip (``xylo``, ``loihi2``, ``speck``) defines a
:class:`~trt_nm.chip.base.Chip` and registers it; :mod:`.train` (``trt-nm train --target``),
:mod:`.deploy` (``trt-nm deploy``) and :mod:`.vendor` (cached vendor venvs for ``--verify``)
are shared by all of them.
"""

from __future__ import annotations

# importing the chip modules registers them
from trt_nm.chip import loihi2, speck, xylo  # noqa: F401
from trt_nm.chip.base import Chip, ChipNet, ChipTask, VendorRecipe
from trt_nm.chip.registry import get_chip, list_chips, register_chip

__all__ = ["Chip", "ChipNet", "ChipTask", "VendorRecipe", "get_chip", "list_chips", "register_chip"]
