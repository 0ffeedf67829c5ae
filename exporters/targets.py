"""THE registry of hardware targets: one name per chip for ``export``, ``simulate``, ``report``.

A :class:`Target` joins the two halves of what trt_nm knows about a chip:

* its **constraint profile and exporter** (:class:`~trt_nm.exporters.profile.TargetProfile`,
  ``check``, ``export``), where one exists: every registered exporter
  (:func:`trt_nm.exporters.list_exporters`) is a target of the same name;
* its **energy profile** (:class:`~trt_nm.metrics.energy.EnergyProfile`: joules per synaptic
  operation, MAC, neuron update and inference, with sources), where a number is published.
  For an exporter's target it is the one its ``TargetProfile.energy_profile`` names.

Chips without an exporter (IBM TrueNorth, SpiNNaker 1, Loihi 1) are **energy-only** targets:
``simulate``/``report`` cost them, ``export --target`` refuses them with a one-line error.
A chip without a published energy figure (Speck) is a target whose energy reads
"not published"; reports say so instead of showing a number.

Aliases keep older names working (``cmos45nm``, the energy profile name of ``generic45nm``);
``trt-nm targets`` lists them. timm-style API: :func:`list_targets`, :func:`get_target`
(unknown names raise with the valid ones), :func:`register_target`, :func:`register_alias`.
"""

from __future__ import annotations

from dataclasses import dataclass

from trt_nm.errors import ConfigError
from trt_nm.exporters import get_exporter, list_exporters
from trt_nm.exporters.base import Exporter
from trt_nm.exporters.check import CheckReport
from trt_nm.exporters.profile import TargetProfile
from trt_nm.metrics.energy import EnergyProfile, get_energy_profile, list_energy_profiles

#: what a report shows for a target whose energy is not published
NOT_PUBLISHED = "not published"


class EnergyOnlyTarget(ConfigError):
    """``export``/``check`` asked of a target that has only an energy profile (exit code 2)."""


@dataclass(frozen=True)
class Target:
    """One hardware target of :func:`list_targets`.

    Attributes:
        name: canonical name (``--target NAME`` of export, simulate and report).
        chip: the chip in words.
        exporter: name in :func:`trt_nm.exporters.list_exporters` (None: energy-only target).
        energy: name in :func:`trt_nm.metrics.energy.list_energy_profiles` (None: no energy
            figure published for the chip).
        aliases: other names accepted for this target.
        energy_note: why the energy is missing or what it rests on (shown by ``trt-nm targets``).
    """

    name: str
    chip: str
    exporter: str | None = None
    energy: str | None = None
    aliases: tuple[str, ...] = ()
    energy_note: str = ""

    @property
    def energy_only(self) -> bool:
        """True when the target has no exporter (and so no constraint check)."""
        return self.exporter is None

    def get_exporter(self) -> Exporter:
        """The target's exporter; an energy-only target raises :class:`EnergyOnlyTarget`."""
        if self.exporter is None:
            raise EnergyOnlyTarget(
                f"target {self.name!r} ({self.chip}) is energy-only: it has no exporter or "
                f"constraint profile; targets that export: {', '.join(list_exporters())}"
            )
        return get_exporter(self.exporter)

    @property
    def profile(self) -> TargetProfile | None:
        """The constraint profile (None for an energy-only target)."""
        return None if self.exporter is None else get_exporter(self.exporter).profile

    @property
    def energy_profile(self) -> EnergyProfile | None:
        """The energy profile (None when no energy figure is published)."""
        return None if self.energy is None else get_energy_profile(self.energy)

    @property
    def energy_status(self) -> str:
        """``"published"``, ``"provisional"`` or ``"not published"``."""
        prof = self.energy_profile
        return NOT_PUBLISHED if prof is None else prof.status

    @property
    def qat_bits(self) -> int | None:
        """Weight width QAT trains for (``--qat-target``); None: float weights or no exporter."""
        prof = self.profile
        return None if prof is None else prof.weight_bits

    def check(self, graph: object, dt: float | None = None) -> CheckReport | None:
        """The exporter's constraint check of ``graph`` (None for an energy-only target)."""
        return None if self.exporter is None else self.get_exporter().check(graph, dt=dt)

    def line(self) -> str:
        """One line for ``trt-nm targets``: export format, check, energy with source, QAT bits,
        aliases."""
        prof = self.profile
        if prof is None:
            export = "export: no (energy-only)"
        else:
            export = f"export: {prof.file_format} for {prof.toolchain}; check: yes"
        eprof = self.energy_profile
        if eprof is None:
            energy = f"energy: {NOT_PUBLISHED}" + (f" ({self.energy_note})" if self.energy_note else "")
        else:
            energy = f"energy [{eprof.name}]: {eprof.summary()}"
        if prof is None:
            qat = "QAT: n/a"
        else:
            qat = f"QAT: {prof.weight_bits}-bit" if prof.weight_bits else "QAT: n/a (float weights)"
        alias = f"aliases: {', '.join(self.aliases)}" if self.aliases else "aliases: -"
        return f"{self.name:<11} {self.chip} | {export} | {energy} | {qat} | {alias}"

    def to_dict(self) -> dict[str, object]:
        """Plain-data view (for report.json)."""
        return {
            "name": self.name,
            "chip": self.chip,
            "exporter": self.exporter,
            "energy_profile": self.energy,
            "energy": self.energy_status,
            "aliases": list(self.aliases),
            "energy_note": self.energy_note,
            "qat_bits": self.qat_bits,
        }


