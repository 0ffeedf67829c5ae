"""Torch modules that run NIR nodes (used by :class:`trt_nm.nir.importer.NIRNetwork`).

The arithmetic comes from the node table: :func:`stateful_module` builds a neuron from
:func:`trt_nm.nir.nodes.coefficients` (the same float64 coefficients the simulator uses), so
no module restates ``1 - dt/tau``. Stateless modules act on a merged batch
``[N, *batch_free_shape]``; stateful modules take time-major ``[T, B, *shape]`` and return
``[T, B, *shape]``, starting from rest (``v = i = 0``). Parameters are float64 buffers, cast
with the network (``.to(dtype)``) like weights.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from trt_nm.errors import NirError
from trt_nm.neuron.surrogate import spike
from trt_nm.nir.nodes import arr, coefficients, node_kind


def fire(h: torch.Tensor, threshold: torch.Tensor, surrogate: str = "triangle",
         scale: float = 1.0) -> torch.Tensor:
    """Spikes ``H(h - threshold)`` in {0, 1} (shape of ``h``); surrogate gradient only when
    autograd records.

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


class _Stateful(nn.Module):
    """Time-major node with per-neuron float buffers named as in the node table."""

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

    def step(self, x: torch.Tensor, state: tuple[torch.Tensor, ...]
             ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """One timestep: input ``x [B, *shape]`` and state -> ``(output, new state)``."""
        raise NotImplementedError


class NirLIF(_Stateful):
    """NIR ``LIF`` and ``IF``: ``h = decay*v + gain*x + leak``, spike, reset (per neuron)."""

    def __init__(self, decay: np.ndarray, gain: np.ndarray, leak: np.ndarray,
                 threshold: np.ndarray, v_reset: np.ndarray, reset_mode: str = "zero",
                 surrogate: str = "triangle", scale: float = 1.0) -> None:
        super().__init__(decay=decay, gain=gain, leak=leak, threshold=threshold, v_reset=v_reset)
        self.reset_mode, self.surrogate, self.scale = reset_mode, surrogate, float(scale)

    def step(self, x: torch.Tensor, state: tuple[torch.Tensor, ...]
             ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        h = self.decay * state[0] + self.gain * x + self.leak
        z = fire(h, self.threshold, self.surrogate, self.scale)
        return z, (reset(h, z, self.v_reset, self.threshold, self.reset_mode),)

    def extra_repr(self) -> str:
        return f"shape={tuple(self.decay.shape)}, reset={self.reset_mode}"


class NirLI(_Stateful):
    """NIR ``LI`` and ``I``: ``v = decay*v + gain*x + leak``, outputs the membrane."""

    def __init__(self, decay: np.ndarray, gain: np.ndarray, leak: np.ndarray) -> None:
        super().__init__(decay=decay, gain=gain, leak=leak)

    def step(self, x: torch.Tensor, state: tuple[torch.Tensor, ...]
             ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        v = self.decay * state[0] + self.gain * x + self.leak
        return v, (v,)


class NirCubaLIF(_Stateful):
    """NIR ``CubaLIF`` (``spiking=True``) and ``CubaLI`` (``spiking=False``):
    ``i = syn_decay*i + syn_gain*x``, then ``h = decay*v + gain*i + leak``."""

    def __init__(self, syn_decay: np.ndarray, syn_gain: np.ndarray, decay: np.ndarray,
                 gain: np.ndarray, leak: np.ndarray, threshold: np.ndarray | None = None,
                 v_reset: np.ndarray | None = None, reset_mode: str = "zero",
                 spiking: bool = True, surrogate: str = "triangle", scale: float = 1.0) -> None:
        params = {"syn_decay": syn_decay, "syn_gain": syn_gain, "decay": decay, "gain": gain,
                  "leak": leak}
        if spiking:
            params.update(threshold=threshold, v_reset=v_reset)
        super().__init__(**params)
        self.spiking, self.reset_mode = spiking, reset_mode
        self.surrogate, self.scale = surrogate, float(scale)

    def init_state(self, x0: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (x0 * 0.0, x0 * 0.0)

    def step(self, x: torch.Tensor, state: tuple[torch.Tensor, ...]
             ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        v, i = state
        i = self.syn_decay * i + self.syn_gain * x
        h = self.decay * v + self.gain * i + self.leak
        if not self.spiking:
            return h, (h, i)
        z = fire(h, self.threshold, self.surrogate, self.scale)
        return z, (reset(h, z, self.v_reset, self.threshold, self.reset_mode), i)


def stateful_module(node: Any, dt: float, reset_mode: str = "zero", surrogate: str = "triangle",
                    scale: float = 1.0) -> nn.Module:
    """The time-major module of a stateful NIR node, from :func:`~trt_nm.nir.nodes.coefficients`.

    Args:
        node: a NIR LIF, IF, CubaLIF, LI, I or CubaLI node.
        dt: timestep in seconds.
        reset_mode: ``"zero"`` (to ``v_reset``) or ``"subtract"`` (graph metadata).
        surrogate, scale: surrogate gradient used when autograd records.

    Returns:
        A module ``[T, B, *shape] -> [T, B, *shape]`` (spikes, or the membrane for LI/I/CubaLI).
    """
    kind = node_kind(node)
    if not kind.stateful or kind.coefficients is None:
        raise NirError(f"no stateful module for NIR node type {kind.name}")
    c = coefficients(node, dt)
    fire_args = {"reset_mode": reset_mode, "surrogate": surrogate, "scale": scale}
    if "syn_decay" in c:
        return NirCubaLIF(c["syn_decay"], c["syn_gain"], c["decay"], c["gain"], c["leak"],
                          c.get("threshold"), c.get("v_reset"), spiking=kind.spiking, **fire_args)
    if kind.spiking:
        return NirLIF(c["decay"], c["gain"], c["leak"], c["threshold"], c["v_reset"], **fire_args)
    return NirLI(c["decay"], c["gain"], c["leak"])


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

    def __init__(self, weight: np.ndarray, bias: np.ndarray, stride: tuple[int, ...],
                 padding: tuple[int, ...] | str, dilation: tuple[int, ...], groups: int) -> None:
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

    def __init__(self, kernel: tuple[int, int], stride: tuple[int, int],
                 padding: tuple[int, int], mode: str) -> None:
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


def _conv(node: Any) -> nn.Module:
    n = 2 if type(node).__name__ == "Conv2d" else 1
    groups = int(np.asarray(node.groups).reshape(-1)[0])
    return Conv(arr(node.weight), arr(node.bias).reshape(-1), _conv_arg(node.stride, n),
                _conv_arg(node.padding, n), _conv_arg(node.dilation, n), groups)


def _pool(mode: str) -> Callable[[Any], nn.Module]:
    return lambda node: Pool2d(_pair(node.kernel_size), _pair(node.stride), _pair(node.padding), mode)


#: NIR type -> builder of its stateless module (every simulated stateless kind but Input/Output)
STATELESS_BUILDERS: dict[str, Callable[[Any], nn.Module]] = {
    "Affine": lambda node: Affine(arr(node.weight), arr(node.bias)),
    "Linear": lambda node: Affine(arr(node.weight), None),
    "Scale": lambda node: Scale(arr(node.scale)),
    "Conv1d": _conv,
    "Conv2d": _conv,
    "AvgPool2d": _pool("avg"),
    "SumPool2d": _pool("sum"),
    "Flatten": lambda node: Flatten(int(node.start_dim), int(node.end_dim)),
    "Threshold": lambda node: Threshold(arr(node.threshold)),
}


def stateless_module(node: Any) -> nn.Module:
    """The torch module of a stateless NIR node, ``[N, *in_shape] -> [N, *out_shape]``."""
    kind = node_kind(node)
    build = STATELESS_BUILDERS.get(kind.name)
    if build is None or kind.stateful:
        raise NirError(f"no stateless module for NIR node type {kind.name}")
    return build(node)
