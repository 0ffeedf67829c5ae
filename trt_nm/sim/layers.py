"""The engine's compiled stateless nodes (Input/Output, Affine/Linear, Conv1d/2d, pooling,
Flatten, Scale, Threshold) and per-neuron coefficients (:class:`_Coef`).

A compiled node's ``run(x [N, ...], T, ws)`` acts on a merged batch of ``N`` rows (timesteps x
samples, or samples when the value is static); ``events(act)`` carries an event-count tensor
past it on its way to the next weighted node (pooling: window sums, Flatten: reshape, Scale:
unchanged, as the node table's ``NodeKind.events`` says). Which kinds are stateful, spiking or
weighted comes from :data:`trt_nm.nir.nodes.NODE_KINDS`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from trt_nm.nir.graph import declared_input_shape
from trt_nm.nir.nodes import NODE_KINDS, arr
from trt_nm.sim.counting import (
    _F32_EXACT,
    _exact_count,
    affine_fanout64,
    conv_fanout64,
    fanout_vectors,
)
from trt_nm.sim.result import SimulationError
from trt_nm.sim.workspace import _empty, _Workspace


def _arr(value: Any) -> torch.Tensor:
    """A NIR parameter (numpy array, tensor or scalar) as a float64 CPU tensor."""
    return torch.as_tensor(arr(value))


def _ints(value: Any, n: int) -> tuple[int, ...]:
    """int, sequence or numpy array -> tuple of n ints."""
    a = np.asarray(value).reshape(-1).astype(np.int64).tolist()
    if len(a) == 1:
        a = a * n
    return tuple(int(v) for v in a)


class _Coef:
    """A per-neuron coefficient: a python float when uniform (fast, exact), else a tensor."""

    def __init__(self, values: torch.Tensor, dtype: torch.dtype, device: torch.device) -> None:
        flat = values.reshape(-1)
        if flat.numel() == 0:
            raise SimulationError("empty neuron parameter array")
        self.uniform = bool((flat == flat[0]).all())
        # round once from float64 to the compute dtype (keeps 0.5 exactly 0.5)
        self.scalar = float(flat[0].to(dtype)) if self.uniform else None
        self.tensor = values.to(dtype).to(device)

    def is_(self, value: float) -> bool:
        return self.uniform and self.scalar == value

    def shaped(self, like: torch.Tensor) -> torch.Tensor | float:
        """Broadcastable against ``like [B, *shape]``."""
        if self.uniform:
            return self.scalar  # type: ignore[return-value]
        t = self.tensor
        shape = tuple(like.shape[1:])
        if tuple(t.shape) == shape:
            return t
        if t.numel() == math.prod(shape):
            return t.reshape(shape)
        if t.dim() == 1 and len(shape) >= 1 and t.shape[0] == shape[0]:  # per channel
            return t.view(-1, *([1] * (len(shape) - 1)))
        raise SimulationError(
            f"neuron parameters of shape {list(t.shape)} do not fit input of shape {list(shape)}"
        )


class _Node:
    """A compiled NIR node. ``run(x [T*B, ...]) -> y`` for stateless nodes, over T otherwise.

    ``kind``, ``stateful``, ``spiking`` and ``weighted`` are the node table's entry for the NIR
    type (plain attributes: the engine reads them on every chunk).
    """

    def __init__(self, name: str, node: Any) -> None:
        self.name = name
        self.node = node
        entry = NODE_KINDS[type(node).__name__]
        self.kind: str = entry.name
        self.stateful: bool = entry.stateful
        self.spiking: bool = entry.spiking
        self.weighted: bool = entry.weighted

    def run(self, x: torch.Tensor, T: int, ws: _Workspace | None = None) -> torch.Tensor:
        """The node on ``x``; the result may live in ``ws`` (overwritten by the next call)."""
        raise NotImplementedError

    def events(self, act: torch.Tensor) -> torch.Tensor:
        """Propagate an event-count tensor through a stateless, weight-free node."""
        raise NotImplementedError

    def events_from_output(self, out: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """Events after this node when its input ``act`` WAS the event tensor (reuses ``out``)."""
        return out


class _Identity(_Node):
    """Input and Output."""

    def run(self, x: torch.Tensor, T: int, ws: _Workspace | None = None) -> torch.Tensor:
        return x

    def events(self, act: torch.Tensor) -> torch.Tensor:
        return act


class _Weighted(_Node):
    """Shared counting for Affine/Linear/Conv: a cached fan-out map per input shape."""

    weight: torch.Tensor
    mask: torch.Tensor
    _mask64: torch.Tensor

    def _fanout64(self, shape: tuple[int, ...]) -> torch.Tensor:
        raise NotImplementedError

    def fanout(self, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """Nonzero weights leaving each input position of a sample of ``shape``, flattened:
        ``(compute-dtype vector, float64 vector)``, both ``[prod(shape)]``."""
        cache = self.__dict__.setdefault("_fan_cache", {})
        if shape not in cache:
            cache[shape] = fanout_vectors(lambda: self._fanout64(shape), self.weight.dtype, self.weight.device)
        return cache[shape]

    @property
    def nonzero_weights(self) -> int:
        if "_nonzero" not in self.__dict__:
            self._nonzero = int((self.weight != 0).sum())
        return self._nonzero

    def count(self, act: torch.Tensor) -> torch.Tensor:
        """Synaptic operations per sample ``[N]`` (float64) for event counts ``act [N, ...]``."""
        fan, fan64 = self.fanout(tuple(act.shape[1:]))
        return _exact_count(act, fan, fan64)


class _Affine(_Weighted):
    """Affine (``bias=True``) and Linear: ``x @ W.T (+ b)`` over the last dim."""

    def __init__(self, name: str, node: Any, dtype: torch.dtype, device: torch.device, bias: bool) -> None:
        super().__init__(name, node)
        w = _arr(node.weight)
        if w.dim() != 2:
            raise SimulationError(f"node {name!r}: {self.kind} weight must be 2-D, got {list(w.shape)}")
        self.weight = w.to(dtype).to(device)
        self.mask = (w != 0).to(dtype).to(device)
        self.bias = _arr(node.bias).to(dtype).to(device) if bias else None
        self.fan_in = int(w.shape[1])
        self._mask64 = (w != 0).double()

    def run(self, x, T, ws=None):
        if ws is not None and x.dim() == 2 and self.bias is not None:  # what F.linear calls
            out = ws.get("out", (x.shape[0], self.weight.shape[0]), x)
            return torch.addmm(self.bias, x, self.weight.t(), out=out)
        return F.linear(x, self.weight, self.bias)

    def _fanout64(self, shape):
        return affine_fanout64(self._mask64, shape)


class _Conv(_Weighted):
    """Conv1d / Conv2d (``dims`` spatial dimensions)."""

    def __init__(self, name: str, node: Any, dtype: torch.dtype, device: torch.device, dims: int) -> None:
        super().__init__(name, node)
        self.dims = dims
        w = _arr(node.weight)
        if w.dim() != dims + 2:
            raise SimulationError(f"node {name!r}: {self.kind} weight must be {dims + 2}-D")
        self.weight = w.to(dtype).to(device)
        self.mask = (w != 0).to(dtype).to(device)
        b = getattr(node, "bias", None)
        self.bias = None
        if b is not None:
            bt = _arr(b)
            if bt.numel() == 1 and w.shape[0] != 1:
                bt = bt.reshape(1).expand(w.shape[0])
            self.bias = bt.reshape(-1).to(dtype).to(device)
        pad = node.padding
        self.padding = pad if isinstance(pad, str) else _ints(pad, dims)
        self.stride = _ints(node.stride, dims)
        self.dilation = _ints(node.dilation, dims)
        self.groups = int(node.groups)
        self.fan_in = int(w[0].numel())
        self.fn = F.conv2d if dims == 2 else F.conv1d
        self._mask64 = (w != 0).double()

    def run(self, x, T, ws=None):
        return self.fn(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def _fanout64(self, shape):
        return conv_fanout64(self.fn, self._mask64, shape, self.stride, self.padding, self.dilation, self.groups)


class _Pool(_Node):
    """AvgPool2d / SumPool2d; window sums of integer inputs by strided adds."""

    def __init__(self, name: str, node: Any, dtype: torch.dtype, device: torch.device, summed: bool) -> None:
        super().__init__(name, node)
        self.k = _ints(node.kernel_size, 2)
        stride = getattr(node, "stride", None)
        self.stride = self.k if stride is None else _ints(stride, 2)
        pad = getattr(node, "padding", None)
        self.padding = (0, 0) if pad is None else _ints(pad, 2)
        self.area = self.k[0] * self.k[1]
        self.summed = summed
        #: the input holds integers of at most this magnitude (set by Simulator; None: unknown)
        self.input_bound: float | None = None

    def _exact_sums(self, x: torch.Tensor) -> bool:
        """Can the window sums of ``x`` be formed in any order without rounding? True for
        integer-valued inputs (spikes, event counts) whose window sums stay below 2**24."""
        return (x.device.type == "cpu" and self.input_bound is not None
                and self.input_bound * self.area < _F32_EXACT)

    def _window_sums(self, x: torch.Tensor, ws: _Workspace | None = None) -> torch.Tensor:
        """Window sums by adding strided slices: ``kh + kw - 2`` elementwise adds, several times
        faster than torch's CPU pooling kernel; exact (any order) for integer-valued ``x``."""
        (kh, kw), (sh, sw), (ph, pw) = self.k, self.stride, self.padding
        if ph or pw:
            x = F.pad(x, (pw, pw, ph, ph))
        ho, wo = (x.shape[-2] - kh) // sh + 1, (x.shape[-1] - kw) // sw + 1
        if ho < 1 or wo < 1:  # let torch raise its own error about the window size
            return F.avg_pool2d(x, self.k, self.stride, 0, divisor_override=1)
        rows = x[..., 0:sh * (ho - 1) + 1:sh, :]
        if kh > 1:
            rows = torch.add(rows, x[..., 1:1 + sh * (ho - 1) + 1:sh, :], out=_empty(ws, "rows", rows.shape, x))
            for i in range(2, kh):
                rows.add_(x[..., i:i + sh * (ho - 1) + 1:sh, :])
        cols = rows[..., 0:sw * (wo - 1) + 1:sw]
        out = _empty(ws, "out", cols.shape, x)
        if kw > 1:
            torch.add(cols, rows[..., 1:1 + sw * (wo - 1) + 1:sw], out=out)
            for j in range(2, kw):
                out.add_(rows[..., j:j + sw * (wo - 1) + 1:sw])
        else:
            out.copy_(cols)
        return out

    def run(self, x, T, ws=None):
        if self._exact_sums(x):
            sums = self._window_sums(x, ws)
            return sums if self.summed else sums.div_(self.area)  # as torch: sum / count
        if self.summed:
            return F.avg_pool2d(x, self.k, self.stride, self.padding, divisor_override=1)
        return F.avg_pool2d(x, self.k, self.stride, self.padding, count_include_pad=True)

    def events(self, act):
        if act.device.type == "cpu":
            return self._window_sums(act)  # event counts: integers, exact
        return F.avg_pool2d(act, self.k, self.stride, self.padding, count_include_pad=True,
                            divisor_override=1)  # exact integer window sums

    def events_from_output(self, out, act):
        """Event counts when this node's input WAS the event tensor: reuse the pooled output."""
        return out.round() if self.summed else (out * self.area).round()


