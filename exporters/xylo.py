"""SynSense Xylo Audio 2 (SYNS61201, Rockpool): profile, constraint checks, nir-1.0.4 file.

Sources:
* Bos & Muir, "Sub-mW Neuromorphic SNN audio processing applications with Rockpool and Xylo",
  arXiv:2208.12991 (2022): 16 input channels, 1000 hidden LIF neurons, 8 output neurons,
  digital, bit-shift decays; Xylo Audio 2 figures 291 uW and 6.6 uJ per inference (no
  per-synaptic-op energy published; reports use trt_nm.energy's "xylo" profile).
* rockpool 3.1.0 ``devices/xylo/syns61201/xylo_mapper.py`` (2024): max_hidden_neurons=1000,
  max_output_neurons=8, at most 16 input channels, int8 weights, int16 thresholds, uint8 "dash"
  bit-shift time constants (decay beta = 1 - 2^-dash).
* rockpool 3.1.0 ``LIFTorch`` docs: Xylo neurons reset by subtracting the threshold.

Only dense (Linear/Affine) connectivity is supported; no convolution or pooling.
"""

from __future__ import annotations

from . import register_exporter
from .base import Exporter
from .check import Violation
from .layers import GraphSummary
from .profile import TargetProfile

PROFILE = TargetProfile(
    name="xylo",
    chip="SynSense Xylo Audio 2 (SYNS61201)",
    toolchain="rockpool 3.1.0 (nir <= 1.0.4) + samna",
    neuron_models=("LIF", "CubaLIF"),
    leak=True,
    leak_rule="bitshift",
    reset_modes=("subtract",),
    layer_types=("dense", "flatten"),
    weight_bits=8,
    state_bits=16,
    threshold_bits=16,
    neurons_per_chip=1008,
    max_inputs=16,
    max_outputs=8,
    max_hidden=1000,
    timestep="set by the network clock; rockpool default dt = 1 ms",
    energy_profile="xylo",
    energy_per_synop_pj=None,
    file_format="nir-1.0.4",
    sources=(
        "Bos & Muir, arXiv:2208.12991 (2022)",
        "rockpool 3.1.0 xylo_mapper (1000 hidden, 8 out, 16 in, int8/int16)",
        "rockpool 3.1.0 LIFTorch (subtractive reset)",
    ),
    notes="fan-in/fan-out limits per neuron are not published beyond the 16/1000/8 sizes",
)


class XyloExporter(Exporter):
    profile = PROFILE

    def extra_checks(self, graph, summary: GraphSummary, profile: TargetProfile) -> list[Violation]:
        out: list[Violation] = []
        weighted = summary.weighted_layers()
        readout = [w for w in weighted if any(summary.layers[s].kind == "output" for s in w.successors)]
        hidden = sum(layer.neurons for layer in summary.neuron_layers())
        outputs = sum(w.neurons for w in readout)
        if hidden > profile.max_hidden:
            out.append(Violation("(graph)", "hidden neurons", profile.max_hidden, hidden))
        if outputs > profile.max_outputs:
            out.append(Violation(readout[-1].name, "output neurons", profile.max_outputs, outputs))
        firsts = [w for w in weighted if any(summary.layers[p].kind in ("input", "flatten") for p in w.predecessors)]
        for w in firsts[:1]:
            if w.fan_in > profile.max_inputs:
                out.append(Violation(w.name, "input channels", profile.max_inputs, w.fan_in))
        return out


register_exporter(XyloExporter())
