"""Intel Loihi 2 as Lava simulates it bit for bit: fixed-point CUBA neurons, netx Dense layers.

The chip's arithmetic, read from lava-nc 0.10.0 (``lava/proc/lif/models.py``
``AbstractPyLifModelFixed`` / ``PyLifModelBitAcc``, ``lava/proc/dense/models.py``
``PyDenseModelBitAcc``, ``lava/utils/weightutils.py``) and lava-dl 0.6.0
(``lava/lib/dl/netx/hdf5.py``, ``netx/utils.py`` ``optimize_weight_bits``), and checked spike
for spike against Lava's fixed-point simulation (``tests/test_vendor_loihi2.py``):

* Dense (one step of delay): the synaptic input delivered at step ``t`` is the weighted sum of
  the presynaptic spikes of step ``t - 1`` (binary spikes: any nonzero input is a spike).
  netx rescales an HDF5 weight matrix ``W`` by ``2**s`` (its "weight exponent" ``-s``,
  :func:`lava_weights`), Lava's Dense clips it to 8 bits and truncates its low bits (mixed-sign
  weights lose their LSB: the "even" 8-bit grid), and shifts the sum back:
  ``a = (sum_j W_hw[i, j] s_j) >> s``. For int8 HDF5 weights the rescaling makes the
  truncation lossless, so ``a = sum_j W[i, j] s_j`` exactly (one exception: a layer with no
  positive weight whose most negative one is ``-2**k`` is scaled to -256, which Lava's
  inhibitory clip makes -255); the general pipeline is what :meth:`Loihi2.simulate` runs.
* CUBA LIF (:func:`neuron_step`), 24-bit state::

      u = sign(u*(4096-(du+1))) * (|u*(4096-(du+1))| >> 12) + (a << 6)   (wraps to 24 bits)
      v = sign(v*(4096-dv)) * (|v*(4096-dv)| >> 12) + u + bias          (clipped to 24 bits)
      spike = v > (vth << 6);  v = 0 where it spiked

  The paper's neuron ``v = v/2 + x`` (tau = 2, hard reset to 0) is ``du = 4095`` (netx
  ``iDecay = 4096``: no synaptic memory) and ``dv = 2048`` (netx ``vDecay``), with halving
  that rounds toward zero on the 1/64 grid of the weights.

Timing convention (``DELAY_PER_LAYER = 1``): layer ``l`` (0-based) first sees input step 0 at
step ``l + 1``. :meth:`Loihi2.encode` appends ``flush`` zero steps (one per weight layer of the
task) so the last input step reaches the readout; records have ``T' = T + flush`` steps and
the model's forward returns the aligned readout window ``out[L : L + T]`` (``L`` = weight
layers), the steps where outputs of the ``T`` input steps exist. ``out[:L]`` is always 0.

Readout: the output layer is a CUBA LIF layer; ``out`` is its spikes ``[T', B, C]`` (what
Lava's output port reports), predictions are the argmax of the spike counts.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from trt_nm.atomic import atomic_write_path
from trt_nm.chip.base import LAYER_PREFIX, Chip, ChipNet, ChipTask, VendorRecipe
from trt_nm.chip.registry import register_chip
from trt_nm.errors import ConfigError
from trt_nm.neuron.surrogate import spike
from trt_nm.ste import round_ste, straight_through

# ---------------------------------------------------------------------- the chip's facts
#: u and v are 24-bit registers (Lava ``uv_bitwidth``)
STATE_BITS = 24
#: synaptic weights: 8 bits (plus netx's per-layer weight exponent)
WEIGHT_BITS = 8
#: one (binary) spike per neuron and step
MULTI_SPIKE = False
#: the membrane is set to 0 after a spike
RESET = "zero"
#: every Dense layer delivers its input one step later
DELAY_PER_LAYER = 1

#: decays are 12-bit fractions of 4096 (``decay_shift = 12``)
DECAY_SHIFT = 12
DECAY_UNITY = 1 << DECAY_SHIFT
#: synaptic input and threshold are MSB-aligned by 6 bits (``act_shift``, ``vth_shift``)
ACT_SHIFT = 6
VTH_SHIFT = 6
#: ``vth`` is an unsigned 17-bit register, ``du``/``dv`` unsigned 12-bit (PyLifModelBitAcc)
VTH_MAX = (1 << 17) - 1
DECAY_MAX = (1 << 12) - 1
#: the paper's neuron: no synaptic memory, membrane halved every step
DU = 4095
DV = 2048
#: the 24-bit state range: u wraps into (-2^23, 2^23], v is clipped to +-(2^23 - 1)
_HALF = 1 << (STATE_BITS - 1)
#: int8 HDF5 weights (netx rescales them itself)
W_MIN, W_MAX = -(1 << (WEIGHT_BITS - 1)), (1 << (WEIGHT_BITS - 1)) - 1

# Loihi 2 sizes (Intel, "Taking Neuromorphic Computing to the Next Level with Loihi 2",
# technology brief, 2021): 128 neuromorphic cores, up to 8,192 neurons per core, up to
# 1 million neurons and 120 million synapses per chip.
NEURONS_PER_CORE = 8192
CORES_PER_CHIP = 128
NEURONS_PER_CHIP = 1_048_576
SYNAPSES_PER_CHIP = 120_000_000

#: surrogate of the spike in threshold units: atan with a = 1 (wide tails). Measured on the default
#: task (6 epochs, 3600 digits, exact chip accuracy on 1000 test digits): the paper's triangle
#: (g = 1) 70.6 %, triangle g = 2 81.3 %, g = 4 89.4 %, atan a = 2 88.9 %, atan a = 1 90.1 %:
#: the narrow triangle leaves silent readout neurons without a gradient.
SURROGATE = "atan"
SURROGATE_WIDTH = 1.0
#: spike -> logit gain of the model's readout (training only; predictions use spike counts)
OUT_GAIN = 4.0
#: name of the netx file :meth:`Loihi2.write` produces
NET_FILE = "network.net"

_SIGN_MIXED, _SIGN_EXC, _SIGN_INH = 1, 2, 3


#: the vendor venv's post-install step: lava-dl 0.6.0 pins torch < 2.4 (no CPU wheel for Python
#: 3.10 here), but netx's HDF5 loader needs no torch; two imports are made optional so that
#: ``lava.lib.dl.netx.hdf5`` and Lava's process-model search (which imports every netx module)
#: load without it. Fails loudly if lava-dl's files are not the expected 0.6.0 ones.
POST_INSTALL = r"""
import pathlib
import sysconfig

