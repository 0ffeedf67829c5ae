"""SynSense Speck 2f (DYNAP-CNN cores) exactly as sinabs 3.1.3 computes it after discretisation.

The vendor reference here is sinabs' own software model of the chip:
``sinabs.from_nir(file)`` -> ``DynapcnnNetwork(snn, input_shape, discretize=True)`` mapped
onto ``speck2fdevkit``'s nine cores, run with its torch forward. samna's ``specksim`` (the
event simulator) and ``validate_configuration`` need the real samna, which cannot be
installed offline (PyPI's samna is a bootstrapper that downloads it at import), so neither is
run; the recipe below gives ``sinabs.backend.dynapcnn`` a stand-in ``samna`` module instead.

What sinabs computes (read from ``sinabs/backend/dynapcnn/discretize.py``,
``dynapcnn_layer.py``, ``sinabs/layers/functional/lif.py``, ``activation/spike_generation.py``)
and :func:`neuron_step` / :meth:`SpeckChip.simulate` reproduce in int64:

* discretisation, per layer: ``scale = min(s(w, 8), s(bias, 8), s((min_v_mem, thr), 16))``
  with ``s(a, bits) = (2^(bits-1) - 1) / |max a|`` when ``|min a| <= |max a| * 2^(bits-1) /
  (2^(bits-1) - 1)``, else ``2^(bits-1) / |min a|``; then ``round(x * scale)`` (half to even)
  for weights, biases, threshold and ``min_v_mem``. ``sinabs.from_nir`` sets
  ``min_v_mem = -v_threshold``. :meth:`SpeckChip.integerize` applies the same rule, so the
  written integers are a fixed point of it (``scale == 1``: some weight is 127 or -128, or the
  threshold is 32767) and sinabs leaves them unchanged. Biases are zero (none are trained).
* one DYNAP-CNN layer per core: ``conv`` (a dense layer is a conv whose kernel covers its
  input) -> IAF -> sum pooling of the output spikes (kernel = stride = pool).
* IAF per step, float32 in sinabs but integer-valued: ``v = v + I``;
  ``s = (v > 0) * trunc(v / thr)`` (several spikes per step); ``v = v - s * thr``;
  ``v = max(v, min_v_mem)``. No leak, no delay: layer ``l``'s spikes of step ``t`` reach
  layer ``l + 1`` in the same step (``DELAY_PER_LAYER = 0``). sinabs' forward does not
  saturate ``v`` at 16 bits (the chip's state width); inputs are clipped to ``[0, 15]``
  events per pixel and step.

Memory per layer (sinabs ``DynapcnnLayer.memory_summary``): kernel ``c_in * 2^(ceil(log2(k*k))
+ ceil(log2(c_out)))``, neurons ``c_out * 2^(ceil(log2(h_out)) + ceil(log2(w_out)))``, bias
``c_out``; layers are matched to cores (bipartite) against the per-core tables of
``sinabs/backend/dynapcnn/chips/dynapcnn.py``: :mod:`trt_nm.chip.speck_cores`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trt_nm.atomic import atomic_write_text
from trt_nm.chip.base import LAYER_PREFIX, Chip, ChipNet, ChipTask, VendorRecipe
from trt_nm.chip.registry import register_chip
from trt_nm.chip.speck_cores import DEVICE, KERNEL_MEMORY, layer_problems, memory_table
from trt_nm.errors import ConfigError
from trt_nm.ste import round_ste

#: membrane state width on the chip (sinabs' DYNAPCNN_STATE_PRECISION_BITS)
STATE_BITS = 16
#: weight width (sinabs' DYNAPCNN_WEIGHT_PRECISION_BITS)
WEIGHT_BITS = 8
#: threshold width (thresholds share the state's precision)
THRESHOLD_BITS = 16
#: a neuron emits floor(v / threshold) spikes in one step (sinabs' MultiSpike)
MULTI_SPIKE = True
#: the threshold is subtracted per spike (sinabs' MembraneSubtract; from_nir always builds it)
RESET = "subtract"
#: steps a spike takes from one layer to the next in sinabs' forward
DELAY_PER_LAYER = 0
#: events per pixel and step the encoder passes on (counts above are clipped)
INPUT_MAX = 15
W_MIN, W_MAX = -(2 ** (WEIGHT_BITS - 1)), 2 ** (WEIGHT_BITS - 1) - 1
T_MIN, T_MAX = -(2 ** (THRESHOLD_BITS - 1)), 2 ** (THRESHOLD_BITS - 1) - 1


# ---------------------------------------------------------------------- integer arithmetic
def neuron_step(state: dict[str, torch.Tensor], syn_in: torch.Tensor,
                p: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One step of a Speck IAF neuron layer on int64 tensors.

    Args:
        state: ``{"v": int64 [B, ...]}`` membrane potentials (start at 0).
        syn_in: int64 ``[B, ...]`` summed weighted input spikes of this step.
        p: ``{"threshold": int64 scalar >= 1, "min_v": int64 scalar}`` (``min_v = -threshold``
            for networks read by ``sinabs.from_nir``).

    Returns:
        ``({"v": new v}, spikes)`` with spikes int64 ``[B, ...]`` >= 0 (several per step).
    """
    thr = p["threshold"]
    v = state["v"] + syn_in
    spikes = torch.where(v > 0, torch.div(v, thr, rounding_mode="floor"), torch.zeros_like(v))
    v = torch.maximum(v - spikes * thr, p["min_v"])
    return {"v": v}, spikes


