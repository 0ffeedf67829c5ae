"""Intel Loihi 2 (Lava / lava-dl): profile and exporter (NIR 1.0.8 file, 8-bit weights).

Sources:
* Intel, "Taking Neuromorphic Computing to the Next Level with Loihi 2", technology brief, 2021:
  128 neuromorphic cores per chip, up to 1 million neurons and 120 million synapses per chip,
  up to 8,192 neurons per core, synaptic weights of 1-8 bits (plus a per-core exponent),
  graded spikes up to 32 bits.
* Orchard et al., "Efficient Neuromorphic Signal Processing with Loihi 2", IEEE SiPS 2021.
* Davies et al., "Loihi: A Neuromorphic Manycore Processor with On-Chip Learning",
  IEEE Micro 2018 (Loihi 1): 23.6 pJ per synaptic op, 24-bit membrane state. No per-synop
  figure has been published for Loihi 2; energy reports use trt_nm.metrics.energy's "loihi2" profile.
* Lava 0.x ``lava.proc.lif`` (2022-2024): the standard CUBA LIF resets the membrane to 0; a
  subtractive reset would need custom microcode and is not produced by Lava's NIR import.
"""

from __future__ import annotations

from trt_nm.exporters import register_exporter
from trt_nm.exporters.base import Exporter
from trt_nm.exporters.profile import TargetProfile

PROFILE = TargetProfile(
    name="loihi2",
    chip="Intel Loihi 2",
    toolchain="NIR 1.0.8 readers; NOT Lava itself: lava-nc 0.10 / lava-dl 0.6 have no NIR importer (they load netx HDF5)",
    neuron_models=("LIF", "CubaLIF", "IF"),
    leak=True,
    leak_rule="any",  # 12-bit decay constants in Lava's CUBA LIF; any beta to 1/4096
    reset_modes=("zero",),
    layer_types=("dense", "conv", "sumpool", "flatten", "scale"),
    weight_bits=8,
    state_bits=24,
    neurons_per_core=8192,
    cores_per_chip=128,
    neurons_per_chip=1_048_576,
    synapses_per_chip=120_000_000,
    timestep="algorithmic timesteps, barrier-synchronised; no fixed clock limit published",
    energy_profile="loihi2",
    energy_per_synop_pj=None,
    file_format="nir-1.0.8",
    sources=(
        "Intel Loihi 2 technology brief (2021)",
        "Orchard et al., IEEE SiPS 2021",
        "Davies et al., IEEE Micro 2018 (Loihi 1: 23.6 pJ/synop, 24-bit state)",
        "Lava lava.proc.lif (reset to 0)",
    ),
    notes="fan-in/fan-out limits and per-core synapse counts of Loihi 2 are not published; "
    "AvgPool2d maps via --convert avgpool-to-sumpool",
)


class Loihi2Exporter(Exporter):
    profile = PROFILE


register_exporter(Loihi2Exporter())
