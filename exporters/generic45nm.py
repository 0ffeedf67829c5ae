"""A generic 45 nm digital accelerator: no structural limits, fp32, Horowitz energy numbers.

Source: M. Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014:
32-bit float MAC 4.6 pJ, 32-bit float add (accumulate, AC) 0.9 pJ at 45 nm. Energy reports
use trt_nm.metrics.energy's "cmos45nm" profile. Everything NIR can express is accepted; the file is
plain NIR 1.0.8.
"""

from __future__ import annotations

from trt_nm.exporters import register_exporter
from trt_nm.exporters.base import Exporter
from trt_nm.exporters.profile import TargetProfile
from trt_nm.nir.nodes import LAYER_KINDS, NEURON_KINDS

PROFILE = TargetProfile(
    name="generic45nm",
    chip="generic 45 nm digital (fp32)",
    toolchain="any NIR 1.0.8 reader",
    neuron_models=NEURON_KINDS,  # every neuron model and layer kind of the node table
    leak=True,
    reset_modes=("zero", "subtract"),
    layer_types=LAYER_KINDS,
    weight_bits=None,
    state_bits=None,
    timestep="no limit",
    energy_profile="cmos45nm",
    energy_per_synop_pj=0.9,
    file_format="nir-1.0.8",
    sources=("Horowitz, ISSCC 2014 (45 nm: fp32 MAC 4.6 pJ, AC 0.9 pJ)",),
    notes="reference profile for energy estimates; no capacity limits",
)


class Generic45nmExporter(Exporter):
    profile = PROFILE


register_exporter(Generic45nmExporter())
