"""Operation counts (NeuroBench names) and energy estimates per hardware target.

Counting rule (stated in every report as :data:`COUNTING_RULE`):

* **Effective ACs** (NeuroBench "Effective_ACs"): each spike reaching a weighted layer costs one
  accumulate per nonzero synapse it reaches (spikes x fan-out, from the NIR weights, so sparse
  connectivity and conv borders are respected; fan-out is followed through pooling/reshape).
* **Effective MACs** (NeuroBench "Effective_MACs"): a weighted layer whose input is not binary
  events (the first, encoding layer fed by dense pixels) costs one MAC per nonzero input x
  nonzero weight product.
* **Dense** (NeuroBench "Dense"): the MACs of the same layers if every input and weight were
  used, for the timesteps actually run.
* **Neuron updates**: every stateful neuron is updated once per timestep run; counted
  separately, never folded into SOPs.
* **Activation sparsity** (NeuroBench): 1 - spikes / (spiking neurons x timesteps run).
* Early exit: everything above is counted only up to each sample's exit step.

Energy = ACs x E_AC + MACs x E_MAC + neuron updates x E_neuron + a fixed per-inference part;
constants per target are frozen :class:`EnergyProfile` s with their source and year.
The non-spiking ANN equivalent of the same architecture runs every weighted layer once,
densely: Dense MACs per timestep x E_MAC (45 nm CMOS, the usual comparison).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from trt_nm.errors import ConfigError
from trt_nm.nir.nodes import kinds_where
from trt_nm.registry import Registry
from trt_nm.sim.result import SimResult

COUNTING_RULE = (
    "Effective ACs = spikes x fan-out (nonzero synapses reached, following pooling/reshape) for "
    "layers fed by binary spike events; Effective MACs = nonzero input x nonzero weight products "
    "for layers fed by dense (non-binary) input, i.e. the first layer; Dense = MACs of the same "
    "layers with every input and weight used; neuron updates = stateful neurons x timesteps, "
    "counted separately; activation sparsity = 1 - spikes / (spiking neurons x timesteps); all "
    "counts per sample and only up to each sample's exit step (NeuroBench definitions). "
    "Energy = ACs*E_AC + MACs*E_MAC + neuron_updates*E_neuron + E_inference."
)

#: joules per picojoule
PJ = 1e-12
#: node kinds whose every neuron is updated once per timestep: the node table's stateful
#: neuron models (trt_nm.nir.nodes)
NEURON_KINDS = frozenset(kinds_where(neuron=True, stateful=True))


@dataclass(frozen=True)
class EnergyProfile:
    """Energy constants of one hardware target (joules per operation).

    Every number is written here once; the target registry (``trt_nm.exporters.targets``) and
    the exporters' :class:`~trt_nm.exporters.profile.TargetProfile` read it by name.

    Attributes:
        name: registry name (stable: the target registry refers to it).
        e_ac: joules (J) per accumulate / synaptic operation; 0 when the source gives none.
        e_mac: joules (J) per multiply-accumulate (dense input layer, ANN equivalent).
        e_neuron: joules (J) per neuron update (0 when the source gives none).
        e_inference: fixed joules (J) per inference (e.g. a published per-inference figure).
        source: full citation of the constants.
        year: publication year of the source.
        note: caveats (what is assumed rather than published).
        provisional: True when the numbers are estimates (borrowed from another chip, an
            order-of-magnitude figure, or one benchmark's figure applied to any model);
            reports mark such energies "provisional".
        cite: short citation ("Davies et al., IEEE Micro 2018") for one-line listings.
    """

    name: str
    e_ac: float
    e_mac: float
    e_neuron: float
    e_inference: float
    source: str
    year: int
    note: str = ""
    provisional: bool = False
    cite: str = ""

    def __post_init__(self) -> None:
        for k in ("e_ac", "e_mac", "e_neuron", "e_inference"):
            v = float(getattr(self, k))
            if not v >= 0:
                raise ConfigError(f"energy profile {self.name!r}: {k} must be >= 0, got {v}")
            object.__setattr__(self, k, v)
        if not self.cite:
            object.__setattr__(self, "cite", f"{self.source.split(',')[0]} {self.year}")

    @property
    def synop_pj(self) -> float | None:
        """Energy per synaptic operation in pJ; None when the source publishes none."""
        return self.e_ac / PJ if self.e_ac > 0 else None

    @property
    def neuron_pj(self) -> float | None:
        """Energy per neuron update in pJ; None when the source publishes none."""
        return self.e_neuron / PJ if self.e_neuron > 0 else None

    @property
    def status(self) -> str:
        """``"provisional"`` or ``"published"`` (how reports label this profile's energies)."""
        return "provisional" if self.provisional else "published"

    def summary(self) -> str:
        """One line: energy per synop, per MAC (if different), per neuron update and per
        inference, with the short citation and the provisional flag."""
        parts = [f"synop {_pj(self.synop_pj)}"]
        if self.e_mac > 0 and self.e_mac != self.e_ac:
            parts.append(f"MAC {_pj(self.e_mac / PJ)}")
        parts.append(f"neuron update {_pj(self.neuron_pj)}")
        if self.e_inference > 0:
            parts.append(f"inference {self.e_inference * 1e6:g} uJ")
        flag = "PROVISIONAL; " if self.provisional else ""
        return f"{', '.join(parts)} ({flag}{self.cite})"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["status"] = self.status
        return d


def _pj(v: float | None) -> str:
    """``v`` picojoules as text (nJ from 1000 pJ); None reads "not published"."""
    if v is None:
        return "not published"
    return f"{v / 1e3:g} nJ" if v >= 1e3 else f"{v:g} pJ"


_PROFILES: Registry[EnergyProfile] = Registry("energy profile")


def register_energy_profile(profile: EnergyProfile) -> EnergyProfile:
    """Add (or replace) a profile under ``profile.name``."""
    return _PROFILES.register(profile.name, profile)


def list_energy_profiles() -> list[str]:
    """Registered energy profile names."""
    return _PROFILES.names()


def get_energy_profile(name: str) -> EnergyProfile:
    """The profile called ``name``; unknown names list the valid ones."""
    return _PROFILES.get(name)


# Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014:
# 45 nm, 0.9 V; 32-bit float add 0.9 pJ, 32-bit float mult 3.7 pJ -> MAC 4.6 pJ.
register_energy_profile(EnergyProfile(
    "cmos45nm", 0.9 * PJ, 4.6 * PJ, 0.0, 0.0,
    "M. Horowitz, Computing's energy problem (and what we can do about it), ISSCC 2014 "
    "(45 nm: fp32 add 0.9 pJ, fp32 MAC 4.6 pJ)", 2014,
    "neuron updates not costed (the usual SNN-paper convention)",
    cite="Horowitz, ISSCC 2014",
))
# Davies et al., "Loihi: a neuromorphic manycore processor with on-chip learning",
# IEEE Micro 38(1), 2018: 23.6 pJ per synaptic spike operation. Neuron update 81 pJ as used by
# the KerasSpiking / Nengo energy model for Loihi (Blouw et al., 2019 / KerasSpiking 2021).
register_energy_profile(EnergyProfile(
    "loihi", 23.6 * PJ, 23.6 * PJ, 81.0 * PJ, 0.0,
    "M. Davies et al., Loihi: A Neuromorphic Manycore Processor with On-Chip Learning, "
    "IEEE Micro 38(1), 2018 (23.6 pJ/synaptic op); 81 pJ/neuron update from the KerasSpiking "
    "energy model (2021)", 2018,
    "dense input layer costed at the synop energy (inputs sent as graded events)",
    cite="Davies et al., IEEE Micro 2018; KerasSpiking 2021",
))
# No per-synop energy for Loihi 2 is published in the Intel Loihi 2 brief (2021) or
# Shrestha et al., ICASSP 2024; the Loihi figures are used as an upper bound.
register_energy_profile(EnergyProfile(
    "loihi2", 23.6 * PJ, 23.6 * PJ, 81.0 * PJ, 0.0,
    "Intel Labs, Taking Neuromorphic Computing to the Next Level with Loihi 2 (technology "
    "brief, 2021); per-op constants of Loihi (Davies et al., IEEE Micro 2018)", 2021,
    "PROVISIONAL: Loihi 2 per-op energies are not published; Loihi 1 values used as an upper bound",
    provisional=True,
    cite="Loihi 1 values (Davies et al., IEEE Micro 2018); none published for Loihi 2",
))
# Mayr, Hoeppner, Furber, SpiNNaker 2: a 10 million core processor system for brain simulation
# and machine learning, arXiv:1911.02385, 2019 (project figure ~450 pJ per synaptic event,
# DESIGN.md section 6).
register_energy_profile(EnergyProfile(
    "spinnaker2", 450.0 * PJ, 450.0 * PJ, 0.0, 0.0,
    "C. Mayr, S. Hoeppner, S. Furber, SpiNNaker 2: A 10 Million Core Processor System for "
    "Brain Simulation and Machine Learning, arXiv:1911.02385, 2019 (~450 pJ/synaptic event)", 2019,
    "PROVISIONAL: order-of-magnitude figure (~450 pJ); neuron updates not costed",
    provisional=True,
    cite="Mayr, Hoeppner, Furber, arXiv:1911.02385, 2019",
))
# Stromatias et al., Power analysis of large-scale, real-time neural networks on SpiNNaker,
# IJCNN 2013: ~13.3 nJ per synaptic event (SpiNNaker 1, 130 nm).
register_energy_profile(EnergyProfile(
    "spinnaker", 13.3e3 * PJ, 13.3e3 * PJ, 0.0, 0.0,
    "E. Stromatias et al., Power analysis of large-scale, real-time neural networks on "
    "SpiNNaker, IJCNN 2013 (13.3 nJ/synaptic event)", 2013,
    "neuron updates not costed",
    cite="Stromatias et al., IJCNN 2013",
))
# Merolla et al., A million spiking-neuron integrated circuit with a scalable communication
# network and interface, Science 345(6197), 2014: 26 pJ per synaptic event.
register_energy_profile(EnergyProfile(
    "truenorth", 26.0 * PJ, 26.0 * PJ, 0.0, 0.0,
    "P. Merolla et al., A million spiking-neuron integrated circuit with a scalable "
    "communication network and interface, Science 345(6197), 2014 (26 pJ/synaptic event)", 2014,
    "neuron updates not costed",
    cite="Merolla et al., Science 2014",
))
# Bos & Muir, Sub-mW neuromorphic SNN audio processing applications with Rockpool and Xylo,
# ESSCIRC/arXiv:2208.12991, 2022: Xylo Audio 2 at 291 uW, 6.6 uJ per inference.
register_energy_profile(EnergyProfile(
    "xylo", 0.0, 0.0, 0.0, 6.6e-6,
    "H. Bos, D. R. Muir, Sub-mW Neuromorphic SNN Audio Processing Applications with Rockpool and "
    "Xylo, arXiv:2208.12991, 2022 (Xylo Audio 2: 291 uW, 6.6 uJ per inference)", 2022,
    "PROVISIONAL: only a per-inference figure of one audio benchmark is published; applied to "
    "any model, energy does not depend on spikes",
    provisional=True,
    cite="Bos & Muir, arXiv:2208.12991, 2022",
))


@dataclass(frozen=True)
class OpCounts:
    """Operation counts per sample (means over the split), NeuroBench names.

    Attributes:
        effective_acs: spike-driven accumulates per sample.
        effective_macs: dense-input MACs per sample.
        dense: MACs if every input and weight were used (timesteps run).
        neuron_updates: neuron state updates per sample.
        spikes: spikes per sample.
        activation_sparsity: 1 - spikes / (spiking neurons x timesteps run).
        mean_timesteps: mean timesteps run per sample.
        per_layer: layer -> {"spikes", "synops", "op_kind", "neurons", "firing_rate", ...}.
        ann_macs: MACs per sample of the non-spiking ANN equivalent (one pass).
        connection_sparsity: 1 - nonzero weights / weights (NeuroBench).
        footprint_bytes: fp32 weight bytes (biases and neuron parameters excluded).
    """

    effective_acs: float
    effective_macs: float
    dense: float
    neuron_updates: float
    spikes: float
    activation_sparsity: float
    mean_timesteps: float
    per_layer: dict[str, dict]
    ann_macs: float
    connection_sparsity: float
    footprint_bytes: int

    @property
    def synops(self) -> float:
        """Effective ACs + effective MACs (NeuroBench "synaptic operations", effective)."""
        return self.effective_acs + self.effective_macs

    def to_dict(self) -> dict:
        d = asdict(self)
        d["synops"] = self.synops
        return d


def count_ops(result: SimResult, exit_steps: torch.Tensor | None = None) -> OpCounts:
    """Per-sample mean operation counts from a simulation, up to each sample's exit step.

    Args:
        result: :func:`trt_nm.sim.engine.simulate` output (with ``count_ops=True``).
        exit_steps: 1-based exit step per sample ``[B]``; None: all T steps.
    """
    B = result.batch_size
    mask = result.step_mask(exit_steps)  # [T, B]
    steps_run = float(mask.sum())
    per_layer: dict[str, dict] = {}
    acs = macs = dense = updates = spikes = spiking_slots = 0.0
    ann = 0.0
    weights = nz = footprint = 0
    for name, st in result.layers.items():
        row: dict = {"kind": st.kind, "neurons": st.neurons}
        if name in result.synops:
            ops = float((result.synops[name] * mask).sum()) / B
            row.update(op_kind=st.op_kind, synops=ops, dense=st.dense_macs * steps_run / B,
                       fan_in=st.dense_macs // max(st.neurons, 1), weights=st.weights,
                       nonzero_weights=st.nonzero_weights)
            if st.op_kind == "AC":
                acs += ops
            else:
                macs += ops
            dense += st.dense_macs * steps_run / B
        if st.weights:
            ann += st.dense_macs
            weights += st.weights
            nz += st.nonzero_weights
            footprint += 4 * st.weights
        if st.kind in NEURON_KINDS:
            updates += st.neurons * steps_run / B
        if name in result.spikes:
            s = float((result.spikes[name] * mask).sum()) / B
            slots = st.neurons * steps_run / B
            row.update(spikes=s, firing_rate=s / slots if slots else 0.0)
            spikes += s
            spiking_slots += slots
        if len(row) > 2:
            per_layer[name] = row
    return OpCounts(
        effective_acs=acs,
        effective_macs=macs,
        dense=dense,
        neuron_updates=updates,
        spikes=spikes,
        activation_sparsity=1.0 - spikes / spiking_slots if spiking_slots else 0.0,
        mean_timesteps=steps_run / B,
        per_layer=per_layer,
        ann_macs=ann,
        connection_sparsity=1.0 - nz / weights if weights else 0.0,
        footprint_bytes=footprint,
    )


@dataclass(frozen=True)
class EnergyEstimate:
    """Energy per inference (joules) on one profile, split by operation type."""

    profile: str
    ac_j: float
    mac_j: float
    neuron_j: float
    fixed_j: float

    @property
    def total_j(self) -> float:
        return self.ac_j + self.mac_j + self.neuron_j + self.fixed_j

    def to_dict(self) -> dict:
        d = asdict(self)
        d["total_j"] = self.total_j
        return d


def estimate_energy(counts: OpCounts, profile: str | EnergyProfile) -> EnergyEstimate:
    """Energy per inference of ``counts`` on ``profile`` (linear in every count)."""
    p = get_energy_profile(profile) if isinstance(profile, str) else profile
    return EnergyEstimate(
        p.name,
        ac_j=counts.effective_acs * p.e_ac,
        mac_j=counts.effective_macs * p.e_mac,
        neuron_j=counts.neuron_updates * p.e_neuron,
        fixed_j=p.e_inference,
    )


def ann_energy(counts: OpCounts, profile: str | EnergyProfile = "cmos45nm") -> float:
    """Energy (J) per inference of the non-spiking ANN equivalent: dense MACs x E_MAC."""
    p = get_energy_profile(profile) if isinstance(profile, str) else profile
    return counts.ann_macs * p.e_mac


__all__ = [
    "COUNTING_RULE",
    "EnergyProfile",
    "EnergyEstimate",
    "OpCounts",
    "register_energy_profile",
    "list_energy_profiles",
    "get_energy_profile",
    "count_ops",
    "estimate_energy",
    "ann_energy",
]
