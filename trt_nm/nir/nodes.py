"""Discrete-time maths of every NIR node type, written once (forward Euler with step ``dt``).

Used by :func:`trt_nm.nir.io.from_nir` and meant to be reused by the NIR simulator. With
``S`` the summed input of a node at one timestep and ``H(x) = (x > 0)``:

* ``LIF``: ``h = beta*v + g*S + b`` with ``beta = 1 - dt/tau``, ``g = r*dt/tau``,
  ``b = v_leak*dt/tau`` (Euler for ``tau dv/dt = v_leak - v + r S``); ``z = H(h - v_th)``;
  ``v = where(z, v_reset, h)`` (reset "zero") or ``v = h - z*v_th`` (reset "subtract", only
  when the graph metadata says so). For trt_nm graphs ``g == 1`` and ``b == 0`` exactly.
* ``CubaLIF``: ``i = alpha*i + (dt/tau_syn)*w_in*S`` (``alpha = 1 - dt/tau_syn``), then
  ``h = beta*v + (dt/tau_mem)*(r*i + v_leak)`` with the NEW current; spike and reset as LIF.
* ``CubaLI``: as CubaLIF without spike/reset; outputs ``v``.
* ``LI``: ``v = beta*v + g*S + b``; outputs ``v``.
* ``IF``: ``h = v + dt*r*S``; spike and reset as LIF.  ``I``: ``v = v + dt*r*S``; outputs ``v``.
* ``Threshold``: ``H(S - threshold)``, stateless.

State (``v``, ``i``) starts at 0. Stateless nodes (Affine, Linear, Scale, Conv, pooling,
Flatten) act on a merged batch ``[N, *batch_free_shape]``; stateful modules here take
time-major ``[T, B, *shape]`` and return ``[T, B, *shape]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from trt_nm.errors import NirError
from trt_nm.neuron.surrogate import spike

# --------------------------------------------------------------------------- the node table


def arr(value: Any) -> np.ndarray:
    """A NIR parameter (numpy array, torch tensor, number) as a float64 numpy array."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def _positive(name: str, value: np.ndarray) -> np.ndarray:
    if not np.all(value > 0):
        raise NirError(f"{name} must be > 0")
    return value


def _reset_value(node: Any) -> np.ndarray:
    """``v_reset`` broadcast to the threshold's shape (0 where the node has none)."""
    vr = getattr(node, "v_reset", None)
    thr = arr(node.v_threshold)
    return np.broadcast_to(arr(0.0 if vr is None else vr), thr.shape).copy()


def _li(node: Any, dt: float) -> dict[str, np.ndarray]:
    # Euler for tau dv/dt = v_leak - v + r*S: h = (1 - dt/tau) v + (r dt/tau) S + v_leak dt/tau
    a = dt / _positive("tau", arr(node.tau))
    return {"decay": 1.0 - a, "gain": arr(node.r) * a, "leak": arr(node.v_leak) * a}


def _lif(node: Any, dt: float) -> dict[str, np.ndarray]:
    return {**_li(node, dt), "threshold": arr(node.v_threshold), "v_reset": _reset_value(node)}


def _if(node: Any, dt: float) -> dict[str, np.ndarray]:
    # dv/dt = r*S (no leak): h = v + (r dt) S
    r = arr(node.r)
    return {"decay": np.ones_like(r), "gain": r * dt, "leak": np.zeros_like(r),
            "threshold": arr(node.v_threshold), "v_reset": _reset_value(node)}


def _i(node: Any, dt: float) -> dict[str, np.ndarray]:
    r = arr(node.r)
    return {"decay": np.ones_like(r), "gain": r * dt, "leak": np.zeros_like(r)}


def _cuba_li(node: Any, dt: float) -> dict[str, np.ndarray]:
    # i = (1 - dt/tau_syn) i + (w_in dt/tau_syn) S, then the membrane of LI driven by the NEW i
    ts = _positive("tau_syn", arr(node.tau_syn))
    tm = _positive("tau_mem", arr(node.tau_mem))
    a = dt / tm
    return {"syn_decay": 1.0 - dt / ts, "syn_gain": arr(node.w_in) * dt / ts,
            "decay": 1.0 - a, "gain": arr(node.r) * a, "leak": arr(node.v_leak) * a}


