"""The :class:`Exporter` base: check a graph against a target, convert, quantize, write files.

A target module defines a :class:`~.profile.TargetProfile` and an ``Exporter`` subclass (for
target-specific checks or file formats) and registers it with :func:`register_exporter`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trt_nm.errors import ConfigError, TrtNmError
from trt_nm.exporters.check import CheckReport, Violation, check_graph
from trt_nm.exporters.convert import get_conversion
from trt_nm.exporters.layers import GraphSummary
from trt_nm.exporters.nir104 import atomic_h5_write, write_nir104
from trt_nm.exporters.profile import TargetProfile
from trt_nm.quantize import quantize_graph


class TargetViolation(TrtNmError):
    """The graph does not fit the target (CLI exit code 3); ``report`` lists every violation."""

    exit_code = 3

    def __init__(self, report: CheckReport) -> None:
        super().__init__(
            f"graph does not fit target {report.target}: "
            + "; ".join(v.message() for v in report.violations)
        )
        self.report = report


@dataclass
class ExportResult:
    """What :meth:`Exporter.export` wrote and why it fits."""

    paths: list[Path]
    report: CheckReport
    graph: Any
    quant_lines: list[str] = field(default_factory=list)


class Exporter:
    """Check/convert/quantize/write for one target; subclasses set :attr:`profile`."""

    profile: TargetProfile

    @property
    def name(self) -> str:
        return self.profile.name

    def extra_checks(self, graph: Any, summary: GraphSummary, profile: TargetProfile) -> list[Violation]:
        """Target-specific constraints beyond the profile's generic limits."""
        return []

    def check(self, graph: Any, dt: float | None = None) -> CheckReport:
        """Every violation of the target's constraints plus a resource estimate."""
        return check_graph(graph, self.profile, dt=dt, extra=self.extra_checks)

    def prepare(
        self, graph: Any, *, convert: tuple[str, ...] | list[str] = (), quantize: int | None = None
    ) -> tuple[Any, list[str]]:
        """Apply the explicit conversions, then quantize weights to ``quantize`` bits (default:
        the target's weight width; floating-point targets are left alone).

        Returns ``(graph, quant_report_lines)``.
        """
        for name in convert:
            graph = get_conversion(name)(graph)
        bits = quantize if quantize is not None else self.profile.weight_bits
        lines: list[str] = []
        if bits is not None:
            if self.profile.weight_bits is not None and bits > self.profile.weight_bits:
                raise ConfigError(
                    f"--quantize {bits} exceeds target {self.name}'s {self.profile.weight_bits}-bit weights"
                )
            q = quantize_graph(graph, bits, threshold_bits=self.profile.threshold_bits)
            graph, lines = q.graph, q.lines()
        return graph, lines

    def write(self, graph: Any, path: str | os.PathLike) -> list[Path]:
        """Write the file(s) the target's toolchain reads."""
        if self.profile.file_format == "nir-1.0.4":
            return [write_nir104(graph, path)]
        import nir

        return [atomic_h5_write(path, lambda tmp: nir.write(tmp, graph))]

    def export(
        self,
        graph: Any,
        path: str | os.PathLike,
        *,
        convert: tuple[str, ...] | list[str] = (),
        quantize: int | None = None,
        dt: float | None = None,
    ) -> ExportResult:
        """Convert, quantize, check, and write only if the result fits (else TargetViolation)."""
        prepared, lines = self.prepare(graph, convert=convert, quantize=quantize)
        report = self.check(prepared, dt=dt)
        if not report.fits:
            raise TargetViolation(report)
        paths = self.write(prepared, path)
        return ExportResult(paths, report, prepared, lines)