@dataclass(frozen=True)
class _Entry:
    """What :func:`register_target` recorded (chip/energy only for energy-only targets)."""

    chip: str | None
    energy: str | None
    energy_note: str


_ENTRIES: dict[str, _Entry] = {}
_ALIASES: dict[str, str] = {}


def register_target(
    name: str,
    *,
    chip: str | None = None,
    energy: str | None = None,
    aliases: tuple[str, ...] = (),
    energy_note: str = "",
) -> Target:
    """Declare a target (or add aliases and an energy note to an exporter's target).

    For a registered exporter the chip and the energy profile come from its ``TargetProfile``
    (``chip``/``energy`` must not be given again); any other name is an energy-only target and
    needs ``chip`` and ``energy``. Returns the registered :class:`Target`.
    """
    if name in _ALIASES:
        raise ConfigError(f"target {name!r} is already an alias of {_ALIASES[name]!r}")
    if name in list_exporters():
        if energy is not None or chip is not None:
            raise ConfigError(
                f"target {name!r}: its chip and energy profile are named once, in its "
                "TargetProfile (chip, energy_profile); do not pass them here"
            )
    elif chip is None or energy is None:
        raise ConfigError(f"energy-only target {name!r} needs chip and energy")
    else:
        get_energy_profile(energy)  # unknown names raise with the valid ones
    _ENTRIES[name] = _Entry(chip, energy, energy_note)
    for alias in aliases:
        register_alias(alias, name)
    return get_target(name)


def register_alias(alias: str, target: str) -> None:
    """Accept ``alias`` wherever ``target`` is accepted."""
    if alias in _ENTRIES or alias in list_exporters():
        raise ConfigError(f"alias {alias!r} is already a target name")
    if target not in list_targets():
        raise _unknown(target)
    _ALIASES[alias] = target


def _build(name: str) -> Target:
    entry = _ENTRIES.get(name)
    aliases = tuple(sorted(a for a, t in _ALIASES.items() if t == name))
    note = entry.energy_note if entry else ""
    if name in list_exporters():
        prof = get_exporter(name).profile
        return Target(name, prof.chip, name, prof.energy_profile, aliases, note)
    if entry is None or entry.chip is None:  # not reached: resolve_target checked the name
        raise _unknown(name)
    return Target(name, entry.chip, None, entry.energy, aliases, note)


def list_targets() -> list[str]:
    """Canonical target names, sorted (every exporter plus the energy-only targets)."""
    energy_only = {n for n, e in _ENTRIES.items() if e.chip is not None}
    return sorted(set(list_exporters()) | energy_only)


def list_aliases() -> dict[str, str]:
    """``{alias: canonical target name}``."""
    return dict(sorted(_ALIASES.items()))


def resolve_target(name: str) -> str:
    """The canonical name of target or alias ``name``; unknown names raise with the valid ones."""
    if name in _ALIASES:
        return _ALIASES[name]
    if name in list_targets():
        return name
    raise _unknown(name)


def get_target(name: str) -> Target:
    """The :class:`Target` called ``name`` (or aliased so); unknown names list the valid ones."""
    return _build(resolve_target(name))


def resolve_targets(names: list[str] | tuple[str, ...] | None) -> list[Target]:
    """Targets for ``--target`` values (None or empty: every target), de-duplicated in order."""
    out: dict[str, Target] = {}
    for n in names or list_targets():
        t = get_target(n)
        out.setdefault(t.name, t)
    return list(out.values())


def _unknown(name: str) -> ConfigError:
    aliases = ", ".join(f"{a} (= {t})" for a, t in list_aliases().items())
    return ConfigError(
        f"unknown target {name!r}; valid targets: {', '.join(list_targets())}"
        + (f"; aliases: {aliases}" if aliases else "")
        + f"; valid energy profiles: {', '.join(list_energy_profiles())} (see trt-nm targets)"
    )


# --------------------------------------------------------------------------- the targets

register_target("generic45nm", aliases=("cmos45nm",))
register_target(
    "speck",
    energy_note="no energy per synaptic op or per inference is published for Speck; Yao et al., "
    "Nature Communications 15:4464 (2024) give only power (0.42 mW resting, 0.70 mW total)",
)
register_target("loihi", chip="Intel Loihi (Loihi 1)", energy="loihi")
register_target("spinnaker", chip="SpiNNaker (SpiNNaker 1, 130 nm)", energy="spinnaker")
register_target("truenorth", chip="IBM TrueNorth", energy="truenorth")

__all__ = [
    "NOT_PUBLISHED",
    "EnergyOnlyTarget",
    "Target",
    "get_target",
    "list_aliases",
    "list_targets",
    "register_alias",
    "register_target",
    "resolve_target",
    "resolve_targets",
]
