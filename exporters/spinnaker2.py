"""SpiNNaker2 (py-spinnaker2): profile and exporter (NIR 1.0.8 file).

Sources:
* Gonzalez et al., "SpiNNaker2: A Large-Scale Neuromorphic System for Event-Based and
  Asynchronous Machine Learning", arXiv:2401.04491 (2024): 152 ARM Cortex-M4F processing
  elements (PEs) per chip, 128 kB local SRAM per PE, neuron models run in software.
* Mayr, Hoeppner, Furber, "SpiNNaker 2: A 10 Million Core Processor System for Brain
  Simulation and Machine Learning", arXiv:1911.02385 (2019).
* py-spinnaker2 (2023): real-time default timestep 1 ms; NIR import of LIF/CubaLIF/IF, Affine,
  Linear, Conv2d, SumPool2d, Flatten.

Neuron models and bit widths are software-defined (the M4F has an FPU), so no weight width is
imposed here; the binding limit is the 128 kB of SRAM per PE (weights + neuron state). Energy
per synaptic op: see trt_nm.metrics.energy's "spinnaker2" profile.
"""

from __future__ import annotations

from trt_nm.exporters import register_exporter
from trt_nm.exporters.base import Exporter
from trt_nm.exporters.profile import TargetProfile

PROFILE = TargetProfile(
    name="spinnaker2",
    chip="SpiNNaker2 (one chip)",
    toolchain="NIR 1.0.8 readers (no public SpiNNaker2 toolchain on PyPI to load it)",
    neuron_models=("LIF", "CubaLIF", "IF"),
    leak=True,
    reset_modes=("zero", "subtract"),
    layer_types=("dense", "conv", "sumpool", "flatten"),
    weight_bits=None,
    state_bits=None,
    cores_per_chip=152,
    memory_per_core_kib=128.0,
    timestep="1 ms real-time default (py-spinnaker2), configurable",
    energy_profile="spinnaker2",
    energy_per_synop_pj=None,
    file_format="nir-1.0.8",
    sources=(
        "Gonzalez et al., arXiv:2401.04491 (2024)",
        "Mayr, Hoeppner, Furber, arXiv:1911.02385 (2019)",
        "py-spinnaker2 (2023)",
    ),
    notes="neurons per PE depend on the software model and memory; estimated from 128 kB SRAM "
    "per PE with 32-bit weights and states; fan-in/fan-out limits not published",
)


class SpiNNaker2Exporter(Exporter):
    profile = PROFILE


register_exporter(SpiNNaker2Exporter())