def _cuba_lif(node: Any, dt: float) -> dict[str, np.ndarray]:
    c = _cuba_li(node, dt)
    c.update(threshold=arr(node.v_threshold), v_reset=_reset_value(node))
    return c


@dataclass(frozen=True)
class NodeKind:
    """What one NIR node type is, for every reader of a graph.

    Attributes:
        name: the NIR class name (``type(node).__name__``).
        role: ``"io"``, ``"weight"`` (Affine/Linear/Conv), ``"neuron"``, ``"pool"``,
            ``"reshape"``, ``"scale"``, ``"threshold"``, ``"delay"`` or ``"graph"``.
        layer: the layer kind target profiles list (``"dense"``, ``"conv"``, ``"avgpool"``,
            ``"sumpool"``, ``"flatten"``, ``"scale"``, ``"neuron"``, ``"input"``, ``"output"``).
        stateful: carries state across timesteps.
        spiking: its output is spikes in {0, 1}.
        params: array fields (checked finite and broadcastable by the validator).
        state: names of the state variables (``("v",)``, ``("v", "i")``), empty if stateless.
        coefficients: ``(node, dt) -> {name: float64 array}`` of the discrete-time update:
            ``decay``, ``gain``, ``leak`` (membrane: ``h = decay*v + gain*S + leak``),
            ``syn_decay``, ``syn_gain`` (current: ``i = syn_decay*i + syn_gain*S``, then
            ``S := i``), ``threshold``, ``v_reset``; None for nodes without time constants.
        ops: how synaptic operations are counted: ``"fanout"`` (one operation per event and
            nonzero outgoing weight: ACs for binary events, effective MACs otherwise) or
            ``"none"``.
        events: how an event-count tensor passes the node on its way to the next weighted
            node: ``"identity"``, ``"window_sum"`` (pooling), ``"reshape"``, ``"emit"``
            (spiking nodes emit new events), ``"block"`` (it does not pass).
        quantize: how post-training quantization treats it: ``"weights"`` (integer weights,
            bias in the same scale), ``"threshold"`` (threshold co-scaled with the incoming
            weights), ``"none"``.
        simulated: the simulator runs it.
    """

    name: str
    role: str
    layer: str
    stateful: bool = False
    spiking: bool = False
    params: tuple[str, ...] = ()
    state: tuple[str, ...] = ()
    coefficients: Callable[[Any, float], dict[str, np.ndarray]] | None = None
    ops: str = "none"
    events: str = "block"
    quantize: str = "none"
    simulated: bool = True

    @property
    def weighted(self) -> bool:
        return self.role == "weight"

    @property
    def neuron(self) -> bool:
        """A neuron model (stateful, or the stateless ``Threshold``) a chip must implement."""
        return self.role in ("neuron", "threshold")


_SPIKE_PARAMS = ("v_threshold", "v_reset")
_KINDS = (
    NodeKind("Input", "io", "input", events="identity"),
    NodeKind("Output", "io", "output", events="identity"),
    NodeKind("Affine", "weight", "dense", params=("weight", "bias"), ops="fanout", quantize="weights"),
    NodeKind("Linear", "weight", "dense", params=("weight",), ops="fanout", quantize="weights"),
    NodeKind("Conv1d", "weight", "conv", params=("weight", "bias"), ops="fanout", quantize="weights"),
    NodeKind("Conv2d", "weight", "conv", params=("weight", "bias"), ops="fanout", quantize="weights"),
    NodeKind("AvgPool2d", "pool", "avgpool", events="window_sum"),
    NodeKind("SumPool2d", "pool", "sumpool", events="window_sum"),
    NodeKind("Flatten", "reshape", "flatten", events="reshape"),
    NodeKind("Scale", "scale", "scale", params=("scale",), events="identity"),
    NodeKind("Threshold", "threshold", "neuron", spiking=True, params=("threshold",), events="emit"),
    NodeKind("LIF", "neuron", "neuron", stateful=True, spiking=True,
             params=("tau", "r", "v_leak", *_SPIKE_PARAMS), state=("v",), coefficients=_lif,
             events="emit", quantize="threshold"),
    NodeKind("IF", "neuron", "neuron", stateful=True, spiking=True, params=("r", *_SPIKE_PARAMS),
             state=("v",), coefficients=_if, events="emit", quantize="threshold"),
    NodeKind("CubaLIF", "neuron", "neuron", stateful=True, spiking=True,
             params=("tau_mem", "tau_syn", "r", "v_leak", "w_in", *_SPIKE_PARAMS),
             state=("v", "i"), coefficients=_cuba_lif, events="emit", quantize="threshold"),
    NodeKind("LI", "neuron", "neuron", stateful=True, params=("tau", "r", "v_leak"), state=("v",),
             coefficients=_li),
    NodeKind("I", "neuron", "neuron", stateful=True, params=("r",), state=("v",), coefficients=_i),
    NodeKind("CubaLI", "neuron", "neuron", stateful=True,
             params=("tau_mem", "tau_syn", "r", "v_leak", "w_in"), state=("v", "i"),
             coefficients=_cuba_li),
    NodeKind("Delay", "delay", "delay", stateful=True, params=("delay",), simulated=False),
    NodeKind("NIRGraph", "graph", "graph", simulated=False),
)
#: NIR node type name -> :class:`NodeKind`; the one table every reader of a graph uses
NODE_KINDS: dict[str, NodeKind] = {k.name: k for k in _KINDS}


