"""SynSense Speck (sinabs / DYNAP-CNN): profile, constraint checks and a nir-1.0.4 file.

Sources:
* Richter et al., "Speck: A Smart event-based Vision Sensor with a low latency 327K Neuron
  Convolutional Neuronal Network Processing Pipeline", arXiv:2304.06793 (2023): 9 convolutional
  cores, 327K integrate-and-fire neurons, 128x128 DVS input, asynchronous (no global clock).
* sinabs 3.1.3 ``sinabs/backend/dynapcnn`` (2024): per-core kernel memory 16/16/16/32/32/64/64/
  16/16 Ki entries and neuron memory 64/64/64/32/32/16/16/16/16 Ki entries; 8-bit weights,
  16-bit neuron states and thresholds; IAF neurons (``IAFSqueeze``) with reset to zero or by
  subtraction; conv kernels up to 16x16; sum pooling 1, 2 or 4; a layer sends to at most 2
  destination layers; Linear layers are mapped to convolutions.

The chip's neurons have no leak: a model with LIF neurons is refused unless
``--convert leak-to-iaf`` is given (its effect is shown by ``trt-nm simulate`` on the converted
graph). The exported file is NIR in nir 1.0.4's schema (sinabs 3.1.3 pins nir <= 1.0.4).
"""

from __future__ import annotations

from typing import Any

from trt_nm.exporters import register_exporter
from trt_nm.exporters.base import Exporter
from trt_nm.exporters.check import Violation, incoming_weighted
from trt_nm.exporters.layers import GraphSummary
from trt_nm.exporters.profile import TargetProfile

#: sinabs 3.1.3 dynapcnn.py, entries per core
KERNEL_MEMORY = (16, 16, 16, 32, 32, 64, 64, 16, 16)
NEURON_MEMORY = (64, 64, 64, 32, 32, 16, 16, 16, 16)
MAX_DESTINATIONS = 2
MAX_INPUT_SIZE = 128

PROFILE = TargetProfile(
    name="speck",
    chip="SynSense Speck (DYNAP-CNN core)",
    toolchain="sinabs 3.1.3 (nir <= 1.0.4) + samna",
    neuron_models=("IF",),
    leak=False,
    leak_rule="none",
    # The chip can reset to zero, but the nir 1.0.4 IF node sinabs reads has no reset field and
    # sinabs.from_nir always builds subtractive resets: a zero-reset file would silently change.
    reset_modes=("subtract",),
    layer_types=("conv", "dense", "sumpool", "flatten"),
    weight_bits=8,
    state_bits=16,
    threshold_bits=16,
    neurons_per_core=max(NEURON_MEMORY) * 1024,
    synapses_per_core=max(KERNEL_MEMORY) * 1024,
    cores_per_chip=9,
    neurons_per_chip=sum(NEURON_MEMORY) * 1024,
    max_kernel_size=16,
    pool_sizes=(1, 2, 4),
    max_layers=9,
    weights_shared_conv=True,
    timestep="event-driven, no global timestep (leak would need an external slow clock)",
    energy_profile=None,
    energy_per_synop_pj=None,
    file_format="nir-1.0.4",
    sources=(
        "Richter et al., arXiv:2304.06793 (2023)",
        "sinabs 3.1.3 sinabs/backend/dynapcnn (memory tables, 2024)",
    ),
    notes="a layer occupies exactly one core; energy per synaptic op not published",
)


class SpeckExporter(Exporter):
    profile = PROFILE

    def extra_checks(self, graph: Any, summary: GraphSummary, profile: TargetProfile) -> list[Violation]:
        """One layer per core (memories, greedy assignment), destinations, input size."""
        out: list[Violation] = []
        # one layer per core: each neuron layer must fit one core's memories, and the set of
        # layers must be assignable to distinct cores (greedy: biggest neuron layers first)
        needs = []
        for layer in summary.neuron_layers():
            kernel = sum(summary.layers[w].weights for w in incoming_weighted(summary, layer.name))
            needs.append((layer.name, layer.neurons, kernel))
            if layer.neurons > profile.neurons_per_core:
                out.append(Violation(layer.name, "neurons/core (one layer per core)", profile.neurons_per_core, layer.neurons))
            if kernel > profile.synapses_per_core:
                out.append(Violation(layer.name, "kernel memory/core", profile.synapses_per_core, kernel))
        free = list(range(len(KERNEL_MEMORY)))
        for name, neurons, kernel in sorted(needs, key=lambda x: -x[1]):
            fit = [c for c in free if NEURON_MEMORY[c] * 1024 >= neurons and KERNEL_MEMORY[c] * 1024 >= kernel]
            if not fit:
                if neurons <= profile.neurons_per_core and kernel <= profile.synapses_per_core:
                    out.append(Violation(name, "core assignment", "a free core with enough memory", "none left"))
                continue
            free.remove(min(fit, key=lambda c: (NEURON_MEMORY[c], KERNEL_MEMORY[c])))
        for layer in summary.neuron_layers():
            dests = len(layer.successors)
            if dests > MAX_DESTINATIONS:
                out.append(Violation(layer.name, "destination layers", MAX_DESTINATIONS, dests))
        for name in summary.order:
            info = summary.layers[name]
            if info.kind == "input":
                shape = getattr(graph.nodes[name], "output_type", {}).get("output")
                if shape is not None and len(shape) == 3 and max(int(shape[1]), int(shape[2])) > MAX_INPUT_SIZE:
                    out.append(Violation(name, "input size", MAX_INPUT_SIZE, max(int(shape[1]), int(shape[2]))))
        return out


register_exporter(SpeckExporter())
