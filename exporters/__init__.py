"""Neuromorphic targets (installed as ``trt_nm.exporters``): profiles, checks, quantized files.

Registry: :func:`list_exporters`, :func:`get_exporter`, :func:`register_exporter`. Each target
lives in its own module (``loihi2``, ``spinnaker2``, ``speck``, ``xylo``, ``generic45nm``).
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


# importing the target modules registers them
from trt_nm.exporters import generic45nm, loihi2, speck, spinnaker2, xylo  # noqa: E402,F401  isort: skip

__all__ = [
    "CheckReport", "ExportResult", "Exporter", "ResourceEstimate", "TargetProfile",
    "TargetViolation", "Violation", "check_graph", "get_exporter", "list_exporters",
    "register_exporter",
]
