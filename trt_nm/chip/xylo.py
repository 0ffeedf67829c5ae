"""SynSense Xylo Audio 2 (SYNS61201) as XyloSim computes it, bit for bit.

The arithmetic below was read from xylosim 0.1.3's C++ (``src/v2/cpp``, the back-end rockpool
3.1.0's ``syns61201.XyloSim`` uses) and rockpool's ``syns61201`` mapper / ``channel_quantize``.

Network: one population of hidden neurons (<= 1000) and <= 8 output neurons. Input events
(<= 15 per channel per step, 16 channels) reach hidden neurons through ``weights_in`` in the
same step; hidden spikes reach hidden neurons (``weights_rec``) and output neurons
(``weights_out``) one step later. A feed-forward stack ``16 -> H1 [-> H2] -> C`` therefore maps
``H1 -> H2`` into ``weights_rec`` and has ``D = len(hidden)`` steps of delay from input to
output (:data:`DELAY_PER_LAYER` per hidden layer).

One step of a neuron (``XyloIAFNeuron::evolve``, all values int16, saturating adds):

1. delivery: each presynaptic neuron in index order adds ``n * w`` (``n`` its spike count, at
   most 15 for inputs and 31 for hidden neurons) to ``i_syn``, saturating after each add;
2. ``i_syn -= decay(i_syn, dash_syn)`` (the synaptic current decays BEFORE it is integrated);
3. ``dv = sat(-decay(v, dash_mem) + i_syn)``; ``v = sat(v + dv)``;
4. ``n = min(max_spikes, floor(v / thr))`` if ``v >= thr`` else 0; ``v -= n * thr``
   (subtractive reset; hidden neurons emit up to 31 spikes per step, outputs at most 1);

with ``decay(x, d) = x >> d`` (arithmetic shift: floor, also for negative ``x``), replaced by
``sign(x)`` when it is 0 and ``x != 0`` (every nonzero state decays by at least one LSB);
``sat`` clips to ``[-32768, 32767]``. ``decay = 1 - 2^-dash`` on average.

Readout (:attr:`XyloChip.readout`): the output neurons' membrane ``Vmem_out`` (XyloSim records
it each step), with output thresholds at the int16 maximum so the outputs integrate instead of
spiking: a graded readout, where output spike counts are 0/1 per step on Xylo (at most T + 2
levels over a sample, with many ties). Output spikes are still recorded (``layer:out_spikes``).

Time convention: :meth:`XyloChip.encode` appends :data:`FLUSH_STEPS` zero steps to the ``T``
input steps; :meth:`XyloChip.simulate`'s ``out`` is ``Vmem_out`` on all ``T + FLUSH_STEPS``
steps, exactly as XyloSim reports it (its first ``D`` steps are 0); the torch model returns
steps ``D .. T + FLUSH_STEPS - 1`` (where outputs exist) scaled by :data:`LOGIT_SCALE`.

Vendor files (:meth:`XyloChip.write`): ``network.nir`` (nir 1.0.4 schema, rockpool's
``from_nir`` -> ``as_graph`` -> ``syns61201.mapper`` -> ``channel_quantize`` gives exactly
the integers) and ``spec.npz`` (the keyword arguments of ``XyloSim.from_specification``).
Weights are integerized per target neuron so that each neuron's largest incoming |weight| is
127: ``channel_quantize`` then scales by exactly 1 and reproduces them.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trt_nm.chip.base import LAYER_PREFIX, Chip, ChipNet, ChipTask, VendorRecipe
from trt_nm.chip.registry import register_chip
from trt_nm.errors import ConfigError
from trt_nm.ste import floor_ste, round_ste

#: neuron state width (i_syn and v_mem), bits
STATE_BITS = 16
#: signed weight width, bits
WEIGHT_BITS = 8
#: hidden neurons can emit several spikes per step
MULTI_SPIKE = True
#: the threshold is subtracted on a spike
RESET = "subtract"
#: steps of delay added by each hidden layer (hidden spikes are delivered one step later)
DELAY_PER_LAYER = 1

STATE_MIN, STATE_MAX = -(1 << (STATE_BITS - 1)), (1 << (STATE_BITS - 1)) - 1
W_MAX = (1 << (WEIGHT_BITS - 1)) - 1
#: spikes per step: input events per channel, hidden neurons, output neurons (xylosim 0.1.3)
MAX_INPUT_EVENTS, MAX_SPIKES_HIDDEN, MAX_SPIKES_OUT = 15, 31, 1
MAX_INPUTS, MAX_HIDDEN, MAX_OUTPUTS = 16, 1000, 8
#: dash (bit-shift) range the mapper/hardware take: tau = dt * 2^dash with dash >= 1 (4 bits)
DASH_MIN, DASH_MAX = 1, 15
#: zero steps appended by encode (flushes up to this many hidden layers)
FLUSH_STEPS = 2
#: model output = Vmem_out * LOGIT_SCALE (logits for the loss)
LOGIT_SCALE = 1.0 / 1024.0
#: weight parameters start in U(-WEIGHT_INIT, WEIGHT_INIT); each row is rescaled to the int8 grid,
#: so this only sets how fast Adam turns the rows (small: fast at the default lr)
WEIGHT_INIT = 0.05
#: output neuron threshold (int16 max: outputs integrate, reported as Vmem_out)
OUT_THRESHOLD = STATE_MAX
#: network clock written to the NIR file (rockpool's default)
DT = 1e-3
#: default decays (dash) of hidden and output neurons
DASH_SYN, DASH_MEM, DASH_SYN_OUT, DASH_MEM_OUT = 1, 2, 1, 2


# ---------------------------------------------------------------------------------- arithmetic
def _decay(x: torch.Tensor, dash: torch.Tensor) -> torch.Tensor:
    """xylosim's ``decay``: ``x >> dash``, or ``sign(x)`` where that is 0 (int64)."""
    d = torch.bitwise_right_shift(x, dash)
    return torch.where((d == 0) & (x != 0), torch.sign(x), d)


