"""Neuromorphic targets (installed as ``trt_nm.exporters``): profiles, checks, quantized files.

Registry: :func:`list_exporters`, :func:`get_exporter`, :func:`register_exporter`. Each target
lives in its own module (``loihi2``, ``spinnaker2``, ``speck``, ``xylo``, ``generic45nm``).
"""

from __future__ import annotations

from trt_nm.errors import unknown_name

from .base import Exporter, ExportResult, TargetViolation
from .check import CheckReport, ResourceEstimate, Violation, check_graph
from .profile import TargetProfile

_REGISTRY: dict[str, Exporter] = {}


def register_exporter(exporter: Exporter) -> Exporter:
    """Register a target instance under ``exporter.profile.name``."""
    _REGISTRY[exporter.profile.name] = exporter
    return exporter


def list_exporters() -> list[str]:
    """Registered target names."""
    return sorted(_REGISTRY)


def get_exporter(name: str) -> Exporter:
    """The exporter of target ``name``; unknown names raise with the valid list."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise unknown_name("target", name, list(_REGISTRY)) from None


# importing the target modules registers them
from . import generic45nm, loihi2, speck, spinnaker2, xylo  # noqa: E402,F401  isort: skip

__all__ = [
    "CheckReport", "ExportResult", "Exporter", "ResourceEstimate", "TargetProfile",
    "TargetViolation", "Violation", "check_graph", "get_exporter", "list_exporters",
    "register_exporter",
]
