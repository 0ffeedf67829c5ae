"""SynSense Xylo Audio 2 (SYNS61201, Rockpool): profile, constraint checks, nir-1.0.4 file.

Sources:
* Bos & Muir, "Sub-mW Neuromorphic SNN audio processing applications with Rockpool and Xylo",
  arXiv:2208.12991 (2022): 16 input channels, 1000 hidden LIF neurons, 8 output neurons,
  digital, bit-shift decays; Xylo Audio 2 figures 291 uW and 6.6 uJ per inference (no
  per-synaptic-op energy published; reports use trt_nm.metrics.energy's "xylo" profile).
* rockpool 3.1.0 ``devices/xylo/syns61201/xylo_mapper.py`` (2024): max_hidden_neurons=1000,
  max_output_neurons=8, at most 16 input channels, int8 weights, int16 thresholds, uint8 "dash"
  bit-shift time constants (decay beta = 1 - 2^-dash).
* rockpool 3.1.0 ``LIFTorch`` docs: Xylo neurons reset by subtracting the threshold.

Only dense (Linear/Affine) connectivity is supported; no convolution or pooling.

File: rockpool 3.1.0's NIR importer (``rockpool.nn.modules.torch.nir.from_nir``) accepts only
``Input``/``Output``, ``Affine``/``Linear`` (-> ``LinearTorch``), ``CubaLIF`` (-> ``LIFTorch``),
``LI`` and a 4-node recurrent ``CubaLIF`` subgraph; its ``LIF`` branch reads ``node.tau_mem``,
which ``nir.LIF`` does not have, and ``Flatten`` raises ``NotImplementedError``. It also reads
``CubaLIF`` in its own convention rather than NIR's Euler one: ``r`` and ``w_in`` are ignored,
``dt = min(tau_mem / (1 + r))``, decays are ``exp(-dt/tau)``, and each step is
``isyn = (isyn + x) * exp(-dt/tau_syn); v = v * exp(-dt/tau_mem) + isyn + v_leak;
n = floor(v / thr) if v >= thr; v -= n * thr``. :func:`rockpool_graph` therefore writes every
LIF as a ``CubaLIF`` that rockpool runs as trt_nm's ``h = beta*v + x`` (see there), and drops
``Flatten`` nodes (a dense-only graph's Flatten is a reshape of the flat input).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trt_nm.errors import ConfigError
from trt_nm.exporters import register_exporter
from trt_nm.exporters.base import Exporter
from trt_nm.exporters.check import Violation
from trt_nm.exporters.layers import GraphSummary
from trt_nm.exporters.nir104 import write_nir104
from trt_nm.exporters.profile import TargetProfile
from trt_nm.nir.graph import graph_reset, require_dt
from trt_nm.nir.nodes import coefficients

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


#: rockpool's synaptic decay is set to ~2^-SYN_SHIFT so that (almost) nothing of the previous
#: step's synaptic current is left (the residual is ~6e-8 of the last input, float32 rounding)
SYN_SHIFT = 24


def _rockpool_syn_decay(dt: float, tau_syn: np.ndarray) -> np.ndarray:
    """``exp(-dt/tau_syn)`` computed the way rockpool's ``LIFTorch`` computes it (float32 torch)."""
    tau = torch.as_tensor(np.asarray(tau_syn, np.float64)).float()
    return torch.exp(-dt / tau).double().numpy()


def _drop_flatten(graph: Any) -> tuple[dict, list[tuple[str, str]]]:
    """Nodes and edges without Flatten nodes; an Input feeding a Flatten becomes flat."""
    import nir

    nodes = dict(graph.nodes)
    edges = list(graph.edges)
    for name, node in list(nodes.items()):
        if type(node).__name__ != "Flatten":
            continue
        preds = [a for a, b in edges if b == name]
        succs = [b for a, b in edges if a == name]
        for p in preds:
            shape = np.asarray(nodes[p].output_type.get("output", []) if nodes[p].output_type else [])
            if shape.size > 1:
                if type(nodes[p]).__name__ != "Input":
                    raise ConfigError(
                        f"xylo: Flatten {name!r} reshapes the output of {p!r} (shape {shape.tolist()}); "
                        "rockpool has no Flatten and Xylo is dense-only"
                    )
                nodes[p] = nir.Input(input_type={"input": np.array([int(np.prod(shape))])})
        edges = [(a, b) for a, b in edges if name not in (a, b)]
        edges += [(p, s) for p in preds for s in succs]
        del nodes[name]
    return nodes, edges


