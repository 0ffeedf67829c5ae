"""What one neuromorphic chip can run: :class:`TargetProfile` (plain data, with sources).

Every limit is ``None`` when the vendor has not published it (or when the target has no such
limit); the check then skips it and the report says "not published". Numbers carry their
source (paper or datasheet and year) in :attr:`TargetProfile.sources` and in the profile
modules' comments.

Energy numbers are not written here: a profile names its energy profile in
:mod:`trt_nm.metrics.energy` (``energy_profile``), and ``energy_per_synop_pj`` is derived from
it (a profile passing a different number is refused). The target registry that joins the two
is :mod:`trt_nm.exporters.targets`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from trt_nm.errors import ConfigError
from trt_nm.metrics.energy import get_energy_profile
from trt_nm.nir.nodes import LAYER_KINDS, NEURON_KINDS

# LAYER_KINDS (what ``layer_types`` may list: NodeKind.layer of weighted and relay nodes) and
# NEURON_KINDS (what ``neuron_models`` may list: NIR types with NodeKind.neuron) come from the
# node table, trt_nm.nir.nodes, THE list of node kinds; re-exported here for profile authors.


@dataclass(frozen=True)
class TargetProfile:
    """Capabilities and limits of one neuromorphic target.

    Attributes:
        name: registry name (``trt-nm export --target NAME``).
        chip: marketing name of the chip.
        toolchain: the vendor software that reads the exported file.
        neuron_models: NIR neuron node types the chip implements (subset of ``NEURON_KINDS``).
        leak: whether the neuron has a membrane leak (Speck's IAF has none).
        leak_rule: how a leak is encoded: "any" (arbitrary beta), "bitshift"
            (beta = 1 - 2**-k, k = 0..``max_leak_shift``), "none".
        max_leak_shift: largest bit shift k when ``leak_rule == "bitshift"``.
        reset_modes: supported resets, subset of ("zero", "subtract").
        layer_types: supported stateless layer kinds (a subset of ``LAYER_KINDS``).
        weight_bits: signed weight width in bits (None: floating point).
        state_bits: membrane state width in bits (None: floating point).
        threshold_bits: threshold register width in bits (None: as state / float).
        neurons_per_core: neurons one core holds.
        synapses_per_core: synapses (stored weights) one core holds.
        cores_per_chip: cores on one chip.
        neurons_per_chip: neurons on one chip.
        synapses_per_chip: synapses on one chip.
        max_fan_in: largest number of inputs one neuron may have.
        max_fan_out: largest number of targets one neuron's spike may reach.
        max_inputs: input channels of the chip (Xylo: 16).
        max_outputs: output neurons/channels of the chip (Xylo: 8).
        max_hidden: hidden neurons in total (Xylo: 1000).
        max_kernel_size: largest convolution kernel side (Speck: 16).
        pool_sizes: allowed pooling kernel sides (Speck: 1, 2, 4); None: any.
        max_layers: largest number of neuron layers (Speck: 9 cores, one layer each).
        memory_per_core_kib: on-core memory (weights + neuron states) in KiB; None: not modelled.
        weights_shared_conv: True when a conv kernel is stored once per layer (Speck's kernel
            memory) rather than once per connection.
        timestep: what is known of the timestep / clock (free text with units).
        energy_profile: name in ``trt_nm.metrics.energy`` used for energy reports (None: no
            energy figure is published for the chip).
        energy_per_synop_pj: energy per synaptic operation in pJ, DERIVED from
            ``energy_profile`` (None: not published / no energy profile). Leave it unset; a
            value that disagrees with the energy profile raises ConfigError.
        max_chips: chips the exported graph may span (1: must fit one chip).
        file_format: what the exporter writes ("nir-1.0.8" or "nir-1.0.4").
        sources: citations (paper/datasheet, year) for the numbers above.
        notes: free-text caveats.
    """

    name: str
    chip: str
    toolchain: str
    neuron_models: tuple[str, ...]
    leak: bool = True
    leak_rule: str = "any"
    max_leak_shift: int | None = None
    reset_modes: tuple[str, ...] = ("zero",)
    layer_types: tuple[str, ...] = ("dense",)
    weight_bits: int | None = None
    state_bits: int | None = None
    threshold_bits: int | None = None
    neurons_per_core: int | None = None
    synapses_per_core: int | None = None
    cores_per_chip: int | None = None
    neurons_per_chip: int | None = None
    synapses_per_chip: int | None = None
    max_fan_in: int | None = None
    max_fan_out: int | None = None
    max_inputs: int | None = None
    max_outputs: int | None = None
    max_hidden: int | None = None
    max_kernel_size: int | None = None
    pool_sizes: tuple[int, ...] | None = None
    max_layers: int | None = None
    weights_shared_conv: bool = False
    memory_per_core_kib: float | None = None
    timestep: str = "not published"
    energy_profile: str | None = None
    energy_per_synop_pj: float | None = None
    max_chips: int = 1
    file_format: str = "nir-1.0.8"
    sources: tuple[str, ...] = field(default_factory=tuple)
    notes: str = ""

    def __post_init__(self) -> None:
        for attr, known in (("neuron_models", NEURON_KINDS), ("layer_types", LAYER_KINDS)):
            unknown = [k for k in getattr(self, attr) if k not in known]
            if unknown:
                raise ConfigError(
                    f"target {self.name}: {attr} {', '.join(unknown)} not in the node table "
                    f"(trt_nm.nir.nodes); valid: {', '.join(known)}"
                )
        derived = None
        if self.energy_profile is not None:
            derived = get_energy_profile(self.energy_profile).synop_pj
        given = self.energy_per_synop_pj
        if given is not None and (derived is None or not math.isclose(given, derived, rel_tol=1e-9)):
            raise ConfigError(
                f"target {self.name}: energy_per_synop_pj={given} disagrees with energy profile "
                f"{self.energy_profile!r} ({'no per-synop figure' if derived is None else f'{derived:g} pJ'}); "
                "energy numbers live in trt_nm.metrics.energy only: leave energy_per_synop_pj unset"
            )
        object.__setattr__(self, "energy_per_synop_pj", derived)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data view (for JSON reports)."""
        return asdict(self)

    def describe(self) -> str:
        """Multi-line human-readable summary; unpublished limits read "not published"."""

        def show(v: Any, unit: str = "") -> str:
            if v is None:
                return "not published / no limit"
            if isinstance(v, tuple):
                return ", ".join(str(x) for x in v)
            return f"{v:,}{unit}" if isinstance(v, int) and not isinstance(v, bool) else f"{v}{unit}"

        rows = [
            ("chip", self.chip),
            ("toolchain", self.toolchain),
            ("neuron models", show(self.neuron_models)),
            ("leak", f"{'yes' if self.leak else 'no'} ({self.leak_rule})"),
            ("reset modes", show(self.reset_modes)),
            ("layer types", show(self.layer_types)),
            ("weight bits", show(self.weight_bits)),
            ("state bits", show(self.state_bits)),
            ("neurons / core", show(self.neurons_per_core)),
            ("synapses / core", show(self.synapses_per_core)),
            ("cores / chip", show(self.cores_per_chip)),
            ("neurons / chip", show(self.neurons_per_chip)),
            ("synapses / chip", show(self.synapses_per_chip)),
            ("max fan-in", show(self.max_fan_in)),
            ("max fan-out", show(self.max_fan_out)),
            ("inputs / outputs / hidden", f"{show(self.max_inputs)} / {show(self.max_outputs)} / {show(self.max_hidden)}"),
            ("timestep", self.timestep),
            ("energy", "not published" if self.energy_profile is None
             else f"{self.energy_profile}: {get_energy_profile(self.energy_profile).summary()}"),
            ("file", self.file_format),
        ]
        width = max(len(k) for k, _ in rows)
        lines = [f"{self.name}: {self.chip}"] + [f"  {k.ljust(width)}  {v}" for k, v in rows]
        lines += [f"  source: {s}" for s in self.sources]
        if self.notes:
            lines.append(f"  note: {self.notes}")
        return "\n".join(lines)


__all__ = ["LAYER_KINDS", "NEURON_KINDS", "TargetProfile"]