def discretization_scale(values: torch.Tensor, bits: int) -> float:
    """sinabs' ``determine_discretization_scale``: the factor that maps ``values`` onto the
    signed ``bits``-bit grid (``inf`` for an all-zero tensor)."""
    lo_disc, hi_disc = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    lo, hi = float(values.min()), float(values.max())
    if abs(lo) <= abs(hi) * abs(lo_disc / hi_disc):
        return float("inf") if hi == 0 else abs(hi_disc / hi)
    return abs(lo_disc / lo)


def layer_grid(weight: torch.Tensor, threshold: float) -> tuple[float, int]:
    """The per-layer scale sinabs' discretisation applies and the integer threshold.

    ``weight`` float (any shape), ``threshold`` > 0 in the same units; returns ``(scale,
    threshold_int)`` with the threshold clamped to ``[1, 32767]``. Weights on the chip are
    ``round(weight * scale)``; an all-zero layer gets threshold 32767 (so the grid stays a
    fixed point of sinabs' rule).
    """
    thr = torch.tensor([-threshold, threshold], dtype=torch.float32)
    scale = min(discretization_scale(weight.detach(), WEIGHT_BITS),
                discretization_scale(thr, THRESHOLD_BITS))
    thr_int = int(min(max(round(threshold * scale), 1), T_MAX))
    return scale, thr_int


def is_fixed_point(weight: np.ndarray, threshold: int) -> bool:
    """True when sinabs' discretisation leaves integer ``weight`` / ``threshold`` unchanged."""
    w = torch.as_tensor(np.asarray(weight, dtype=np.float32))
    thr = torch.tensor([-threshold, threshold], dtype=torch.float32)
    scale = min(discretization_scale(w, WEIGHT_BITS), discretization_scale(thr, THRESHOLD_BITS))
    return scale == 1.0