def rockpool_graph(graph: Any, syn_shift: int = SYN_SHIFT) -> Any:
    """The graph rewritten in the convention rockpool 3.1.0's ``from_nir`` simulates.

    Each LIF ``h = beta*v + x`` (per neuron, ``beta = 1 - dt/tau``, unit input gain, no leak
    current) becomes a ``CubaLIF`` with

    * ``tau_mem = -dt / ln(beta)``, ``r = tau_mem/dt - 1``: rockpool's ``dt = min(tau_mem/(1+r))``
      is then exactly trt_nm's dt for every neuron and its decay ``exp(-dt/tau_mem) = beta``;
    * ``tau_syn = dt / (syn_shift * ln 2)``: rockpool's synaptic decay ``b = exp(-dt/tau_syn)``
      ~ ``2^-syn_shift``, so ``isyn = b*(isyn + x) = b*x + b^2*x_prev + ...``;
    * ``v_threshold = b * threshold`` (``b`` as rockpool computes it in float32): rockpool's
      membrane is ``b`` times trt_nm's, so the same neurons cross threshold and the subtractive
      reset removes ``b * threshold``;
    * ``v_leak = 0`` (biases stay in the Affine nodes), ``w_in = 1``.

    Under NIR's own Euler reading these CubaLIF values mean something else, so the file's
    metadata says ``encoding = "rockpool-3.1-cubalif"``; trt_nm's simulator runs the canonical
    graph (``ExportResult.graph``). Flatten nodes are removed (Input made flat).
    Weights and biases are unchanged (they stay on the 8-bit grid).
    """
    import nir

    dt = require_dt(graph, who="xylo")
    meta = dict(getattr(graph, "metadata", None) or {})
    if graph_reset(graph) != "subtract":
        raise ConfigError("xylo: rockpool/Xylo neurons reset by subtraction; export a subtract-reset model")
    nodes, edges = _drop_flatten(graph)
    for name, node in list(nodes.items()):
        kind = type(node).__name__
        if kind == "CubaLIF":
            raise ConfigError(f"xylo: node {name!r} is already a CubaLIF; only LIF graphs are encoded")
        if kind != "LIF":
            continue
        c = coefficients(node, dt)
        beta = c["decay"]
        if np.any(beta <= 0) or np.any(beta >= 1):
            raise ConfigError(f"xylo: LIF {name!r} needs 0 < beta < 1 (got {beta.min():g}..{beta.max():g})")
        if not np.allclose(c["gain"], 1.0) or np.any(c["leak"] != 0):
            raise ConfigError(f"xylo: LIF {name!r} must have unit input gain and v_leak 0 (trt_nm convention)")
        tau_mem = -dt / np.log(beta)
        tau_syn = np.full_like(tau_mem, dt / (syn_shift * math.log(2.0)))
        b = _rockpool_syn_decay(dt, tau_syn)
        thr = c["threshold"] * b
        nodes[name] = nir.CubaLIF(
            tau_syn=tau_syn, tau_mem=tau_mem, r=tau_mem / dt - 1.0, v_leak=np.zeros_like(tau_mem),
            v_threshold=thr, w_in=np.ones_like(tau_mem),
        )
    meta.update({"encoding": "rockpool-3.1-cubalif", "syn_shift": int(syn_shift)})
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)


class XyloExporter(Exporter):
    profile = PROFILE

    def write(self, graph: Any, path: str | os.PathLike) -> list[Path]:
        """Write :func:`rockpool_graph` of the (quantized) graph in nir 1.0.4's schema."""
        return [write_nir104(rockpool_graph(graph), path)]

    def extra_checks(self, graph: Any, summary: GraphSummary, profile: TargetProfile) -> list[Violation]:
        """Xylo's sizes: hidden neurons, output neurons, input channels."""
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