netx = pathlib.Path(sysconfig.get_paths()["purelib"]) / "lava" / "lib" / "dl" / "netx"
TAG = "# trt_nm patch: torch-free venv\n"
patches = {
    # Lava's compiler imports every module of lava.lib.dl.netx when it looks for process
    # models; sequential_modules (the PyTorch bridge) only needs torch when it is called
    "sequential_modules.py": (
        "import torch\n",
        TAG + "try:\n    import torch\nexcept ImportError:\n    import types\n"
        "    torch = types.SimpleNamespace(tensor=np.ndarray, is_tensor=lambda x: False)\n",
    ),
    # slayer (torch) is only needed for resonate-and-fire neurons
    "hdf5.py": (
        "from lava.lib.dl.slayer.neuron.rf import neuron_params as get_rf_params\n",
        TAG + "try:\n"
        "    from lava.lib.dl.slayer.neuron.rf import neuron_params as get_rf_params\n"
        "except ImportError:\n"
        "    def get_rf_params(*args, **kwargs):\n"
        "        raise ImportError('RF neurons need lava-dl slayer (torch), not installed')\n",
    ),
}
for name, (old, new) in patches.items():
    path = netx / name
    text = path.read_text()
    if TAG in text:
        continue
    if text.count(old) != 1:
        raise SystemExit(f"lava-dl netx {name}: expected line {old.strip()!r} not found")
    path.write_text(text.replace(old, new))
