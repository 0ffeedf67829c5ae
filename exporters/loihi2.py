"""Intel Loihi 2 (Lava / lava-dl): profile, the checks netx/Lava enforce, NIR 1.0.8 + netx files.

Sources:
* Intel, "Taking Neuromorphic Computing to the Next Level with Loihi 2", technology brief, 2021:
  128 neuromorphic cores per chip, up to 8,192 neurons per core, up to 1 million neurons and
  120 million synapses per chip, synaptic weights of 1-8 bits (plus a per-core exponent),
  graded spikes up to 32 bits.
* Orchard et al., "Efficient Neuromorphic Signal Processing with Loihi 2", IEEE SiPS 2021.
* Davies et al., "Loihi: A Neuromorphic Manycore Processor with On-Chip Learning",
  IEEE Micro 2018 (Loihi 1): 23.6 pJ per synaptic op, 24-bit membrane state. No per-synop
  figure has been published for Loihi 2; energy reports use trt_nm.metrics.energy's "loihi2" profile.
* lava-nc 0.10.0 ``lava/proc/lif/models.py`` (``PyLifModelBitAcc``): 24-bit u/v, 12-bit
  unsigned ``du``/``dv``, 17-bit unsigned ``vth`` (compared as ``vth << 6``), 13-bit signed
  ``bias_mant``, reset to 0.
* lava-dl 0.6.0 ``lava/lib/dl/netx/hdf5.py``: the netx loader builds ``input``, ``dense``,
  ``dense_rec``, ``conv`` and ``flatten`` layers; ``pool``, ``convT``, ``unpool``, ``average``
  and ``concat`` raise ``NotImplementedError``; neuron types ``CUBA``/``LOIHI``, ``SDNN`` and
  ``RF*`` only (any other type fails); ``netx.utils.optimize_weight_bits`` cannot scale an
  all-zero weight matrix (infinite exponent, ``OverflowError``).

Vendor verdicts: Lava has NO NIR importer, so nothing at Intel reads the NIR file. Lava's netx
loader itself rejects pooling layers, unknown neuron types and all-zero weight layers (checked
by ``tests/test_vendor_loihi2.py`` on the netx file :func:`write_netx_from_nir` writes). The
register widths (8-bit weights, 17-bit thresholds, 13-bit biases, 12-bit decays) and the chip's
neuron/synapse/core counts are NOT enforced by Lava's CPU simulation (it accepts such files and
computes on); :meth:`Loihi2Exporter.extra_checks` reports them from the sources above, with no
vendor verdict to compare against.

Files: ``trt-nm export --target loihi2 OUT.nir`` writes the NIR 1.0.8 graph (8-bit weights) and,
for dense graphs (Affine/Linear, LIF/IF/CubaLIF, Flatten), ``OUT.net``: the lava-dl netx HDF5
file Lava loads (:func:`write_netx_from_nir`). That file carries the graph's structure on Lava's
grids (weights int8 with a per-layer step, ``vth = threshold / step``, ``dv = 4096 (1 - beta)``)
but trt_nm makes no bit-exactness claim for it; the bit-exact route is
``trt-nm train --target loihi2`` + ``trt-nm deploy`` (:mod:`trt_nm.chip.loihi2`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from trt_nm.chip.loihi2 import (
    CORES_PER_CHIP,
    DECAY_MAX,
    NEURONS_PER_CHIP,
    NEURONS_PER_CORE,
    STATE_BITS,
    SYNAPSES_PER_CHIP,
    VTH_MAX,
    WEIGHT_BITS,
)
from trt_nm.errors import ConfigError
from trt_nm.exporters import register_exporter
from trt_nm.exporters.base import Exporter
from trt_nm.exporters.check import Violation
from trt_nm.exporters.layers import GraphSummary
from trt_nm.exporters.nir104 import atomic_h5_write
from trt_nm.exporters.profile import TargetProfile
from trt_nm.nir.graph import graph_dt, require_order
from trt_nm.nir.nodes import coefficients

PROFILE = TargetProfile(
    name="loihi2",
    chip="Intel Loihi 2",
    toolchain="lava-nc 0.10 / lava-dl 0.6 netx HDF5 (OUT.net); the NIR file has no reader at Intel "
              "(Lava has no NIR importer)",
    neuron_models=("LIF", "CubaLIF", "IF"),
    leak=True,
    leak_rule="any",  # 12-bit decay constants in Lava's CUBA LIF; any beta to 1/4096
    reset_modes=("zero",),
    layer_types=("dense", "conv", "flatten"),
    weight_bits=WEIGHT_BITS,
    state_bits=STATE_BITS,
    neurons_per_core=NEURONS_PER_CORE,
    cores_per_chip=CORES_PER_CHIP,
    neurons_per_chip=NEURONS_PER_CHIP,
    synapses_per_chip=SYNAPSES_PER_CHIP,
    timestep="algorithmic timesteps, barrier-synchronised; no fixed clock limit published",
    energy_profile="loihi2",
    energy_per_synop_pj=None,
    file_format="nir-1.0.8",
    sources=(
        "Intel Loihi 2 technology brief (2021)",
        "Orchard et al., IEEE SiPS 2021",
        "Davies et al., IEEE Micro 2018 (Loihi 1: 23.6 pJ/synop, 24-bit state)",
        "lava-nc 0.10.0 PyLifModelBitAcc (24-bit u/v, 12-bit du/dv, 17-bit vth, reset to 0)",
        "lava-dl 0.6.0 netx hdf5.py (no pool/convT/unpool/average/concat layers)",
    ),
    notes="fan-in/fan-out limits and per-core synapse counts of Loihi 2 are not published; "
    "netx has no pooling layer (fold pooling into a strided conv); Lava's CPU simulation does "
    "not enforce the register widths",
)

#: Lava's bias mantissa range (netx: bias_exp = 6); the other register ranges are the chip's
#: (trt_nm.chip.loihi2: VTH_MAX, DECAY_MAX, the int8 weight maximum)
BIAS_MANT = (-(1 << 12), (1 << 12) - 1)
W_MAX = (1 << (WEIGHT_BITS - 1)) - 1


def _step(w: np.ndarray) -> float:
    """The per-layer weight step that puts ``w`` on the int8 grid (``max|w| / 127``)."""
    m = float(np.abs(w).max()) if w.size else 0.0
    return m / W_MAX if m > 0 else 1.0


class Loihi2Exporter(Exporter):
    profile = PROFILE

    def extra_checks(self, graph: Any, summary: GraphSummary, profile: TargetProfile) -> list[Violation]:
        """What netx/Lava reject (all-zero weight layers; pooling and unknown neurons come from
        the profile's layer and neuron lists) and the register widths of Lava's CUBA neuron on
        the int8 weight grid (thresholds, biases, decays; Lava's CPU model accepts these)."""
        out: list[Violation] = []
        nodes = graph.nodes
        for layer in summary.weighted_layers():
            w = np.asarray(nodes[layer.name].weight, dtype=np.float64)
            if w.size and not np.any(w):
                out.append(Violation(layer.name, "weights", "at least one nonzero weight", "all 0",
                                     "lava-dl netx cannot scale an all-zero layer (OverflowError); "
                                     "drop the layer"))
        dt = graph_dt(graph)
        for layer in summary.neuron_layers():
            node = nodes[layer.name]
            if type(node).__name__ not in profile.neuron_models or dt is None:
                continue
            c = coefficients(node, dt)
            feeders = [p for p in layer.predecessors if summary.layers[p].weighted]
            steps = [_step(np.asarray(nodes[f].weight, np.float64)) for f in feeders]
            if not steps:
                continue
            step = max(steps)
            thr = np.asarray(c.get("threshold", 1.0), np.float64) / np.asarray(c["gain"], np.float64)
            vth = float(np.max(np.abs(thr))) / step
            if vth > VTH_MAX:
                out.append(Violation(layer.name, "threshold (vth)", VTH_MAX, round(vth),
                                     "Lava's vth is 17-bit (x 64): scale the weights up or the "
                                     "threshold down"))
            for f in feeders:
                b = getattr(nodes[f], "bias", None)
                if b is None:
                    continue
                bias = float(np.max(np.abs(np.asarray(b, np.float64)))) / step
                if round(bias) > BIAS_MANT[1]:
                    out.append(Violation(f, "bias (bias_mant)", BIAS_MANT[1], round(bias),
                                         "Lava's bias mantissa is 13-bit signed"))
            dv = 4096.0 * (1.0 - float(np.min(np.asarray(c["decay"], np.float64))))
            if round(dv) > DECAY_MAX:
                out.append(Violation(layer.name, "decay (dv)", DECAY_MAX, round(dv),
                                     "Lava's dv is 12-bit: beta must be >= 1/4096"))
        return out

    def write(self, graph: Any, path: str | os.PathLike) -> list[Path]:
        """The NIR 1.0.8 file and, for dense graphs, ``<path>.net`` (lava-dl netx HDF5)."""
        paths = super().write(graph, path)
        if netx_writable(graph):
            paths.append(write_netx_from_nir(graph, Path(path).with_suffix(".net")))
        return paths


# ---------------------------------------------------------------------- netx files from NIR
_NEURONS = {"LIF", "IF", "CubaLIF"}


def netx_writable(graph: Any) -> bool:
    """True when :func:`write_netx_from_nir` can write the graph (no conv, no Delay/subgraph)."""
    kinds = {type(n).__name__ for n in graph.nodes.values()}
    return not kinds & {"Conv1d", "Conv2d", "Delay", "NIRGraph", "Scale"}


def netx_layers(graph: Any) -> list[dict[str, Any]]:
    """The graph as netx layer records, in topological order (``type``, ``shape``, ``weight``,
    ``bias``, ``neuron``). A weight node followed by a neuron node becomes one ``dense`` layer
    with a CUBA neuron (``iDecay = 4096``, or the CubaLIF's current decay; ``vDecay = 4096 (1 -
    beta)``; ``vThMant = threshold / step``); a weight node feeding the output directly becomes
    a ``dense`` layer without neuron (netx then builds a non-spiking integrator); a pooling node
    becomes a ``pool`` layer and any other neuron type keeps its NIR name as netx neuron type
    (netx rejects both). Weights go on the int8 grid with the layer's step ``max|w|/127``."""
    order = require_order(graph, who="loihi2 netx writer")
    nodes = graph.nodes
    succ: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in graph.edges:
        succ[a].append(b)
    dt = graph_dt(graph)
    layers: list[dict[str, Any]] = []
    used: set[str] = set()
    for name in order:
        if name in used:
            continue
        node = nodes[name]
        kind = type(node).__name__
        if kind == "Input":
            shape = np.asarray(node.input_type["input"]).astype(np.int64).ravel()
            layers.append({"name": name, "type": "input", "shape": [int(np.prod(shape))]})
        elif kind == "Flatten":
            layers.append({"name": name, "type": "flatten"})
        elif kind in ("SumPool2d", "AvgPool2d"):
            layers.append({"name": name, "type": "pool"})
        elif kind in ("Affine", "Linear"):
            w = np.asarray(node.weight, np.float64)
            nxt = [s for s in succ[name] if type(nodes[s]).__name__ not in ("Output",)]
            neuron = nxt[0] if len(nxt) == 1 and nodes[nxt[0]].__class__.__name__ not in (
                "Affine", "Linear", "Flatten", "SumPool2d", "AvgPool2d") else None
            gain = 1.0
            rec: dict[str, Any] = {"name": name, "type": "dense", "shape": [int(w.shape[0])]}
            if neuron is not None:
                used.add(neuron)
                nkind = type(nodes[neuron]).__name__
                rec["name"] = neuron
                if nkind in _NEURONS and dt is not None:
                    c = coefficients(nodes[neuron], dt)
                    gain = float(np.max(np.asarray(c["gain"], np.float64)))
                    step = _step(w * gain)
                    thr = float(np.max(np.asarray(c.get("threshold", 1.0), np.float64)))
                    idecay = 4096
                    if "syn_decay" in c:
                        idecay = int(round(4096 * (1 - float(np.min(c["syn_decay"])))))
                    rec["neuron"] = {"type": "CUBA", "iDecay": idecay,
                                     "vDecay": int(round(4096 * (1 - float(np.min(c["decay"]))))),
                                     "vThMant": int(round(thr / step)), "refDelay": 1,
                                     "gradedSpike": False}
                else:
                    rec["neuron"] = {"type": nkind, "iDecay": 4096, "vDecay": 0, "vThMant": 1,
                                     "refDelay": 1, "gradedSpike": False}
            step = _step(w * gain)
            rec["weight"] = np.clip(np.round(w * gain / step), -128, 127).astype(np.int64) \
                if np.any(w) else np.zeros(w.shape, np.int64)
            b = getattr(node, "bias", None)
            if b is not None and np.any(np.asarray(b)):
                rec["bias"] = np.round(np.asarray(b, np.float64) * gain / step).astype(np.int64)
            layers.append(rec)
        elif kind == "Output":
            continue
        else:
            raise ConfigError(f"loihi2 netx writer: node {name!r} ({kind}) has no netx layer")
    return layers


def write_netx_from_nir(graph: Any, path: str | os.PathLike) -> Path:
    """Write :func:`netx_layers` of ``graph`` as a lava-dl netx HDF5 file (atomically)."""
    import h5py

    layers = netx_layers(graph)

    def text(g: Any, key: str, value: str) -> None:
        g.create_dataset(key, data=np.array([value.encode("ascii")]))

    def writer(tmp: str) -> None:
        with h5py.File(tmp, "w") as f:
            f.attrs["producer"] = "trt_nm"
            f.attrs["trt_nm"] = json.dumps({"from": "nir", "layers": [r["name"] for r in layers]})
            root = f.create_group("layer")
            for i, rec in enumerate(layers):
                g = root.create_group(str(i))
                g.attrs["name"] = rec["name"]
                text(g, "type", rec["type"])
                if "shape" in rec:
                    g.create_dataset("shape", data=np.array(rec["shape"], np.int64))
                if "weight" in rec:
                    g.create_dataset("weight", data=rec["weight"])
                if "bias" in rec:
                    g.create_dataset("bias", data=rec["bias"])
                if "neuron" in rec:
                    n = g.create_group("neuron")
                    for k, v in rec["neuron"].items():
                        if k == "type":
                            text(n, k, v)
                        else:
                            n.create_dataset(k, data=v)

    return atomic_h5_write(path, writer)


register_exporter(Loihi2Exporter())