def _sat(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(STATE_MIN, STATE_MAX)


def neuron_step(state: dict[str, torch.Tensor], syn_in: torch.Tensor,
                p: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One XyloSim step of a population (int64 tensors, broadcast over ``[..., N]``).

    Args:
        state: ``{"i": i_syn, "v": v_mem}`` from the previous step, int16-valued.
        syn_in: this step's delivered input ``[..., N]`` (sum of ``n * w``); the sum is added
            with one saturation, which equals XyloSim's add-by-add saturation whenever no
            partial sum leaves int16 (:func:`deliver` computes the exact delta otherwise).
        p: ``dash_syn``, ``dash_mem``, ``threshold`` (>= 1) per neuron and ``max_spikes``.

    Returns:
        ``(new_state, spikes)``, spikes int64 ``[..., N]`` in ``0..max_spikes``.
    """
    i = _sat(state["i"] + syn_in)
    i = i - _decay(i, p["dash_syn"])
    v = state["v"]
    dv = _sat(i - _decay(v, p["dash_mem"]))
    v = _sat(v + dv)
    thr = p["threshold"]
    n = torch.where(v >= thr, torch.div(v, thr, rounding_mode="floor"), torch.zeros_like(v))
    n = n.clamp(0, p["max_spikes"])
    return {"i": i, "v": v - n * thr}, n


def deliver(i_syn: torch.Tensor, counts: torch.Tensor, w: torch.Tensor, max_count: int) -> torch.Tensor:
    """The change of ``i_syn [B, N]`` when ``counts [B, K]`` spikes cross ``w [K, N]``, added
    presynaptic neuron by neuron with saturation as XyloSim does (exact, int64)."""
    c = counts.clamp(0, max_count)
    total = c @ w
    pos = c @ w.clamp(min=0)
    neg = c @ w.clamp(max=0)
    if bool(((i_syn + pos) <= STATE_MAX).all()) and bool(((i_syn + neg) >= STATE_MIN).all()):
        return total
    i = i_syn.clone()
    for k in range(w.shape[0]):  # rare: some partial sum saturates, replay XyloSim's order
        i = _sat(i + c[:, k:k + 1] * w[k])
    return i - i_syn


# ---------------------------------------------------------------------------------- training
class _MultiSpike(torch.autograd.Function):
    """``n = clamp(floor(v/thr), 0, max)`` (0 below threshold); gradient of
    ``clamp(v/thr, 0, max + 1)`` (straight-through in the multi-spike range)."""

    @staticmethod
    def forward(ctx, v, thr, max_spikes: int):  # noqa: ANN001, ANN205
        u = v / thr
        ctx.save_for_backward(u, thr)
        ctx.max_spikes = max_spikes
        return torch.floor(u).clamp(0, max_spikes)

    @staticmethod
    def backward(ctx, g):  # noqa: ANN001, ANN205
        u, thr = ctx.saved_tensors
        inside = ((u > 0) & (u < ctx.max_spikes + 1)).to(g.dtype)
        gu = g * inside / thr
        gthr = -(gu * u).sum(dim=tuple(range(gu.dim() - 1)))
        return gu, gthr, None


def _decay_float(x: torch.Tensor, dash: torch.Tensor) -> torch.Tensor:
    d = floor_ste(x / (2.0 ** dash))
    return torch.where((d == 0) & (x != 0), torch.sign(x), d)


def _quantize_columns(w: torch.Tensor) -> torch.Tensor:
    """``w [out, in]`` -> integer-valued weights, each row (target neuron) scaled so its largest
    |weight| is exactly 127 (the grid ``channel_quantize`` reproduces); STE gradient."""
    m = w.detach().abs().amax(dim=1, keepdim=True).clamp(min=1e-12)
    return round_ste(w * (W_MAX / m)).clamp(-W_MAX, W_MAX)


class XyloLayer(nn.Module):
    """Dense weights + Xylo neurons (no bias). ``weight [out, in]`` is scaled per target neuron
    to the int8 grid; the threshold is learned in log space (integer, >= 1)."""

    def __init__(self, n_in: int, n_out: int, dash_syn: int, dash_mem: int, max_spikes: int,
                 threshold: float | None, learn_threshold: bool = True) -> None:
        super().__init__()
        self.n_in, self.n_out, self.max_spikes = n_in, n_out, max_spikes
        self.weight = nn.Parameter(torch.empty(n_out, n_in))
        nn.init.uniform_(self.weight, -WEIGHT_INIT, WEIGHT_INIT)
        self.register_buffer("dash_syn", torch.full((n_out,), float(dash_syn)))
        self.register_buffer("dash_mem", torch.full((n_out,), float(dash_mem)))
        thr0 = float(threshold if threshold is not None else OUT_THRESHOLD)
        if learn_threshold:
            self.log_threshold = nn.Parameter(torch.full((n_out,), math.log(thr0)))
        else:
            self.register_buffer("log_threshold", torch.full((n_out,), math.log(thr0)))
        self.learn_threshold = learn_threshold

    def int_weight(self) -> torch.Tensor:
        """Integer-valued ``[out, in]`` float tensor."""
        return _quantize_columns(self.weight)

    def int_threshold(self) -> torch.Tensor:
        if not self.learn_threshold:
            return torch.full_like(self.log_threshold, float(OUT_THRESHOLD))
        return round_ste(torch.exp(self.log_threshold)).clamp(1, STATE_MAX)

    def step(self, state: dict[str, torch.Tensor], syn_in: torch.Tensor,
             thr: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """:func:`neuron_step` in float with straight-through estimators."""
        i = (state["i"] + syn_in).clamp(STATE_MIN, STATE_MAX)
        i = i - _decay_float(i, self.dash_syn)
        v = state["v"]
        dv = (i - _decay_float(v, self.dash_mem)).clamp(STATE_MIN, STATE_MAX)
        v = (v + dv).clamp(STATE_MIN, STATE_MAX)
        n = _MultiSpike.apply(v, thr, self.max_spikes)
        return {"i": i, "v": v - n.detach() * thr}, n


class XyloNet(nn.Module):
    """``16 -> hidden... -> C`` on Xylo: float ``[T', B, 16]`` event counts -> logits
    ``[T' - D, B, C]`` (``Vmem_out * LOGIT_SCALE`` on the steps where outputs exist)."""

    def __init__(self, n_in: int, hidden: tuple[int, ...], n_out: int,
                 dash: tuple[int, int, int, int] = (DASH_SYN, DASH_MEM, DASH_SYN_OUT, DASH_MEM_OUT)) -> None:
        super().__init__()
        ds, dm, dso, dmo = dash
        sizes = (n_in, *hidden)
        layers = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            thr0 = W_MAX * math.sqrt(a)
            layers.append(XyloLayer(a, b, ds, dm, MAX_SPIKES_HIDDEN, thr0))
        self.hidden = nn.ModuleList(layers)
        self.readout = XyloLayer(sizes[-1], n_out, dso, dmo, MAX_SPIKES_OUT, None, learn_threshold=False)
        self.n_in = n_in

    @property
    def delay(self) -> int:
        return len(self.hidden) * DELAY_PER_LAYER

    def run(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``x [T', B, 16]`` -> (``Vmem_out [T', B, C]``, spike counts ``[T', B, N]`` per layer,
        readout last), on every step, in :func:`neuron_step`'s arithmetic (float, STE)."""
        T, B = x.shape[:2]
        x = x.reshape(T, B, -1).clamp(0, MAX_INPUT_EVENTS)
        layers = [*self.hidden, self.readout]
        ws = [m.int_weight() for m in layers]
        ths = [m.int_threshold() for m in layers]
        states = [{"i": x.new_zeros(B, m.n_out), "v": x.new_zeros(B, m.n_out)} for m in layers]
        prev = [x.new_zeros(B, m.n_out) for m in layers]
        vout: list[torch.Tensor] = []
        spikes: list[list[torch.Tensor]] = [[] for _ in layers]
        for t in range(T):
            new = []
            for k, m in enumerate(layers):
                src = x[t] if k == 0 else prev[k - 1]  # hidden spikes arrive one step later
                states[k], n = m.step(states[k], src @ ws[k].t(), ths[k])
                new.append(n)
                spikes[k].append(n)
            prev = new
            vout.append(states[-1]["v"])
        return torch.stack(vout), [torch.stack(s) for s in spikes]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[T' - D, B, C]``: ``Vmem_out * LOGIT_SCALE`` from step ``D`` on."""
        v, _ = self.run(x)
        return v[self.delay:] * LOGIT_SCALE


# ---------------------------------------------------------------------------------- the chip
def _check_np_int(a: np.ndarray, lo: int, hi: int, what: str) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise ConfigError(f"xylo: {what} must be integers")
    if a.size and (a.min() < lo or a.max() > hi):
        raise ConfigError(f"xylo: {what} must lie in [{lo}, {hi}] (got {a.min()}..{a.max()})")
    return a.astype(np.int64)


class XyloChip(Chip):
    """SynSense Xylo Audio 2: module docstring for the arithmetic, delays and files."""

    name = "xylo"
    readout = "membrane (Vmem_out)"
    task = ChipTask(
        dataset="mnist5k",
        T=8,
        classes=(0, 1, 2, 3, 4, 5, 6, 7),
        hidden=(64,),
        epochs=10,
        why=("Xylo takes 16 input channels of <= 15 events per step and has 8 output neurons: "
             "digits 0-7 of the embedded MNIST, averaged over a 4x4 grid of 7x7 blocks to 16 "
             "event counts (0..15) presented every step for T=8, fit it exactly; one hidden "
             "layer of 64 (of 1000) neurons keeps the delay at one step."),
    )
    vendor = VendorRecipe(
        packages="rockpool 3.1.0 + xylosim 0.1.3 (XyloSim, bit-accurate C++)",
        pip=(
            ("torch==2.13.0", "rockpool==3.1.0", "nir==1.0.4", "nirtorch<=1.0", "h5py"),
            ("--no-binary", "xylosim", "xylosim==0.1.3"),
        ),
        runner="xylo_runner.py",
    )

    # ------------------------------------------------------------------ data
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``[T, B, 1, 28, 28]`` floats in [0, 1] (or ``[T, B, 16]`` counts) -> int64
        ``[T + FLUSH_STEPS, B, 16]`` event counts: the mean of each 7x7 block of a 4x4 grid,
        times 15, rounded; then :data:`FLUSH_STEPS` zero steps."""
        T, B = x.shape[:2]
        if x.dim() == 5 and tuple(x.shape[2:]) == (1, 28, 28):
            a = F.avg_pool2d(x.reshape(T * B, 1, 28, 28).float(), 7).reshape(T, B, 16)
            e = torch.round(a * MAX_INPUT_EVENTS)
        else:
            e = torch.round(x.reshape(T, B, -1).float())
        e = e.clamp(0, MAX_INPUT_EVENTS).to(torch.int64)
        return torch.cat([e, e.new_zeros(FLUSH_STEPS, *e.shape[1:])])

    def input_steps(self, T: int) -> int:
        """``T`` input steps and :data:`FLUSH_STEPS` zero steps."""
        return T + FLUSH_STEPS

    # ------------------------------------------------------------------ model
    def build(self, in_shape: tuple[int, ...], n_classes: int, hidden: tuple[int, ...],
              seed: int = 0) -> nn.Module:
        torch.manual_seed(seed)
        return XyloNet(int(np.prod(in_shape)), tuple(int(h) for h in hidden), int(n_classes))

    def check_model(self, model: nn.Module, in_shape: tuple[int, ...]) -> list[str]:
        out: list[str] = []
        n_in = int(np.prod(in_shape))
        if not isinstance(model, XyloNet):
            return [f"xylo: model is a {type(model).__name__}, not a XyloNet (build it with the xylo chip)"]
        hidden = sum(m.n_out for m in model.hidden)
        if n_in > MAX_INPUTS:
            out.append(f"input channels {n_in} > {MAX_INPUTS}")
        if hidden > MAX_HIDDEN:
            out.append(f"hidden neurons {hidden} > {MAX_HIDDEN}")
        if not model.hidden:
            out.append("at least one hidden layer is needed (Xylo maps hidden and output neurons)")
        if model.readout.n_out > MAX_OUTPUTS:
            out.append(f"output neurons {model.readout.n_out} > {MAX_OUTPUTS}")
        if model.delay > FLUSH_STEPS:
            out.append(f"{len(model.hidden)} hidden layers delay the output {model.delay} steps; "
                       f"encode flushes {FLUSH_STEPS}")
        return out

    def integerize(self, model: nn.Module) -> ChipNet:
        if not isinstance(model, XyloNet):
            raise ConfigError("xylo: integerize needs a XyloNet (from XyloChip.build)")
        arrays: dict[str, np.ndarray] = {}
        names = []
        with torch.no_grad():
            for k, m in enumerate([*model.hidden, model.readout]):
                nm = "out" if m is model.readout else f"h{k}"
                names.append(nm)
                arrays[f"{nm}.weight"] = m.int_weight().t().round().to(torch.int64).numpy()  # [pre, post]
                arrays[f"{nm}.threshold"] = m.int_threshold().round().to(torch.int64).numpy()
                arrays[f"{nm}.dash_syn"] = m.dash_syn.to(torch.int64).numpy()
                arrays[f"{nm}.dash_mem"] = m.dash_mem.to(torch.int64).numpy()
        meta = {"layers": names, "n_in": model.n_in, "hidden": [m.n_out for m in model.hidden],
                "n_out": model.readout.n_out, "delay": model.delay, "dt": DT,
                "flush_steps": FLUSH_STEPS, "readout": "Vmem_out"}
        return ChipNet(self.name, arrays, meta)

    def _params(self, net: ChipNet) -> list[dict[str, Any]]:
        layers = net.meta.get("layers")
        if not isinstance(layers, list) or len(layers) < 2 or layers[-1] != "out":
            raise ConfigError("xylo: chip network has no layer list ending in 'out'")
        out = []
        fan_in = int(net.meta.get("n_in", 0))
        for nm in layers:
            a = net.arrays
            try:
                w = _check_np_int(a[f"{nm}.weight"], -W_MAX - 1, W_MAX, f"{nm} weights")
                thr = _check_np_int(a[f"{nm}.threshold"], 1, STATE_MAX, f"{nm} thresholds")
                ds = _check_np_int(a[f"{nm}.dash_syn"], DASH_MIN, DASH_MAX, f"{nm} dash_syn")
                dm = _check_np_int(a[f"{nm}.dash_mem"], DASH_MIN, DASH_MAX, f"{nm} dash_mem")
            except KeyError as exc:
                raise ConfigError(f"xylo: chip network lacks array {exc}") from None
            if w.ndim != 2 or w.shape[0] != fan_in or thr.shape != (w.shape[1],) \
                    or ds.shape != thr.shape or dm.shape != thr.shape:
                raise ConfigError(f"xylo: layer {nm} arrays have inconsistent shapes")
            out.append({"name": nm, "w": torch.from_numpy(w), "threshold": torch.from_numpy(thr),
                        "dash_syn": torch.from_numpy(ds), "dash_mem": torch.from_numpy(dm),
                        "max_spikes": MAX_SPIKES_OUT if nm == "out" else MAX_SPIKES_HIDDEN})
            fan_in = w.shape[1]
        return out

    def simulate(self, net: ChipNet, x: np.ndarray) -> dict[str, np.ndarray]:
        """XyloSim's arithmetic on ``x int [T', B, 16]``: ``out`` = ``Vmem_out`` int64
        ``[T', B, C]``; ``layer:hidden`` the spike counts of the hidden population ``[T', B, H]``
        (layers in order, as XyloSim records its one population); ``layer:out_spikes``."""
        layers = self._params(net)
        xt = torch.as_tensor(np.asarray(x)).to(torch.int64)
        T, B = xt.shape[:2]
        xt = xt.reshape(T, B, -1)
        if xt.shape[2] != layers[0]["w"].shape[0]:
            raise ConfigError(f"xylo: input has {xt.shape[2]} channels, the network {layers[0]['w'].shape[0]}")
        if xt.numel() and xt.min() < 0:
            raise ConfigError("xylo: input event counts must be >= 0")
        states = [{"i": torch.zeros(B, p["w"].shape[1], dtype=torch.int64),
                   "v": torch.zeros(B, p["w"].shape[1], dtype=torch.int64)} for p in layers]
        prev = [torch.zeros(B, p["w"].shape[1], dtype=torch.int64) for p in layers]
        rec = [[] for _ in layers]
        vout = []
        for t in range(T):
            new = []
            for k, p in enumerate(layers):
                src, cap = (xt[t], MAX_INPUT_EVENTS) if k == 0 else (prev[k - 1], MAX_SPIKES_HIDDEN)
                syn = deliver(states[k]["i"], src, p["w"], cap)
                states[k], n = neuron_step(states[k], syn, p)
                new.append(n)
                rec[k].append(n)
            prev = new
            vout.append(states[-1]["v"])
        C = layers[-1]["w"].shape[1]
        H = sum(p["w"].shape[1] for p in layers[:-1])
        if T == 0:
            z = np.zeros((0, B, C), np.int64)
            return {"out": z, LAYER_PREFIX + "hidden": np.zeros((0, B, H), np.int64),
                    LAYER_PREFIX + "out_spikes": z.copy()}
        return {
            "out": torch.stack(vout).numpy(),
            LAYER_PREFIX + "hidden": torch.cat([torch.stack(r) for r in rec[:-1]], dim=2).numpy(),
            LAYER_PREFIX + "out_spikes": torch.stack(rec[-1]).numpy(),
        }

    # ------------------------------------------------------------------ vendor files
    def spec(self, net: ChipNet) -> dict[str, np.ndarray]:
        """The keyword arguments of ``XyloSim.from_specification`` (what ``mapper`` +
        ``channel_quantize`` give for :meth:`nir_graph`), as arrays: ``weights_in [16, H, 1]``,
        ``weights_rec [H, H, 1]`` (one synapse per neuron), ``weights_out [H, C]``, per-neuron
        dashes and thresholds, zero biases, 0-d weight shifts and ``dt`` (seconds)."""
        layers = self._params(net)
        hid, out = layers[:-1], layers[-1]
        sizes = [p["w"].shape[1] for p in hid]
        H = sum(sizes)
        offs = np.cumsum([0, *sizes])
        w_in = np.zeros((layers[0]["w"].shape[0], H), np.int64)
        w_in[:, : sizes[0]] = hid[0]["w"].numpy()
        w_rec = np.zeros((H, H), np.int64)
        for k in range(1, len(hid)):
            w_rec[offs[k - 1]:offs[k], offs[k]:offs[k + 1]] = hid[k]["w"].numpy()
        w_out = np.zeros((H, out["w"].shape[1]), np.int64)
        w_out[offs[-2]:offs[-1]] = out["w"].numpy()

        def cat(key: str) -> np.ndarray:
            return np.concatenate([p[key].numpy() for p in hid]).astype(np.int64)

        C = out["w"].shape[1]
        return {
            "weights_in": w_in[:, :, None], "weights_rec": w_rec[:, :, None], "weights_out": w_out,
            "dash_mem": cat("dash_mem"), "dash_mem_out": out["dash_mem"].numpy().astype(np.int64),
            "dash_syn": cat("dash_syn"), "dash_syn_2": np.zeros(H, np.int64),
            "dash_syn_out": out["dash_syn"].numpy().astype(np.int64),
            "threshold": cat("threshold"), "threshold_out": out["threshold"].numpy().astype(np.int64),
            "bias": np.zeros(H, np.int64), "bias_out": np.zeros(C, np.int64),
            "weight_shift_in": np.array(0), "weight_shift_rec": np.array(0),
            "weight_shift_out": np.array(0), "dt": np.array(float(net.meta.get("dt", DT))),
        }

    def nir_graph(self, net: ChipNet) -> Any:
        """The network as NIR (``Linear`` + ``CubaLIF`` per layer, ``input``/``output`` nodes
        named as rockpool's ``from_nir(...).as_graph()`` expects): ``tau = dt * 2^dash``,
        ``r = 2^dash_mem - 1`` (rockpool's ``dt = tau_mem / (1 + r)``), integer thresholds,
        ``v_leak = 0``, no biases."""
        import nir

        layers = self._params(net)
        dt = float(net.meta.get("dt", DT))
        nodes: dict[str, Any] = {"input": nir.Input(input_type={"input": np.array([layers[0]["w"].shape[0]])})}
        edges = []
        src = "input"
        for p in layers:
            nm = p["name"]
            n = p["w"].shape[1]
            ds, dm = p["dash_syn"].numpy().astype(np.float64), p["dash_mem"].numpy().astype(np.float64)
            nodes[f"{nm}_w"] = nir.Linear(weight=p["w"].numpy().T.astype(np.float32))
            nodes[f"{nm}_lif"] = nir.CubaLIF(
                tau_syn=dt * 2.0 ** ds, tau_mem=dt * 2.0 ** dm, r=2.0 ** dm - 1.0,
                v_leak=np.zeros(n), v_threshold=p["threshold"].numpy().astype(np.float64),
                w_in=np.ones(n),
            )
            edges += [(src, f"{nm}_w"), (f"{nm}_w", f"{nm}_lif")]
            src = f"{nm}_lif"
        nodes["output"] = nir.Output(output_type={"output": np.array([layers[-1]["w"].shape[1]])})
        edges.append((src, "output"))
        return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"chip": "xylo", "dt": dt, "reset": "subtract"})

    def write(self, net: ChipNet, out_dir: Path) -> dict[str, str]:
        from trt_nm.exporters.nir104 import write_nir104

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        spec = self.spec(net)
        fd, tmp = tempfile.mkstemp(prefix=".spec-", suffix=".npz", dir=out_dir)
        os.close(fd)
        try:
            np.savez(tmp, **spec)
            os.replace(tmp, out_dir / "spec.npz")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        write_nir104(self.nir_graph(net), out_dir / "network.nir")
        return {
            "spec.npz": "XyloSim.from_specification(**np.load('spec.npz')) (rockpool.devices.xylo.syns61201)",
            "network.nir": "rockpool from_nir -> as_graph -> syns61201.mapper -> channel_quantize (== spec.npz)",
        }

    def check_graph_lines(self, net: ChipNet) -> list[str]:
        layers = self._params(net)
        out = []
        H = sum(p["w"].shape[1] for p in layers[:-1])
        if layers[0]["w"].shape[0] > MAX_INPUTS:
            out.append(f"input channels {layers[0]['w'].shape[0]} > {MAX_INPUTS}")
        if H > MAX_HIDDEN:
            out.append(f"hidden neurons {H} > {MAX_HIDDEN}")
        if layers[-1]["w"].shape[1] > MAX_OUTPUTS:
            out.append(f"output neurons {layers[-1]['w'].shape[1]} > {MAX_OUTPUTS}")
        for p in layers:
            w = p["w"]
            m = w.abs().amax(dim=0)
            if bool(((m != W_MAX) & (m != 0)).any()):
                out.append(f"{p['name']}: some neuron's largest |weight| is not {W_MAX}; "
                           "channel_quantize would rescale it")
        return out

    def synops(self, net: ChipNet, records: dict[str, np.ndarray], x: np.ndarray) -> int | None:
        """Input events (at most 15 per channel and step) and hidden spikes, each times the
        nonzero weights it crosses (``weights_in``, then ``weights_rec``/``weights_out``)."""
        layers = self._params(net)
        T, B = np.asarray(x).shape[:2]
        pre = [np.clip(np.asarray(x).reshape(T, B, -1), 0, MAX_INPUT_EVENTS)]
        hidden = np.asarray(records[LAYER_PREFIX + "hidden"])
        start = 0
        for p in layers[:-1]:
            n = p["w"].shape[1]
            pre.append(hidden[..., start:start + n])
            start += n
        fan = [(p["w"].numpy() != 0).sum(axis=1) for p in layers]  # [pre] nonzero outgoing weights
        return int(sum((a.sum(axis=(0, 1)) * f).sum() for a, f in zip(pre, fan)))

    def neuron_count(self, net: ChipNet) -> int | None:
        return int(sum(net.meta.get("hidden", [])) + net.meta.get("n_out", 0))

    def size_line(self, net: ChipNet) -> str:
        m = net.meta
        return (f"{m.get('n_in')}/{MAX_INPUTS} inputs, {sum(m.get('hidden', []))}/{MAX_HIDDEN} hidden, "
                f"{m.get('n_out')}/{MAX_OUTPUTS} output neurons")

    def manifest_extra(self, net: ChipNet) -> dict[str, Any]:
        m = net.meta
        return {"delay_steps": m.get("delay"), "flush_steps": m.get("flush_steps"),
                "hidden_neurons": f"{sum(m.get('hidden', []))} / {MAX_HIDDEN}",
                "output_neurons": f"{m.get('n_out')} / {MAX_OUTPUTS}",
                "input_channels": f"{m.get('n_in')} / {MAX_INPUTS}",
                "readout": "Vmem_out (output membrane, int16) per step; predict = argmax of its sum",
                "dt_s": m.get("dt")}


register_chip(XyloChip())