def node_kind(node: Any) -> NodeKind:
    """The :class:`NodeKind` of a NIR node (or of a type name); unknown types raise NirError."""
    name = node if isinstance(node, str) else type(node).__name__
    try:
        return NODE_KINDS[name]
    except KeyError:
        raise NirError(
            f"unknown NIR node type {name!r}; known types: {', '.join(sorted(NODE_KINDS))}"
        ) from None


def kinds_where(**flags: Any) -> tuple[str, ...]:
    """Names of the node kinds whose attributes equal ``flags`` (e.g. ``stateful=True``)."""
    return tuple(k.name for k in _KINDS if all(getattr(k, f) == v for f, v in flags.items()))


def coefficients(node: Any, dt: float) -> dict[str, np.ndarray]:
    """The discrete-time coefficients of a stateful node (see :class:`NodeKind`), float64."""
    kind = node_kind(node)
    if kind.coefficients is None:
        raise NirError(f"NIR node type {kind.name} has no discrete-time coefficients")
    return kind.coefficients(node, dt)


#: NIR node types with state carried across timesteps
STATEFUL_TYPES = frozenset(kinds_where(stateful=True))
#: NIR node types whose output is spikes
SPIKING_TYPES = frozenset(kinds_where(spiking=True))


# --------------------------------------------------------------------------- torch modules


def fire(h: torch.Tensor, threshold: torch.Tensor, surrogate: str = "triangle",
         scale: float = 1.0) -> torch.Tensor:
    """Spikes ``H(h - threshold)`` in {0, 1}; surrogate gradient only when autograd records.

    Without autograd (inference, ONNX tracing) this is a plain comparison, so exported graphs
    contain no custom autograd function.
    """
    if torch.is_grad_enabled() and h.requires_grad:
        return spike(h - threshold, surrogate, scale)
    return (h > threshold).to(h.dtype)


def reset(h: torch.Tensor, z: torch.Tensor, v_reset: torch.Tensor, threshold: torch.Tensor,
          mode: str) -> torch.Tensor:
    """Membrane after reset: ``v_reset`` where spiking ("zero") or ``h - z*threshold``."""
    if mode == "subtract":
        return h - z * threshold
    return h * (1.0 - z) + z * v_reset


def lif_coefficients(tau: Any, r: Any, v_leak: Any, dt: float) -> dict[str, np.ndarray]:
    """``beta``, ``gain``, ``bias`` of the LIF/LI update ``h = beta*v + gain*S + bias`` (float64)."""
    a = dt / arr(tau)
    return {"beta": 1.0 - a, "gain": arr(r) * a, "bias": arr(v_leak) * a}