# ---------------------------------------------------------------------- hardware-aware model
class _MultiSpike(torch.autograd.Function):
    """floor(v / thr) spikes for v > 0 (exact on integer-valued floats); surrogate gradient
    1/thr at and above threshold, a fast sigmoid 1/thr / (1 + 2 (1 - v/thr))^2 below it."""

    @staticmethod
    def forward(ctx: Any, v: torch.Tensor, thr: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(v, thr)
        s = torch.floor(v / thr)
        s = s - (s * thr > v).to(v.dtype) + ((s + 1) * thr <= v).to(v.dtype)  # exact floor
        return torch.where(v > 0, s, torch.zeros_like(v))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        v, thr = ctx.saved_tensors
        u = v / thr
        sur = torch.where(u >= 1, torch.ones_like(u), 1.0 / (1.0 + 2.0 * (1.0 - u)) ** 2) / thr
        return grad * sur, None


class SpeckLayer(nn.Module):
    """One DYNAP-CNN core: conv (or dense) -> IAF (multi-spike, subtract, ``v >= -thr``) ->
    sum pooling. Weights are quantized on the fly to sinabs' grid (STE), so the forward works
    in the chip's integer units.

    Shapes: ``forward(x [T, B, *in_shape]) -> (spikes [T, B, *out_shape], pooled)``.
    """

    def __init__(self, name: str, kind: str, in_shape: tuple[int, int, int], c_out: int,
                 kernel: int = 3, stride: int = 1, padding: int = 0, pool: int = 1) -> None:
        super().__init__()
        self.name, self.kind = name, kind
        self.in_shape = tuple(int(s) for s in in_shape)
        c_in, h, w = self.in_shape
        if kind == "dense":
            kernel, stride, padding, pool = h, 1, 0, 1
            self.weight = nn.Parameter(torch.empty(c_out, c_in * h * w))
        else:
            self.weight = nn.Parameter(torch.empty(c_out, c_in, kernel, kernel))
        self.kernel, self.stride, self.padding, self.pool = int(kernel), int(stride), int(padding), int(pool)
        h_out = (h + 2 * self.padding - self.kernel) // self.stride + 1
        w_out = (w + 2 * self.padding - (self.kernel if kind != "dense" else w)) // self.stride + 1
        self.out_shape = (int(c_out), int(h_out), int(w_out))
        self.register_buffer("threshold", torch.tensor(1.0))

    def spec(self) -> dict[str, Any]:
        """The layer's geometry as json (ChipNet meta)."""
        return {"name": self.name, "kind": self.kind, "in_shape": list(self.in_shape),
                "out_shape": list(self.out_shape), "kernel": self.kernel, "stride": self.stride,
                "padding": self.padding, "pool": self.pool}

    def grid(self) -> tuple[torch.Tensor, int]:
        """Integer-valued weights (STE) and the integer threshold of this layer."""
        scale, thr_int = layer_grid(self.weight, float(self.threshold))
        if scale == float("inf"):
            return torch.zeros_like(self.weight), thr_int
        w = round_ste(self.weight * scale).clamp(W_MIN, W_MAX)
        return w, thr_int

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        T, B = x.shape[:2]
        w, thr_int = self.grid()
        flat = x.reshape(T * B, *self.in_shape)
        if self.kind == "dense":
            cur = F.linear(flat.flatten(1), w)
        else:
            cur = F.conv2d(flat, w, stride=self.stride, padding=self.padding)
        cur = cur.reshape(T, B, *self.out_shape)
        thr = torch.tensor(float(thr_int), dtype=cur.dtype, device=cur.device)
        v = torch.zeros_like(cur[0])
        spikes = []
        for t in range(T):
            v = v + cur[t]
            s = _MultiSpike.apply(v, thr)
            v = torch.maximum(v - s.detach() * thr, -thr)
            spikes.append(s)
        out = torch.stack(spikes)
        pooled = out
        if self.pool > 1:
            p = F.avg_pool2d(out.reshape(T * B, *self.out_shape), self.pool) * (self.pool * self.pool)
            pooled = p.reshape(T, B, *p.shape[1:])
        return out, pooled


class SpeckNet(nn.Module):
    """A chain of :class:`SpeckLayer` (one per core); the last one is the spiking readout.

    ``forward(x float [T, B, *in_shape]) -> readout spike counts [T, B, n_classes]``.
    """

    def __init__(self, layers: list[SpeckLayer]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for layer in self.layers:
            _, h = layer(h)
        return h.reshape(h.shape[0], h.shape[1], -1)


def build_layers(in_shape: tuple[int, ...], n_classes: int, hidden: tuple[int, ...]) -> list[SpeckLayer]:
    """The default Speck net: conv k3 stride 2 + sum pool 2, then conv k3 per further hidden
    width, then a dense spiking readout."""
    if len(in_shape) != 3:
        raise ConfigError(f"speck takes [C, H, W] event frames, got input shape {list(in_shape)}")
    if not hidden:
        raise ConfigError("speck needs at least one hidden conv layer (--hidden C1[,C2...])")
    layers: list[SpeckLayer] = []
    shape = tuple(int(s) for s in in_shape)
    for i, c in enumerate(hidden):
        first = i == 0
        layer = SpeckLayer(f"conv{i + 1}", "conv", shape, int(c), kernel=3,
                           stride=2 if first else 1, pool=2 if first else 1)
        layers.append(layer)
        c_out, h, w = layer.out_shape
        shape = (c_out, h // layer.pool, w // layer.pool)
        if min(shape[1:]) < 1:
            raise ConfigError(f"speck: input {list(in_shape)} is too small for {len(hidden)} conv layers")
    layers.append(SpeckLayer("readout", "dense", shape, int(n_classes)))
    return layers


# ---------------------------------------------------------------------- the vendor recipe
#: the post-install step: drop PyPI's samna bootstrapper, give sinabs a stand-in samna
POST_INSTALL = r'''
import subprocess, sys, sysconfig
from pathlib import Path

subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", "-q", "samna"], check=True)
site = Path(sysconfig.get_paths()["purelib"])
STUB = """\"\"\"Stand-in for samna written by trt_nm's speck vendor recipe.

The real samna cannot be installed offline (PyPI's samna is a bootstrapper that pip-installs
the real package from SynSense's index when imported). sinabs.backend.dynapcnn imports it at
module level; from_nir, discretisation, memory summaries, the layer->core mapping and the
software forward never call it. Any use raises RuntimeError.
\"\"\"
import importlib.abc
import importlib.machinery
import sys
import types

TRT_NM_STUB = True
__version__ = "0+trt_nm.stub"
ROOT = __name__


class _Missing:
    def __init__(self, name):
        self._name = name

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Missing(self._name + "." + attr)

    def __call__(self, *args, **kwargs):
        raise RuntimeError(self._name + " needs the real samna, which is not installed")

    def __repr__(self):
        return "<samna stand-in " + self._name + ">"


class _StubModule(types.ModuleType):
    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Missing(self.__name__ + "." + attr)


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.startswith(ROOT + "."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        mod = _StubModule(spec.name)
        mod.__path__ = []
        return mod

    def exec_module(self, module):
        pass


sys.modules[__name__].__class__ = _StubModule
sys.meta_path.insert(0, _Finder())
"""
for name in ("samna", "samnagui"):
    (site / name).mkdir(exist_ok=True)
    (site / name / "__init__.py").write_text(STUB)
import sinabs.backend.dynapcnn  # noqa: E402,F401  (fails the build if the stand-in does not do)
'''


# ---------------------------------------------------------------------- the chip
class SpeckChip(Chip):
    """SynSense Speck 2f: IAF conv cores, 8-bit weights, one 16-bit threshold per layer."""

    name = "speck"
    readout = "spike counts"
    task = ChipTask(
        dataset="nmnist5k", T=8, classes=None, hidden=(8, 16),
        epochs=10,
        batch_size=32,
        why="Speck's DVS delivers ON/OFF event counts per pixel: nmnist5k's [T, 2, 34, 34] "
            "event frames are that input, and a 3-core conv net (8 and 16 channels, spiking "
            "10-class readout) fits speck2fdevkit's core memories",
    )
    vendor = VendorRecipe(
        packages="sinabs 3.1.3 (nir 1.0.4, nirtorch 1.0; samna replaced by a stand-in)",
        pip=(("torch==2.13.0", "sinabs==3.1.3", "nir==1.0.4", "nirtorch==1.0"),),
        runner="speck_runner.py",
        post=POST_INSTALL,
        torch="2.13.0",
    )

    # ------------------------------------------------------------------ data
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Event counts float ``[T, B, 2, H, W]`` -> int64 events per pixel and step, clipped to
        ``[0, INPUT_MAX]``; no steps are appended (no layer delay)."""
        return x.round().clamp(0, INPUT_MAX).to(torch.int64)

    def input_range(self) -> tuple[int, int]:
        return 0, INPUT_MAX

    # ------------------------------------------------------------------ model
    def build(self, in_shape: tuple[int, ...], n_classes: int, hidden: tuple[int, ...],
              seed: int = 0) -> nn.Module:
        gen = torch.Generator().manual_seed(seed)
        model = SpeckNet(build_layers(in_shape, n_classes, hidden))
        with torch.no_grad():
            for layer in model.layers:
                fan_in = int(np.prod(layer.weight.shape[1:]))
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) * (1.0 / fan_in) ** 0.5)
        return model

    def check_model(self, model: nn.Module, in_shape: tuple[int, ...]) -> list[str]:
        if not isinstance(model, SpeckNet):
            return [f"speck models are SpeckNet chains, got {type(model).__name__}"]
        return layer_problems([layer.spec() for layer in model.layers])

    def integerize(self, model: nn.Module) -> ChipNet:
        if not isinstance(model, SpeckNet):
            raise ConfigError(f"speck integerizes SpeckNet models, got {type(model).__name__}")
        arrays: dict[str, np.ndarray] = {}
        specs = []
        with torch.no_grad():
            for layer in model.layers:
                w, thr = layer.grid()
                w_int = w.round().to(torch.int64).numpy()
                if not is_fixed_point(w_int, thr):  # cannot happen with layer_grid; kept as a guard
                    raise ConfigError(f"speck: layer {layer.name} is not on sinabs' grid")
                arrays[f"{layer.name}.weight"] = w_int
                arrays[f"{layer.name}.threshold"] = np.asarray(thr, dtype=np.int64)
                specs.append(layer.spec())
        return ChipNet(self.name, arrays, {"layers": specs, "device": DEVICE,
                                           "in_shape": list(model.layers[0].in_shape)})

    def simulate(self, net: ChipNet, x: np.ndarray) -> dict[str, np.ndarray]:
        xt = torch.as_tensor(np.asarray(x), dtype=torch.int64)
        T, B = int(xt.shape[0]), int(xt.shape[1])
        h = xt
        records: dict[str, np.ndarray] = {}
        for spec in net.meta["layers"]:
            name = spec["name"]
            w = torch.from_numpy(np.asarray(net.arrays[f"{name}.weight"], dtype=np.int64))
            thr = torch.tensor(int(net.arrays[f"{name}.threshold"]), dtype=torch.int64)
            flat = h.reshape(T * B, *spec["in_shape"]).to(torch.float64)  # exact below 2^53
            if spec["kind"] == "dense":
                cur = F.linear(flat.flatten(1), w.reshape(w.shape[0], -1).to(torch.float64))
            else:
                cur = F.conv2d(flat, w.to(torch.float64), stride=spec["stride"], padding=spec["padding"])
            cur = cur.round().to(torch.int64).reshape(T, B, *spec["out_shape"])
            state = {"v": torch.zeros_like(cur[0])}
            p = {"threshold": thr, "min_v": -thr}
            steps = []
            for t in range(T):
                state, s = neuron_step(state, cur[t], p)
                steps.append(s)
            spikes = torch.stack(steps)
            records[LAYER_PREFIX + name] = spikes.numpy()
            pool = int(spec["pool"])
            if pool > 1:
                c, hh, ww = spec["out_shape"]
                hp, wp = hh // pool, ww // pool
                spikes = spikes[..., : hp * pool, : wp * pool].reshape(T, B, c, hp, pool, wp, pool).sum((4, 6))
            h = spikes
        records["out"] = h.reshape(T, B, -1).numpy()
        return records

    # ------------------------------------------------------------------ vendor files
    def nir_graph(self, net: ChipNet) -> Any:
        """The network as a NIR graph sinabs' ``from_nir`` reads: Conv2d/Affine -> IF (one
        threshold per layer, shape [1]) -> SumPool2d, a Flatten before a dense layer."""
        import nir

        specs = net.meta["layers"]
        nodes: dict[str, Any] = {"input": nir.Input(input_type={"input": np.asarray(specs[0]["in_shape"])})}
        order = ["input"]
        one = np.ones(1, dtype=np.float32)
        for spec in specs:
            name = spec["name"]
            w = np.asarray(net.arrays[f"{name}.weight"]).astype(np.float32)
            thr = float(net.arrays[f"{name}.threshold"])
            c_out = int(spec["out_shape"][0])
            if spec["kind"] == "dense":
                nodes["flatten"] = nir.Flatten(input_type={"input": np.asarray(spec["in_shape"])},
                                               start_dim=0, end_dim=-1)
                order.append("flatten")
                nodes[name] = nir.Affine(weight=w.reshape(c_out, -1), bias=np.zeros(c_out, np.float32))
            else:
                nodes[name] = nir.Conv2d(
                    input_shape=tuple(spec["in_shape"][1:]), weight=w,
                    stride=(spec["stride"],) * 2, padding=(spec["padding"],) * 2, dilation=(1, 1),
                    groups=1, bias=np.zeros(c_out, np.float32))
            nodes[f"{name}_if"] = nir.IF(r=one.copy(), v_threshold=np.array([thr], np.float32))
            order += [name, f"{name}_if"]
            if int(spec["pool"]) > 1:
                k = np.array([spec["pool"]] * 2)
                nodes[f"{name}_pool"] = nir.SumPool2d(kernel_size=k, stride=k.copy(), padding=np.zeros(2, int))
                order.append(f"{name}_pool")
        nodes["output"] = nir.Output(output_type={"output": np.asarray(specs[-1]["out_shape"][:1])})
        order.append("output")
        edges = list(zip(order[:-1], order[1:]))
        # dt = 1 and r = 1: trt_nm's IF reading (v += r*dt*S) is sinabs' v += S
        meta = {"dt": 1.0, "reset": RESET, "producer": "trt_nm", "chip": self.name,
                "spikes_per_step": "multi (floor(v / threshold)), min_v_mem = -threshold"}
        return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, type_check=False)

    def write(self, net: ChipNet, out_dir: Path) -> dict[str, str]:
        from trt_nm.exporters.nir104 import write_nir104

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        write_nir104(self.nir_graph(net), out_dir / "speck.nir")
        table = memory_table(net.meta["layers"])
        atomic_write_text(out_dir / "memory_summary.json", json.dumps(table, indent=2) + "\n")
        meta = {"layers": net.meta["layers"], "device": DEVICE,
                "thresholds": {s["name"]: int(net.arrays[f"{s['name']}.threshold"]) for s in net.meta["layers"]}}
        atomic_write_text(out_dir / "speck.json", json.dumps(meta, indent=2) + "\n")
        return {
            "speck.nir": "nir.read -> sinabs.from_nir(graph, num_timesteps=T) -> "
                         f"DynapcnnNetwork(snn, input_shape, discretize=True) on {DEVICE}",
            "memory_summary.json": "json: per-layer kernel/neuron/bias memory (sinabs' formulas) "
                                   "and trt_nm's layer->core assignment",
            "speck.json": "json: layer geometry and integer thresholds (for people; sinabs reads the .nir)",
        }

    def check_graph_lines(self, net: ChipNet) -> list[str]:
        out = layer_problems(net.meta["layers"])
        for spec in net.meta["layers"]:
            name = spec["name"]
            w = np.asarray(net.arrays[f"{name}.weight"])
            thr = int(net.arrays[f"{name}.threshold"])
            if w.size and (w.min() < W_MIN or w.max() > W_MAX):
                out.append(f"{name}: weights outside [{W_MIN}, {W_MAX}]")
            if not 1 <= thr <= T_MAX:
                out.append(f"{name}: threshold {thr} outside [1, {T_MAX}]")
            elif not is_fixed_point(w, thr):
                out.append(f"{name}: weights/threshold are not on sinabs' discretisation grid "
                           "(sinabs would rescale them)")
        return out

    def synops(self, net: ChipNet, records: dict[str, np.ndarray], x: np.ndarray) -> int | None:
        """Every input event and spike times the nonzero weights it reaches (for a conv layer,
        per input position: the transposed convolution of the nonzero-weight mask)."""
        T, B = np.asarray(x).shape[:2]
        h = torch.as_tensor(np.asarray(x), dtype=torch.float64)
        total = 0.0
        for spec in net.meta["layers"]:
            name = spec["name"]
            mask = torch.from_numpy((np.asarray(net.arrays[f"{name}.weight"]) != 0).astype(np.float64))
            in_shape = tuple(spec["in_shape"])
            if spec["kind"] == "dense":
                fan = mask.reshape(mask.shape[0], -1).sum(0).reshape(in_shape)
            else:
                ones = torch.ones(1, *spec["out_shape"], dtype=torch.float64)
                full = F.conv_transpose2d(ones, mask, stride=spec["stride"], padding=spec["padding"])[0]
                fan = torch.zeros(in_shape, dtype=torch.float64)
                hh, ww = min(in_shape[1], full.shape[1]), min(in_shape[2], full.shape[2])
                fan[:, :hh, :ww] = full[:, :hh, :ww]
            total += float((h.reshape(T, B, *in_shape).sum((0, 1)) * fan).sum())
            s = torch.as_tensor(np.asarray(records[LAYER_PREFIX + name]), dtype=torch.float64)
            pool = int(spec["pool"])
            if pool > 1:
                c, hh, ww = spec["out_shape"]
                hp, wp = hh // pool, ww // pool
                s = s[..., : hp * pool, : wp * pool].reshape(T, B, c, hp, pool, wp, pool).sum((4, 6))
            h = s
        return int(round(total))

    def neuron_count(self, net: ChipNet) -> int | None:
        return int(sum(int(np.prod(spec["out_shape"])) for spec in net.meta["layers"]))

    def size_line(self, net: ChipNet) -> str:
        table = memory_table(net.meta["layers"])
        return f"{len(table['layer2core'] or ())}/{len(KERNEL_MEMORY)} cores of {DEVICE}"

    def manifest_extra(self, net: ChipNet) -> dict[str, Any]:
        table = memory_table(net.meta["layers"])
        return {
            "device": DEVICE,
            "memory": table["layers"],
            "layer2core": table["layer2core"],
            "thresholds": {s["name"]: int(net.arrays[f"{s['name']}.threshold"]) for s in net.meta["layers"]},
            "delay_per_layer": DELAY_PER_LAYER,
            "input_max_events_per_step": INPUT_MAX,
            "vendor_simulator": "sinabs 3.1.3 DynapcnnNetwork(discretize=True) software forward; "
                                "samna's specksim (bit-accurate event simulator) and "
                                "validate_configuration need the real samna, which cannot be "
                                "installed offline: not run",
        }


register_chip(SpeckChip())
