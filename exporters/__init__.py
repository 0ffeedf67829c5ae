"""Neuromorphic targets (installed as ``trt_nm.exporters``): profiles, checks, quantized files.

Exporters: :func:`list_exporters`, :func:`get_exporter`, :func:`register_exporter`. Each
exporter lives in its own module (``loihi2``, ``spinnaker2``, ``speck``, ``xylo``,
``generic45nm``). THE registry of target names (exporters plus energy-only chips, with their
energy profiles and aliases) is :mod:`.targets`: :func:`list_targets`, :func:`get_target`.
"""

from __future__ import annotations

from trt_nm.exporters.base import Exporter, ExportResult, TargetViolation
from trt_nm.exporters.check import CheckReport, ResourceEstimate, Violation, check_graph
from trt_nm.exporters.profile import TargetProfile
from trt_nm.registry import Registry

_REGISTRY: Registry[Exporter] = Registry("target")


def register_exporter(exporter: Exporter) -> Exporter:
    """Register a target instance under ``exporter.profile.name``."""
    return _REGISTRY.register(exporter.profile.name, exporter)


def list_exporters() -> list[str]:
    """Registered target names."""
    return _REGISTRY.names()


def get_exporter(name: str) -> Exporter:
    """The exporter of target ``name``; unknown names raise with the valid list."""
    return _REGISTRY.get(name)


# importing the target modules registers them; the target registry reads the exporters
from trt_nm.exporters import generic45nm, loihi2, speck, spinnaker2, xylo  # noqa: E402,F401  isort: skip
from trt_nm.exporters.targets import (  # noqa: E402  isort: skip
    EnergyOnlyTarget,
    Target,
    get_target,
    list_aliases,
    list_targets,
    register_alias,
    register_target,
    resolve_target,
    resolve_targets,
)

__all__ = [
    "CheckReport", "EnergyOnlyTarget", "ExportResult", "Exporter", "ResourceEstimate", "Target",
    "TargetProfile", "TargetViolation", "Violation", "check_graph", "get_exporter",
    "get_target", "list_aliases", "list_exporters", "list_targets", "register_alias",
    "register_exporter", "register_target", "resolve_target", "resolve_targets",
]
