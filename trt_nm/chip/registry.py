"""The registry of chips trt_nm simulates exactly and deploys to (timm style)."""

from __future__ import annotations

from trt_nm.chip.base import Chip
from trt_nm.registry import Registry

_REGISTRY: Registry[Chip] = Registry("chip target")


def register_chip(chip: Chip) -> Chip:
    """Register ``chip`` under ``chip.name`` (the target name)."""
    return _REGISTRY.register(chip.name, chip)


def list_chips() -> list[str]:
    """Names of the chips trt_nm simulates exactly and deploys to."""
    return _REGISTRY.names()


def get_chip(name: str) -> Chip:
    """The chip called ``name``; unknown names raise a ConfigError listing the valid ones."""
    return _REGISTRY.get(name)