class _Flatten(_Node):
    """NIR Flatten with batch-free ``start_dim``/``end_dim``."""

    def __init__(self, name: str, node: Any) -> None:
        super().__init__(name, node)
        self.start = int(node.start_dim)
        self.end = int(node.end_dim)
        in_shape = declared_input_shape(node)
        self.in_rank = None if in_shape is None else len(in_shape)

    def _dims(self, x: torch.Tensor) -> tuple[int, int]:
        # NIR shapes are batch-free: start_dim 0 is the first non-batch dim. A graph whose
        # input_type includes the batch dim (rank == x.dim()) uses batch-including dims.
        batch_free = self.in_rank is None or self.in_rank == x.dim() - 1
        shift = 1 if batch_free else 0
        start = self.start + shift if self.start >= 0 else self.start
        end = self.end + shift if self.end >= 0 else self.end
        return start, end

    def run(self, x, T, ws=None):
        return x.flatten(*self._dims(x))

    def events(self, act):
        return act.flatten(*self._dims(act))


class _Scale(_Node):
    """Elementwise ``x * scale``."""

    def __init__(self, name: str, node: Any, dtype: torch.dtype, device: torch.device) -> None:
        super().__init__(name, node)
        self.scale = _Coef(_arr(node.scale), dtype, device)

    def run(self, x, T, ws=None):
        return x * self.scale.shaped(x)

    def events(self, act):
        return act

    def events_from_output(self, out, act):
        return act  # a Scale changes values, not events


class _Threshold(_Node):
    """Stateless ``H(x - threshold)``."""

    def __init__(self, name: str, node: Any, dtype: torch.dtype, device: torch.device) -> None:
        super().__init__(name, node)
        self.thr = _Coef(_arr(node.threshold), dtype, device)

    def run(self, x, T, ws=None):
        return (x > self.thr.shaped(x)).to(x.dtype)
