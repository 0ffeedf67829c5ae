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

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from trt_nm.neuron.surrogate import spike

#: NIR node types with state carried across timesteps
STATEFUL_TYPES = frozenset({"LIF", "CubaLIF", "CubaLI", "IF", "LI", "I", "Delay"})
#: NIR node types whose output is spikes
SPIKING_TYPES = frozenset({"LIF", "CubaLIF", "IF", "Threshold"})


def arr(value: Any) -> np.ndarray:
    """A NIR parameter (numpy array, torch tensor, number) as a float64 numpy array."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


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