import lava.lib.dl.netx.sequential_modules  # noqa: E402,F401
from lava.lib.dl.netx.hdf5 import Network  # noqa: E402,F401
print("patched lava-dl 0.6.0 netx for a venv without torch")
"""


# ---------------------------------------------------------------------- integer arithmetic
def _decay(x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """``sign(x*(4096-d)) * (|x*(4096-d)| >> 12)``: Lava's decay, rounding toward zero."""
    p = x * (DECAY_UNITY - d)
    return torch.sign(p) * (p.abs() >> DECAY_SHIFT)


def neuron_step(state: dict[str, torch.Tensor], syn_in: torch.Tensor,
                p: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One step of Lava's fixed-point CUBA LIF (``PyLifModelBitAcc``) on int64 tensors.

    Args:
        state: ``{"u": current, "v": membrane}`` int64, any shape (start at 0).
        syn_in: the Dense output delivered this step (integer synaptic input, before the
            6-bit alignment), broadcastable to the state.
        p: ``{"du", "dv", "vth"}`` int64 (``du`` as Lava's LIF parameter: the current decays by
            ``du + 1`` of 4096), optional ``"bias"`` (the effective bias ``bias_mant << bias_exp``).

    Returns:
        ``({"u", "v"}, spikes)`` with spikes int64 0/1 of the state's shape.
    """
    u = _decay(state["u"], p["du"] + 1) + (syn_in << ACT_SHIFT)
    wrapped = torch.where(u > _HALF, u - 2 * _HALF, u)
    u = torch.where(wrapped <= -_HALF, u + 2 * _HALF, wrapped)
    v = _decay(state["v"], p["dv"]) + u
    if "bias" in p:
        v = v + p["bias"]
    v = v.clamp(-_HALF + 1, _HALF - 1)
    s = v > (p["vth"] << VTH_SHIFT)
    v = torch.where(s, torch.zeros_like(v), v)
    return {"u": u, "v": v}, s.to(torch.int64)


def lava_weights(w: np.ndarray) -> tuple[np.ndarray, int]:
    """What Lava's Dense computes with HDF5 weights ``w`` (int ``[out, in]``) loaded by netx.

    netx (``optimize_weight_bits``) picks a sign mode and a scale ``2**s``, multiplies the
    weights by it and passes ``weight_exp = -s`` and ``num_weight_bits``; Lava's bit-accurate
    Dense then re-derives the sign mode from the scaled weights, clips them to its 8-bit range
    and truncates ``8 - num_weight_bits (+1 if mixed)`` low bits. The synaptic input is
    ``(W_hw @ s) >> s`` (``<<`` for a positive exponent).

    Returns:
        ``(W_hw int64 [out, in], shift)`` with ``a = (W_hw @ spikes) >> shift``.

    Raises:
        ConfigError: weights netx cannot load (all zero: netx's scale is infinite) or that it
            would shift by a negative amount (outside the 9-bit range netx handles).
    """
    w = np.asarray(w).astype(np.int64)
    mx, mn = int(w.max()), int(w.min())
    if mx > 254 and mn < 0:
        w = np.clip(w, -256, 254)
        mx = int(w.max())
    if mn < -256 and mx > 0:
        w = np.clip(w, -256, 254)
        mn = int(w.min())
    if mx < 0:
        mode, signed = _SIGN_INH, 0
    elif mn >= 0:
        mode, signed = _SIGN_EXC, 0
    else:
        mode, signed = _SIGN_MIXED, 1
    if mode == _SIGN_MIXED:
        scale = min(127 / mx if mx > 0 else math.inf, -128 / mn)
    elif mode == _SIGN_INH:
        scale = -256 / mn
    else:
        if mx == 0:
            raise ConfigError("all weights are 0: netx's weight scaling divides by the largest weight")
        scale = 255 / mx
    scale_bits = math.floor(math.log2(scale)) + signed
    n = 8
    while n > 0 and np.any(w % (1 << n)):
        n -= 1
    n -= signed
    num_weight_bits = 8 - scale_bits - n
    if scale_bits < 0:
        raise ConfigError(f"weights up to {mx} need a negative netx weight shift")
    w = w << scale_bits
    # Lava's Dense: sign mode of the scaled weights, clip to 8 bits, truncate low bits
    lmode = _SIGN_EXC if w.min() >= 0 else (_SIGN_INH if w.max() <= 0 else _SIGN_MIXED)
    mixed = int(lmode == _SIGN_MIXED)
    sgn = -1 if lmode == _SIGN_INH else 1
    w = np.clip(sgn * w, -256 * mixed, 255)
    k = 8 - num_weight_bits + mixed
    if k < 0:
        raise ConfigError("weights need a negative truncation in Lava's Dense")
    w = sgn * ((w >> k) << k)
    return w.astype(np.int64), scale_bits


def dense_input(w_hw: np.ndarray, shift: int, s: torch.Tensor) -> torch.Tensor:
    """Lava's Dense sum for spikes ``s`` int64 ``[T, B, in]`` (nonzero = spike): ``[T, B, out]``,
    NOT yet delayed. Float64 matmul (exact below 2^53), then the weight exponent's shift."""
    a = (s != 0).to(torch.float64) @ torch.from_numpy(w_hw.T.astype(np.float64))
    a = a.round().to(torch.int64)
    return a >> shift if shift >= 0 else a << -shift


def delayed(a: torch.Tensor) -> torch.Tensor:
    """One step of delay along time (dim 0): step 0 receives 0."""
    return torch.cat([torch.zeros_like(a[:1]), a[:-1]], dim=0)


# ---------------------------------------------------------------------- the torch model
def weight_step(w: torch.Tensor) -> torch.Tensor:
    """The per-layer quantization step of float weights: ``max|w| / 127`` (detached)."""
    return (w.detach().abs().max() / W_MAX).clamp_min(1e-12)


def int_weights(w: torch.Tensor) -> torch.Tensor:
    """Float weights on the int8 grid (float tensor holding integers, straight-through)."""
    return torch.clamp(round_ste(w / weight_step(w)), W_MIN, W_MAX)


def int_threshold(w: torch.Tensor, theta: float) -> torch.Tensor:
    """The integer threshold ``vth = round(theta / step)`` in [0, 2^17 - 1] (no gradient)."""
    return torch.clamp(torch.round(theta / weight_step(w)), 0, VTH_MAX)


class Loihi2MLP(nn.Module):
    """Dense CUBA-LIF network in Loihi 2's integer units, trainable with STE + surrogate.

    ``forward(x float [T', B, *in_shape]) -> [T' - flush, B, n_classes]``: the readout layer's
    spikes (times :data:`OUT_GAIN`) at the aligned steps ``L .. L + T - 1``. The membrane is
    computed in the chip's integer units (float tensors holding integers, exact below 2^24):
    the int8 weights (straight-through rounding), the 6-bit alignment, the halving toward
    zero (straight-through, gradient 1/2), the 24-bit wrap/clip, ``v > vth << 6`` with the
    :data:`SURROGATE` in threshold units, and the reset to 0 (detached).

    Attributes:
        layers: ``nn.Linear`` without bias per weight layer (float weights).
        theta: the float threshold every layer's integer threshold is derived from.
        flush: zero steps the inputs carry after the ``T`` data steps.
    """

    def __init__(self, sizes: list[int], flush: int, theta: float = 1.0) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in zip(sizes, sizes[1:]))
        self.theta = float(theta)
        self.flush = int(flush)
        self.sizes = list(sizes)

    def spikes(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's spikes ``[T', B, n]`` (0/1 floats with surrogate gradients)."""
        T, B = x.shape[:2]
        h = (x.reshape(T, B, -1) != 0).to(torch.float32)
        outs = []
        for lin in self.layers:
            w = int_weights(lin.weight)
            vth64 = int_threshold(lin.weight, self.theta) * (1 << VTH_SHIFT)
            d = delayed(h @ w.t()) * (1 << ACT_SHIFT)
            u_all = torch.where(d > _HALF, d - 2 * _HALF, d)
            u_all = torch.where(u_all <= -_HALF, d + 2 * _HALF, u_all)
            v = torch.zeros(B, w.shape[0], dtype=d.dtype)
            steps = []
            for t in range(T):
                half = v * 0.5
                v = straight_through(half, torch.trunc(half.detach())) + u_all[t]
                v = v.clamp(-_HALF + 1, _HALF - 1)
                s = spike((v - vth64) / vth64.clamp_min(1.0), SURROGATE, SURROGATE_WIDTH)
                v = v * (1.0 - s.detach())
                steps.append(s)
            h = torch.stack(steps)
            outs.append(h)
        return outs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.spikes(x)[-1]
        L = len(self.layers)
        T = x.shape[0] - self.flush
        return out[L:L + T] * OUT_GAIN


# ---------------------------------------------------------------------- the chip
def _layer_names(n_layers: int) -> list[str]:
    return [f"h{i + 1}" for i in range(n_layers - 1)] + ["out"]


class Loihi2(Chip):
    """Intel Loihi 2 through Lava's bit-accurate CPU models (see the module docstring)."""

    name = "loihi2"
    task = ChipTask(
        dataset="mnist5k", T=8, classes=None, hidden=(64,),
        epochs=6,
        why="784-64-10 dense CUBA network on binary rate-coded MNIST: Lava's netx loads dense "
            "CUBA layers, binary spikes need no graded-spike message bits, and 8 steps plus "
            "2 flush steps keep Lava's step-by-step Python simulation to seconds per 64 digits",
    )
    readout = "spike counts (output-layer CUBA LIF spikes per step)"
    vendor = VendorRecipe(
        packages="lava-nc 0.10.0 + lava-dl 0.6.0 netx (Python 3.10, no torch)",
        python="pyenv:3.10.13",
        pip=(("lava-nc==0.10.0", "h5py==3.16.0"), ("--no-deps", "lava-dl==0.6.0")),
        post=POST_INSTALL,
        runner="loihi2_runner.py",
        torch=None,
    )

    # ------------------------------------------------------------------ data
    @property
    def flush(self) -> int:
        """Zero steps :meth:`encode` appends: one per weight layer of the task."""
        return len(self.task.hidden) + 1

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Floats ``[T, B, *in]`` in [0, 1] -> binary spikes ``int64 [T + flush, B, *in]``.

        Deterministic rate code: a pixel of intensity ``p`` spikes ``round(T p)`` times, evenly
        spread (``s_t = floor(sum_{k<=t} p_k + 1/2) - floor(sum_{k<t} p_k + 1/2)``), then
        ``flush`` zero steps."""
        c = torch.floor(torch.cumsum(x.clamp(0, 1).to(torch.float64), dim=0) + 0.5)
        s = torch.diff(c, dim=0, prepend=torch.zeros_like(c[:1])).clamp(0, 1).to(torch.int64)
        return torch.cat([s, torch.zeros((self.flush, *s.shape[1:]), dtype=torch.int64)], dim=0)

    def input_range(self) -> tuple[int, int]:
        return 0, 1

    def input_steps(self, T: int) -> int:
        return T + self.flush

    # ------------------------------------------------------------------ model
    def build(self, in_shape: tuple[int, ...], n_classes: int, hidden: tuple[int, ...],
              seed: int = 0) -> nn.Module:
        torch.manual_seed(seed)
        sizes = [int(np.prod(in_shape)), *(int(h) for h in hidden), int(n_classes)]
        model = Loihi2MLP(sizes, flush=self.flush)
        with torch.no_grad():
            for lin in model.layers:  # start with ~10 % of a layer's fan-in able to fire it
                lin.weight.normal_(0.0, 1.0 / math.sqrt(0.1 * lin.in_features))
        return model

    def check_model(self, model: nn.Module, in_shape: tuple[int, ...]) -> list[str]:
        if not isinstance(model, Loihi2MLP):
            return [f"{type(model).__name__} is not a Loihi2MLP (dense CUBA layers)"]
        return _size_lines(model.sizes, self.flush)

    def integerize(self, model: nn.Module) -> ChipNet:
        if not isinstance(model, Loihi2MLP):
            raise ConfigError(f"loihi2: cannot integerize {type(model).__name__}")
        arrays: dict[str, np.ndarray] = {}
        vth = []
        with torch.no_grad():
            for i, lin in enumerate(model.layers):
                arrays[f"w{i}"] = int_weights(lin.weight).to(torch.int64).numpy()
                vth.append(int(int_threshold(lin.weight, model.theta)))
        L = len(model.layers)
        arrays["vth"] = np.array(vth, np.int64)
        arrays["du"] = np.full(L, DU, np.int64)
        arrays["dv"] = np.full(L, DV, np.int64)
        meta = {"layers": _layer_names(L), "sizes": model.sizes, "flush": model.flush,
                "delay_per_layer": DELAY_PER_LAYER}
        return ChipNet(self.name, arrays, meta)

    def simulate(self, net: ChipNet, x: np.ndarray) -> dict[str, np.ndarray]:
        """Lava's arithmetic on ``x [T', B, *in]`` (nonzero = spike): every layer's spikes
        ``int64 [T', B, n]``, ``"out"`` the readout's, ``"layer:h1"``... the hidden ones."""
        names, weights, params = _unpack(net)
        xt = torch.as_tensor(np.asarray(x)).to(torch.int64)
        T, B = xt.shape[:2]
        h = xt.reshape(T, B, -1)
        recs: dict[str, np.ndarray] = {}
        for name, w, p in zip(names, weights, params):
            if h.shape[-1] != w.shape[1]:
                raise ConfigError(f"loihi2: layer {name} takes {w.shape[1]} inputs, got {h.shape[-1]}")
            w_hw, shift = lava_weights(w)
            a = delayed(dense_input(w_hw, shift, h))
            state = {"u": torch.zeros(B, w.shape[0], dtype=torch.int64),
                     "v": torch.zeros(B, w.shape[0], dtype=torch.int64)}
            steps = []
            for t in range(T):
                state, s = neuron_step(state, a[t], p)
                steps.append(s)
            h = torch.stack(steps)
            recs["out" if name == "out" else LAYER_PREFIX + name] = h.numpy()
        return recs

    # ------------------------------------------------------------------ vendor files
    def write(self, net: ChipNet, out_dir: Path) -> dict[str, str]:
        """``network.net``: a lava-dl netx HDF5 network (``layer/0`` input, ``layer/1..`` dense
        with a CUBA neuron each; no biases)."""
        names, weights, params = _unpack(net)
        problems = self.check_graph_lines(net)
        if problems:
            raise ConfigError("loihi2: " + "; ".join(problems))
        path = Path(out_dir) / NET_FILE
        atomic_write_path(path, lambda tmp: write_netx(tmp, names, weights, params))
        return {NET_FILE: "lava.lib.dl.netx.hdf5.Network(net_config=FILE, reset_interval=P, "
                          "reset_offset=1), run with Loihi2SimCfg(select_tag='fixed_pt'); "
                          "P = T' + layers (see runners/loihi2_runner.py)"}

    def check_graph_lines(self, net: ChipNet) -> list[str]:
        names, weights, params = _unpack(net)
        out = _size_lines([weights[0].shape[1], *(w.shape[0] for w in weights)], None)
        for name, w, p in zip(names, weights, params):
            if w.min() < W_MIN or w.max() > W_MAX:
                out.append(f"layer {name}: weights in [{w.min()}, {w.max()}] outside the 8-bit "
                           f"range [{W_MIN}, {W_MAX}] -- re-integerize the trained model")
            elif not w.any():
                out.append(f"layer {name}: all weights are 0; netx cannot scale such a layer "
                           "(its weight exponent would be infinite) -- retrain or drop the layer")
            vth = int(p["vth"])
            if not 0 <= vth <= VTH_MAX:
                out.append(f"layer {name}: threshold vth={vth} outside Lava's unsigned 17-bit "
                           f"range [0, {VTH_MAX}]")
            for k in ("du", "dv"):
                d = int(p[k])
                if not 0 <= d <= DECAY_MAX:
                    out.append(f"layer {name}: {k}={d} outside the 12-bit range [0, {DECAY_MAX}]")
        return out

    def synops(self, net: ChipNet, records: dict[str, np.ndarray], x: np.ndarray) -> int | None:
        """Input events and hidden spikes times the nonzero weights of their fan-out."""
        names, weights, _ = _unpack(net)
        T, B = np.asarray(x).shape[:2]
        pre = [np.asarray(x).reshape(T, B, -1) != 0]
        pre += [np.asarray(records[LAYER_PREFIX + n]) for n in names[:-1]]
        return int(sum((p.sum(axis=(0, 1)) * (w != 0).sum(axis=0)).sum() for p, w in zip(pre, weights)))

    def neuron_count(self, net: ChipNet) -> int | None:
        _, weights, _ = _unpack(net)
        return int(sum(int(w.shape[0]) for w in weights))

    def size_line(self, net: ChipNet) -> str:
        _, weights, _ = _unpack(net)
        neurons = sum(int(w.shape[0]) for w in weights)
        synapses = sum(int(w.size) for w in weights)
        cores = sum(-(-int(w.shape[0]) // NEURONS_PER_CORE) for w in weights)
        return (f"{neurons:,}/{NEURONS_PER_CHIP:,} neurons, {synapses:,}/{SYNAPSES_PER_CHIP:,} "
                f"synapses, {cores}/{CORES_PER_CHIP} cores (a layer per core)")

    def manifest_extra(self, net: ChipNet) -> dict[str, Any]:
        names, weights, params = _unpack(net)
        return {
            "loihi2": {
                "neuron": "CUBA LIF, Lava PyLifModelBitAcc (du, dv of 4096; v > vth << 6; reset 0)",
                "delay_per_layer": DELAY_PER_LAYER,
                "flush_steps": int(net.meta.get("flush", len(names))),
                "layers": {n: {"neurons": int(w.shape[0]), "fan_in": int(w.shape[1]),
                               "vth": int(p["vth"]), "du": int(p["du"]), "dv": int(p["dv"]),
                               "netx_weight_exp": -lava_weights(w)[1]}
                           for n, w, p in zip(names, weights, params)},
                "limits": {"neurons_per_core": NEURONS_PER_CORE, "cores_per_chip": CORES_PER_CHIP,
                           "neurons_per_chip": NEURONS_PER_CHIP,
                           "synapses_per_chip": SYNAPSES_PER_CHIP,
                           "source": "Intel Loihi 2 technology brief (2021)"},
            }
        }


def _size_lines(sizes: list[int], flush: int | None) -> list[str]:
    """Loihi 2's chip-level size limits for a dense network of layer widths ``sizes``."""
    out = []
    L = len(sizes) - 1
    neurons = sum(sizes[1:])
    synapses = sum(a * b for a, b in zip(sizes, sizes[1:]))
    if neurons > NEURONS_PER_CHIP:
        out.append(f"{neurons:,} neurons > {NEURONS_PER_CHIP:,} per Loihi 2 chip")
    if synapses > SYNAPSES_PER_CHIP:
        out.append(f"{synapses:,} synapses > {SYNAPSES_PER_CHIP:,} per Loihi 2 chip")
    cores = sum(math.ceil(n / NEURONS_PER_CORE) for n in sizes[1:])
    if cores > CORES_PER_CHIP:
        out.append(f"{cores} cores ({NEURONS_PER_CORE:,} neurons each) > {CORES_PER_CHIP} per chip")
    if flush is not None and L > flush:
        out.append(f"{L} weight layers but the inputs carry {flush} flush steps (one per layer of "
                   "the task): use as many hidden layers as the task")
    return out


def _unpack(net: ChipNet) -> tuple[list[str], list[np.ndarray], list[dict[str, torch.Tensor]]]:
    """Layer names, int64 weights and the neuron parameters of a loihi2 ChipNet (checked)."""
    if net.chip != "loihi2":
        raise ConfigError(f"not a loihi2 network: {net.chip}")
    names = net.meta.get("layers")
    if not isinstance(names, list) or not names:
        raise ConfigError("loihi2 network: meta 'layers' missing")
    L = len(names)
    weights = []
    for i in range(L):
        w = net.arrays.get(f"w{i}")
        if w is None or w.ndim != 2 or w.dtype.kind not in "iu":
            raise ConfigError(f"loihi2 network: w{i} missing or not a 2-D integer array")
        if i and w.shape[1] != weights[-1].shape[0]:
            raise ConfigError(f"loihi2 network: w{i} takes {w.shape[1]} inputs, layer {i - 1} has "
                              f"{weights[-1].shape[0]}")
        weights.append(w.astype(np.int64))
    params = []
    for i in range(L):
        p = {}
        for k in ("vth", "du", "dv"):
            a = net.arrays.get(k)
            if a is None or a.shape != (L,):
                raise ConfigError(f"loihi2 network: {k} must have one value per layer")
            p[k] = torch.tensor(int(a[i]), dtype=torch.int64)
        params.append(p)
    return names, weights, params


def write_netx(path: str, names: list[str], weights: list[np.ndarray],
               params: list[dict[str, torch.Tensor]]) -> None:
    """Write a lava-dl netx HDF5 file: ``layer/0`` an input of ``in`` neurons (no neuron: the
    first Dense receives the spikes), ``layer/i`` dense ``[out, in]`` int weights with a CUBA
    neuron (``iDecay = du + 1``, ``vDecay = dv``, ``vThMant = vth``, ``refDelay = 1``). Each
    layer group carries its trt_nm name as attribute ``name`` (netx reads only datasets)."""
    import h5py

    def text(g: Any, key: str, value: str) -> None:
        g.create_dataset(key, data=np.array([value.encode("ascii")]))

    with h5py.File(path, "w") as f:
        f.attrs["producer"] = "trt_nm"
        f.attrs["trt_nm"] = json.dumps({"layers": names, "delay_per_layer": DELAY_PER_LAYER})
        lay = f.create_group("layer")
        g = lay.create_group("0")
        text(g, "type", "input")
        g.create_dataset("shape", data=np.array([weights[0].shape[1]], np.int64))
        g.attrs["name"] = "input"
        for i, (name, w, p) in enumerate(zip(names, weights, params)):
            g = lay.create_group(str(i + 1))
            g.attrs["name"] = name
            text(g, "type", "dense")
            g.create_dataset("shape", data=np.array([w.shape[0]], np.int64))
            g.create_dataset("weight", data=w.astype(np.int16))
            n = g.create_group("neuron")
            text(n, "type", "CUBA")
            n.create_dataset("iDecay", data=int(p["du"]) + 1)
            n.create_dataset("vDecay", data=int(p["dv"]))
            n.create_dataset("vThMant", data=int(p["vth"]))
            n.create_dataset("refDelay", data=1)
            n.create_dataset("gradedSpike", data=False)


register_chip(Loihi2())