class _Stateful(nn.Module):
    """Time-major node with per-neuron float buffers (cast with ``.double()`` like weights)."""

    def __init__(self, **params: np.ndarray) -> None:
        super().__init__()
        for k, v in params.items():
            self.register_buffer(k, torch.as_tensor(np.asarray(v, np.float64), dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [T, B, *shape]`` -> ``[T, B, *shape]`` starting from rest."""
        state = self.init_state(x[0])
        out = []
        for t in range(x.shape[0]):
            y, state = self.step(x[t], state)
            out.append(y)
        return torch.stack(out)

    def init_state(self, x0: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (x0 * 0.0,)

    def step(self, x: torch.Tensor, state: tuple[torch.Tensor, ...]):
        raise NotImplementedError


class NirLIF(_Stateful):
    """NIR ``LIF`` (and ``IF`` with ``beta = 1``, ``gain = dt*r``) with per-neuron parameters."""

    def __init__(self, beta, gain, bias, threshold, v_reset, reset_mode: str = "zero",
                 surrogate: str = "triangle", scale: float = 1.0) -> None:
        super().__init__(beta=beta, gain=gain, bias=bias, threshold=threshold, v_reset=v_reset)
        self.reset_mode, self.surrogate, self.scale = reset_mode, surrogate, float(scale)

    def step(self, x, state):
        h = self.beta * state[0] + self.gain * x + self.bias
        z = fire(h, self.threshold, self.surrogate, self.scale)
        return z, (reset(h, z, self.v_reset, self.threshold, self.reset_mode),)

    def extra_repr(self) -> str:
        return f"shape={tuple(self.beta.shape)}, reset={self.reset_mode}"


class NirLI(_Stateful):
    """NIR ``LI`` (and ``I`` with ``beta = 1``): leaky integrator, outputs the membrane."""

    def __init__(self, beta, gain, bias) -> None:
        super().__init__(beta=beta, gain=gain, bias=bias)

    def step(self, x, state):
        v = self.beta * state[0] + self.gain * x + self.bias
        return v, (v,)


class NirCubaLIF(_Stateful):
    """NIR ``CubaLIF`` (``spiking=True``) and ``CubaLI`` (``spiking=False``)."""

    def __init__(self, alpha, syn_gain, beta, mem_gain, bias, threshold=None, v_reset=None,
                 reset_mode: str = "zero", spiking: bool = True, surrogate: str = "triangle",
                 scale: float = 1.0) -> None:
        params = {"alpha": alpha, "syn_gain": syn_gain, "beta": beta, "mem_gain": mem_gain,
                  "bias": bias}
        if spiking:
            params.update(threshold=threshold, v_reset=v_reset)
        super().__init__(**params)
        self.spiking, self.reset_mode = spiking, reset_mode
        self.surrogate, self.scale = surrogate, float(scale)

    def init_state(self, x0):
        return (x0 * 0.0, x0 * 0.0)

    def step(self, x, state):
        v, i = state
        i = self.alpha * i + self.syn_gain * x
        h = self.beta * v + self.mem_gain * i + self.bias
        if not self.spiking:
            return h, (h, i)
        z = fire(h, self.threshold, self.surrogate, self.scale)
        return z, (reset(h, z, self.v_reset, self.threshold, self.reset_mode), i)


def stateful_module(node: Any, dt: float, reset_mode: str = "zero", surrogate: str = "triangle",
                    scale: float = 1.0) -> nn.Module:
    """The generic time-major module for a stateful NIR node (parameters per neuron)."""
    kind = type(node).__name__
    common = {"reset_mode": reset_mode, "surrogate": surrogate, "scale": scale}
    if kind == "LIF":
        c = lif_coefficients(node.tau, node.r, node.v_leak, dt)
        return NirLIF(c["beta"], c["gain"], c["bias"], arr(node.v_threshold), arr(node.v_reset),
                      **common)
    if kind == "IF":
        r = arr(node.r)
        return NirLIF(np.ones_like(r), dt * r, np.zeros_like(r), arr(node.v_threshold),
                      arr(node.v_reset), **common)
    if kind == "LI":
        c = lif_coefficients(node.tau, node.r, node.v_leak, dt)
        return NirLI(c["beta"], c["gain"], c["bias"])
    if kind == "I":
        r = arr(node.r)
        return NirLI(np.ones_like(r), dt * r, np.zeros_like(r))
    if kind in ("CubaLIF", "CubaLI"):
        a_syn = dt / arr(node.tau_syn)
        a_mem = dt / arr(node.tau_mem)
        spiking = kind == "CubaLIF"
        return NirCubaLIF(
            1.0 - a_syn, a_syn * arr(node.w_in), 1.0 - a_mem, a_mem * arr(node.r),
            a_mem * arr(node.v_leak),
            arr(node.v_threshold) if spiking else None, arr(node.v_reset) if spiking else None,
            spiking=spiking, **common,
        )
    raise ValueError(f"no stateful module for NIR node type {kind}")


class Affine(nn.Module):
    """``y = x @ W.T + b`` (``Affine``), ``y = x @ W.T`` (``Linear``), over the last dim."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray | None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.as_tensor(weight, dtype=torch.float64))
        self.bias = None if bias is None else nn.Parameter(torch.as_tensor(bias, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


class Conv(nn.Module):
    """NIR ``Conv1d``/``Conv2d`` on ``[N, C, *spatial]`` (parameters set directly, no init)."""

    def __init__(self, weight, bias, stride, padding, dilation, groups: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.as_tensor(weight, dtype=torch.float64))
        self.bias = nn.Parameter(torch.as_tensor(bias, dtype=torch.float64))
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        self._fn = F.conv2d if self.weight.dim() == 4 else F.conv1d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fn(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                        self.groups)

    def extra_repr(self) -> str:
        return f"weight={tuple(self.weight.shape)}, stride={self.stride}, padding={self.padding}"


class Scale(nn.Module):
    """``y = x * scale`` (elementwise, broadcast over the batch-free shape)."""

    def __init__(self, scale: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class Pool2d(nn.Module):
    """``AvgPool2d`` (window mean) or ``SumPool2d`` (window sum) on ``[N, C, H, W]``."""

    def __init__(self, kernel, stride, padding, mode: str) -> None:
        super().__init__()
        self.kernel, self.stride, self.padding, self.mode = kernel, stride, padding, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        div = 1 if self.mode == "sum" else None
        return F.avg_pool2d(x, self.kernel, self.stride, self.padding, divisor_override=div)

    def extra_repr(self) -> str:
        return f"{self.mode}, kernel={self.kernel}, stride={self.stride}, padding={self.padding}"


class Flatten(nn.Module):
    """NIR ``Flatten`` with batch-free ``start_dim``/``end_dim`` applied to ``[N, ...]``."""

    def __init__(self, start_dim: int, end_dim: int) -> None:
        super().__init__()
        self.start_dim, self.end_dim = int(start_dim), int(end_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nd = x.dim() - 1
        s = self.start_dim % nd + 1
        e = self.end_dim % nd + 1
        return x.flatten(s, e)


class Threshold(nn.Module):
    """NIR ``Threshold``: stateless ``H(x - threshold)``."""

    def __init__(self, threshold: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("threshold", torch.as_tensor(threshold, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fire(x, self.threshold)


def _pair(v: Any) -> tuple[int, int]:
    a = np.asarray(v).reshape(-1)
    if a.size == 1:
        return int(a[0]), int(a[0])
    return int(a[0]), int(a[1])


def _conv_arg(v: Any, n: int):
    if isinstance(v, (str, bytes)):
        return v.decode() if isinstance(v, bytes) else v
    a = np.asarray(v).reshape(-1)
    return tuple(int(x) for x in (a if a.size == n else np.repeat(a[:1], n)))


def stateless_module(node: Any) -> nn.Module:
    """The torch module for a stateless NIR node, acting on a merged batch ``[N, ...]``."""
    kind = type(node).__name__
    if kind == "Affine":
        return Affine(arr(node.weight), arr(node.bias))
    if kind == "Linear":
        return Affine(arr(node.weight), None)
    if kind == "Scale":
        return Scale(arr(node.scale))
    if kind in ("Conv2d", "Conv1d"):
        n = 2 if kind == "Conv2d" else 1
        w = arr(node.weight)
        groups = int(np.asarray(node.groups).reshape(-1)[0])
        return Conv(w, arr(node.bias).reshape(-1), _conv_arg(node.stride, n),
                    _conv_arg(node.padding, n), _conv_arg(node.dilation, n), groups)
    if kind in ("AvgPool2d", "SumPool2d"):
        return Pool2d(_pair(node.kernel_size), _pair(node.stride), _pair(node.padding),
                      "avg" if kind == "AvgPool2d" else "sum")
    if kind == "Flatten":
        return Flatten(int(node.start_dim), int(node.end_dim))
    if kind == "Threshold":
        return Threshold(arr(node.threshold))
    raise ValueError(f"no stateless module for NIR node type {kind}")
