"""A backend-independent interpreter of ``nir.NIRGraph`` in batched torch, with spike counting.

``simulate(graph, x)`` runs a NIR graph on time-major input ``x [T, B, ...]`` and returns a
:class:`SimResult`: per-timestep logits, cumulative-mean logits, spike counts per spiking layer
per timestep per sample, and synaptic operations per weighted layer per timestep per sample.

Execution: the graph must be a DAG (no recurrent edges). The input is cut into chunks of
consecutive timesteps x a piece of the batch (sized so a neuron's per-step state and the largest
intermediate of a chunk stay within cache budgets, ``Simulator(state_bytes=..., chunk_bytes=...)``;
see :meth:`Simulator.plan_chunks`); per chunk, nodes run in
topological order: stateless nodes (Affine, Linear, Conv, pooling, Flatten, Scale, Threshold) run
once on the merged ``[Tc*B, ...]`` batch; stateful nodes (LIF, IF, LI, I, CubaLIF, CubaLI) loop
over the chunk's steps, carrying their state to the next chunk. The result is bit-identical to
running the whole sequence as one chunk. A node with several incoming edges receives the SUM of
its inputs.

Discrete-time semantics (forward Euler with step ``dt``, taken from ``graph.metadata["dt"]``
unless ``dt`` is given). For ``LIF(tau, r, v_leak, v_threshold, v_reset)``::

    h = (1 - dt/tau) * v + (dt/tau) * v_leak + (r*dt/tau) * I    # integrate
    s = H(h - v_threshold)                                       # spike if h > v_threshold
    v = h * (1 - s) + v_reset * s                                # reset "zero" (NIR's reset)
    v = h - s * v_threshold                                      # only when metadata reset == "subtract"

trt_nm writes ``tau = dt/(1-beta)``, ``r = tau/dt``, ``v_leak = v_reset = 0``, so this is
exactly the canonical ``h = beta*v + I`` of :func:`trt_nm.neuron.lif.lif_step`. Per-neuron
coefficients are computed in float64 and rounded to the compute dtype once, so beta = 0.5 stays
exactly 0.5 even when ``tau`` was stored as float32.

Counting rule (NeuroBench names): every spike of a neuron costs one accumulate (AC) per
nonzero synapse it reaches (its fan-out), following stateless pooling/reshape nodes to the next
weighted node. Inputs that are not binary events (the dense first layer, or a layer fed by a
non-spiking node) cost one multiply-accumulate (MAC) per nonzero input x nonzero weight
product ("effective MACs"). Counts are exact integers, computed from a per-layer fan-out map:
``fanout[i]`` = number of nonzero weights leaving input position ``i`` (for convolutions it
depends on borders, stride, padding, dilation and groups; it is computed once per layer and
input shape as the gradient of ``sum(conv(x, mask))`` with respect to ``x`` in float64), so a
layer's count per sample is ``events.flatten(1) @ fanout`` -- one matrix-vector product.

Speed: when every timestep carries the same frame (direct coding of static images), the stateless
nodes before the first neuron run once on ``[B, ...]`` and their output is reused for every step;
the results are bit-identical to running them on ``[T*B, ...]``. Pooling of integer-valued inputs
(spikes) adds strided slices (exact in any order); the neuron loop uses three float passes per step;
work buffers persist across chunks and calls (see ``_Workspace``; also
:func:`trt_nm.sim.allocator.retain_freed_memory`). Measurements: ``docs/simulate.md``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from trt_nm.errors import ConfigError, TrtNmError
from trt_nm.nir.nodes import arr, lif_coefficients
from trt_nm.nir.validate import NirError, _find_cycles, meta_str, topological_order
from trt_nm.nir.validate import graph_dt as _graph_dt

#: node type names the simulator runs
SUPPORTED_NODES = (
    "Input", "Output", "Affine", "Linear", "Scale", "Conv1d", "Conv2d", "AvgPool2d",
    "SumPool2d", "Flatten", "Threshold", "LIF", "IF", "LI", "I", "CubaLIF", "CubaLI",
)
#: default budget of one chunk (bytes of its largest node value), see Simulator.plan_chunks
DEFAULT_CHUNK_BYTES = 32 * 2**20
#: default budget of one batch piece's largest per-step value, bytes per torch thread (about one
#: core's L2): a neuron's state and work buffers for one step stay this small, so its loop over
#: the steps runs in cache, while each thread still gets a large share of every elementwise op
DEFAULT_STATE_BYTES = 2 * 2**20
#: fewest merged rows (steps x samples) in a chunk: torch's CPU convolution picks its algorithm
#: by batch size (below 16 rows, e.g. 1x1 kernels single-threaded or a batch of 1, it may take a
#: different kernel with different float rounding), so smaller chunks could change the last bit
MIN_CHUNK_ROWS = 16
#: float32 holds every integer below this exactly
_F32_EXACT = float(2**24)

SPIKING_NODES = ("LIF", "IF", "CubaLIF", "Threshold")
STATEFUL_NODES = ("LIF", "IF", "LI", "I", "CubaLIF", "CubaLI")
WEIGHTED_NODES = ("Affine", "Linear", "Conv1d", "Conv2d")


class SimulationError(TrtNmError):
    """A NIR graph the simulator cannot run (unsupported node, missing dt, bad input)."""


@dataclass
class LayerStats:
    """Static facts about one node, gathered while simulating.

    Attributes:
        name: node name in the graph.
        kind: NIR node type name (``"Conv2d"``, ``"LIF"``, ...).
        neurons: elements of one sample's output (the layer's neurons), batch-free.
        weights: number of weights (weighted nodes), else 0.
        nonzero_weights: number of nonzero weights (connection sparsity = 1 - nonzero/weights).
        dense_macs: MACs per sample per timestep of the equivalent dense (ANN) layer:
            output elements x fan-in, counting every weight.
        op_kind: "AC" when the node's input is binary events, "MAC" when dense, "" otherwise.
    """

    name: str
    kind: str
    neurons: int = 0
    weights: int = 0
    nonzero_weights: int = 0
    dense_macs: int = 0
    op_kind: str = ""


@dataclass
class SimResult:
    """What :func:`simulate` returns. All counts are per sample per timestep.

    Attributes:
        logits: the Output node's value per timestep ``[T, B, C]``.
        cum_logits: mean of the first t outputs ``[T, B, C]`` (the prediction after t steps).
        spikes: spiking node name -> spikes emitted ``[T, B]`` (float64 counts).
        synops: weighted node name -> synaptic operations ``[T, B]`` (ACs or MACs, see
            ``layers[name].op_kind``), float64.
        layers: node name -> :class:`LayerStats`, in execution order.
        spike_trains: spiking node name -> spikes ``[T, B, *shape]`` (only with ``record=True``).
        dt: the time step used (seconds).
        reset: the reset rule used for LIF/IF nodes ("zero" or "subtract").
    """

    logits: torch.Tensor
    cum_logits: torch.Tensor
    spikes: dict[str, torch.Tensor]
    synops: dict[str, torch.Tensor]
    layers: dict[str, LayerStats]
    spike_trains: dict[str, torch.Tensor] = field(default_factory=dict)
    dt: float = 1.0
    reset: str = "zero"

    @property
    def T(self) -> int:
        return int(self.logits.shape[0])

    @property
    def batch_size(self) -> int:
        return int(self.logits.shape[1])

    def step_mask(self, exit_steps: torch.Tensor | None = None) -> torch.Tensor:
        """``[T, B]`` float64 mask of the timesteps each sample ran: ``t < exit_steps[b]``.

        Args:
            exit_steps: 1-based exit step per sample ``[B]``; None means all T steps.
        """
        T, B = self.T, self.batch_size
        if exit_steps is None:
            return torch.ones(T, B, dtype=torch.float64)
        steps = torch.arange(1, T + 1).unsqueeze(1)
        return (steps <= exit_steps.cpu().view(1, B)).double()

    def spike_totals(self, exit_steps: torch.Tensor | None = None) -> dict[str, float]:
        """Spikes per layer summed over samples and the timesteps each sample ran."""
        m = self.step_mask(exit_steps)
        return {k: float((v.cpu() * m).sum()) for k, v in self.spikes.items()}

    def synop_totals(self, exit_steps: torch.Tensor | None = None) -> dict[str, float]:
        """Synaptic operations per weighted layer summed like :meth:`spike_totals`."""
        m = self.step_mask(exit_steps)
        return {k: float((v.cpu() * m).sum()) for k, v in self.synops.items()}

    def spikes_per_timestep(self) -> dict[str, list[float]]:
        """Spikes per layer per timestep, summed over the batch (no early exit)."""
        return {k: v.sum(1).tolist() for k, v in self.spikes.items()}


# --------------------------------------------------------------------------- helpers


def _dtype_of(name: str) -> torch.dtype:
    return {"float32": torch.float32, "float64": torch.float64}[name]


def _arr(value: Any) -> torch.Tensor:
    """A NIR parameter (numpy array, tensor or scalar) as a float64 CPU tensor."""
    return torch.as_tensor(arr(value))


def _ints(value: Any, n: int) -> tuple[int, ...]:
    """int, sequence or numpy array -> tuple of n ints."""
    a = np.asarray(value).reshape(-1).astype(np.int64).tolist()
    if len(a) == 1:
        a = a * n
    return tuple(int(v) for v in a)


def _shape_of(node: Any, key: str) -> tuple[int, ...] | None:
    types = getattr(node, key, None) or {}
    if not isinstance(types, Mapping) or not types:
        return None
    val = next(iter(types.values()))
    if val is None:
        return None
    try:
        return tuple(int(v) for v in list(val))
    except (TypeError, ValueError):
        return None


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


class _Workspace:
    """Tensors one node reuses from one chunk to the next: a fresh large tensor costs a page
    fault per 4 KiB on first touch (glibc hands big blocks back to the OS when freed), which on
    the CPU can cost as much as the arithmetic done in it."""

    def __init__(self) -> None:
        # key -> (flat buffer, shape of the last view, that view)
        self.bufs: dict[str, tuple[torch.Tensor, tuple[int, ...], torch.Tensor]] = {}

    def get(self, key: str, shape: tuple[int, ...] | torch.Size, like: torch.Tensor) -> torch.Tensor:
        """Buffer ``key`` viewed as ``shape`` (contents undefined); it grows when too small, so
        chunks of different sizes share one allocation."""
        shape = tuple(shape)
        entry = self.bufs.get(key)
        if entry is not None and entry[1] == shape and entry[0].dtype == like.dtype and entry[0].device == like.device:
            return entry[2]  # the common case: same shape as last time, same view
        n = math.prod(shape)
        buf = None if entry is None else entry[0]
        if buf is None or buf.numel() < n or buf.dtype != like.dtype or buf.device != like.device:
            buf = torch.empty(n, dtype=like.dtype, device=like.device)
        view = buf[:n].view(shape)
        self.bufs[key] = (buf, shape, view)
        return view

    def swap(self, key_a: str, key_b: str, a: torch.Tensor, b: torch.Tensor) -> None:
        """Record that views ``a`` and ``b`` (of buffers ``key_a``/``key_b``) traded places."""
        bufs = self.bufs
        if a.data_ptr() == bufs[key_b][2].data_ptr():
            bufs[key_a], bufs[key_b] = bufs[key_b], bufs[key_a]


def _empty(ws: _Workspace | None, key: str, shape: tuple[int, ...] | torch.Size, like: torch.Tensor) -> torch.Tensor:
    """A tensor to overwrite: the workspace's buffer ``key`` when given, else a fresh one."""
    if ws is None:
        return torch.empty(shape, dtype=like.dtype, device=like.device)
    return ws.get(key, shape, like)


# --------------------------------------------------------------------------- compiled nodes


class _Node:
    """A compiled NIR node. ``run(x [T*B, ...]) -> y`` for stateless nodes, over T otherwise."""

    kind = ""
    stateful = False
    spiking = False
    weighted = False

    def __init__(self, name: str, node: Any) -> None:
        self.name = name
        self.node = node

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
    def run(self, x: torch.Tensor, T: int, ws: _Workspace | None = None) -> torch.Tensor:
        return x

    def events(self, act: torch.Tensor) -> torch.Tensor:
        return act


def _exact_count(act: torch.Tensor, fan: torch.Tensor, fan64: torch.Tensor) -> torch.Tensor:
    """Per-sample ``sum_i act[n, i] * fan[i]`` as float64 ``[N]``, exact.

    ``act`` holds nonnegative integers (event counts or 0/1 masks) and ``fan`` nonnegative
    integers, so a float32 product is exact while every partial sum stays below 2**24; all
    partial sums are at most the total, so a total below 2**24 proves it. Otherwise the
    product is redone in float64.
    """
    a = act.reshape(act.shape[0], -1)
    out = a @ fan if a.dtype == fan.dtype else a.to(fan.dtype) @ fan
    if out.numel() and float(out.max()) < _F32_EXACT:
        return out.double()
    return a.double() @ fan64


class _Weighted(_Node):
    """Shared counting for Affine/Linear/Conv: a cached fan-out map per input shape."""

    weighted = True
    weight: torch.Tensor
    mask: torch.Tensor

    def _fanout64(self, shape: tuple[int, ...]) -> torch.Tensor:
        raise NotImplementedError

    def fanout(self, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """Nonzero weights leaving each input position of a sample of ``shape``, flattened:
        ``(compute-dtype vector, float64 vector)``, both ``[prod(shape)]``."""
        cache = self.__dict__.setdefault("_fan_cache", {})
        if shape not in cache:
            with torch.inference_mode(False), torch.enable_grad():
                f64 = self._fanout64(shape).detach().reshape(-1)
            f64 = f64.to(self.weight.device)
            cache[shape] = (f64.to(self.weight.dtype), f64)
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

    def __init__(self, name, node, dtype, device, bias: bool) -> None:
        super().__init__(name, node)
        self.kind = "Affine" if bias else "Linear"
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
        fan = self._mask64.sum(0)  # [in]
        if len(shape) == 1:
            return fan
        return fan.expand(*shape[:-1], fan.shape[0]).clone()  # Linear over the last dim


class _Conv(_Weighted):

    def __init__(self, name, node, dtype, device, dims: int) -> None:
        super().__init__(name, node)
        self.kind = f"Conv{dims}d"
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
        # d/dx sum(conv(x, mask)) = how many nonzero weights read each input position
        x = torch.zeros(1, *shape, dtype=torch.float64, requires_grad=True)
        y = self.fn(x, self._mask64.clone(), None, self.stride, self.padding, self.dilation, self.groups)
        (grad,) = torch.autograd.grad(y.sum(), x)
        return grad[0]


class _Pool(_Node):
    def __init__(self, name, node, dtype, device, summed: bool) -> None:
        super().__init__(name, node)
        self.kind = "SumPool2d" if summed else "AvgPool2d"
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
    kind = "Flatten"

    def __init__(self, name, node) -> None:
        super().__init__(name, node)
        self.start = int(node.start_dim)
        self.end = int(node.end_dim)
        in_shape = _shape_of(node, "input_type")
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
    kind = "Scale"

    def __init__(self, name, node, dtype, device) -> None:
        super().__init__(name, node)
        self.scale = _Coef(_arr(node.scale), dtype, device)

    def run(self, x, T, ws=None):
        return x * self.scale.shaped(x)

    def events(self, act):
        return act

    def events_from_output(self, out, act):
        return act  # a Scale changes values, not events


class _Threshold(_Node):
    kind = "Threshold"
    spiking = True

    def __init__(self, name, node, dtype, device) -> None:
        super().__init__(name, node)
        self.thr = _Coef(_arr(node.threshold), dtype, device)

    def run(self, x, T, ws=None):
        return (x > self.thr.shaped(x)).to(x.dtype)


class _Neuron(_Node):
    """Stateful nodes. ``run`` takes the merged ``[T*B, ...]`` input and loops over T."""

    stateful = True

    def __init__(self, name, node, dtype, device, dt: float, reset: str) -> None:
        super().__init__(name, node)
        self.kind = type(node).__name__
        self.dt = dt
        self.reset = reset
        self.dtype, self.device = dtype, device
        k = self.kind
        c = lambda v: _Coef(v, dtype, device)  # noqa: E731
        if k in ("LIF", "LI"):
            if (_arr(node.tau) <= 0).any():
                raise SimulationError(f"node {name!r}: tau must be > 0")
            # the one place the NIR Euler maths lives: nir_nodes.lif_coefficients
            co = {key: _arr(v) for key, v in lif_coefficients(node.tau, node.r, node.v_leak, dt).items()}
            self.decay, self.in_scale, self.leak = c(co["beta"]), c(co["gain"]), c(co["bias"])
        elif k in ("IF", "I"):
            r = _arr(node.r)
            self.decay, self.in_scale, self.leak = c(torch.ones_like(r)), c(r * dt), c(torch.zeros_like(r))
        else:  # CubaLIF / CubaLI
            ts, tm = _arr(node.tau_syn), _arr(node.tau_mem)
            r, v_leak, w_in = _arr(node.r), _arr(node.v_leak), _arr(node.w_in)
            if (ts <= 0).any() or (tm <= 0).any():
                raise SimulationError(f"node {name!r}: time constants must be > 0")
            self.syn_decay, self.syn_in = c(1.0 - dt / ts), c(w_in * dt / ts)
            a = dt / tm
            self.decay, self.in_scale, self.leak = c(1.0 - a), c(r * a), c(v_leak * a)
        self.spiking = k in ("LIF", "IF", "CubaLIF")
        if self.spiking:
            self.thr = c(_arr(node.v_threshold))
            vr = getattr(node, "v_reset", None)
            self.v_reset = c(_arr(0.0 if vr is None else vr).expand_as(_arr(node.v_threshold)).clone())
        # which exact shortcuts the update may take, fixed by the node's coefficients
        self.cuba = k.startswith("Cuba")
        self.unit_scale = self.in_scale.is_(1.0)
        self.unit_decay = self.decay.is_(1.0)
        self.no_leak = self.leak.is_(0.0)
        # decay a power of two: decay*v is exact, so one fused pass x + decay*v (torch uses an
        # FMA there) rounds exactly like the two passes decay*v, then + x
        m = math.frexp(self.decay.scalar)[0] if self.decay.uniform else 0.0
        self.fused_decay = abs(m) == 0.5 and not self.unit_decay
        self.zero_reset = self.spiking and self.v_reset.is_(0.0) and reset != "subtract"
        # a fresh zero-reset LIF without input scaling or leak starts from v = 0, so its first
        # h = decay*0 + x is x itself (up to the sign of a zero): the first step reads x directly
        self.first_step_is_input = self.zero_reset and not self.cuba and self.unit_scale and self.no_leak

    def run(
        self, x: torch.Tensor, T: int, static: bool = False,
        state: tuple[torch.Tensor, torch.Tensor | None] | None = None,
        ws: _Workspace | None = None, reuse_out: bool = False,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor | None]]:
        """``x [T*B, ...]`` (or ``[B, ...]`` repeated at every step when ``static``) ->
        ``(out [T*B, ...], state)``.

        ``state = (v, i_syn)`` (``[B, ...]`` each; ``i_syn`` only for Cuba nodes) is the state
        before the first of these T steps (None: zeros) and is returned after the last one, so
        consecutive chunks of timesteps continue the same trajectory bit for bit. ``ws`` keeps this
        node's work buffers (the two membrane buffers) from one call to the next; with ``reuse_out``
        the output lives there too (only when no result of an earlier chunk still refers to it).
        The update is written with in-place ops into preallocated buffers; every value is rounded
        exactly as in ``h = decay*v + scale*x (+ leak)`` evaluated op by op.
        """
        shape = tuple(x.shape[1:])
        B = x.shape[0] if static else x.shape[0] // T
        xs = None if static else x.reshape(T, B, *shape)
        cuba, unit_scale, unit_decay, no_leak = self.cuba, self.unit_scale, self.unit_decay, self.no_leak
        zero_reset = self.zero_reset
        ws = _Workspace() if ws is None else ws
        shortcut = state is None and self.first_step_is_input
        if state is None:
            v = ws.get("v", (B, *shape), x)
            if not shortcut:
                v.zero_()
            i_syn = torch.zeros_like(v) if cuba else None
        else:
            v, i_syn = state
        out = _empty(ws if reuse_out else None, "out", (T, B, *shape), x)
        decay, scale, leak = self.decay.shaped(v), self.in_scale.shaped(v), self.leak.shaped(v)
        if cuba:
            sdec, sin = self.syn_decay.shaped(v), self.syn_in.shaped(v)
        if self.spiking:
            thr, vr = self.thr.shaped(v), self.v_reset.shaped(v)
            h = ws.get("h", v.shape, x)
            fired = None if zero_reset else torch.empty(v.shape, dtype=torch.bool, device=v.device)
        scaled = None
        if static and not cuba and not unit_scale:
            scaled = scale * x  # the same scaled input at every step
        for t in range(T):
            inp = x if static else xs[t]  # type: ignore[index]
            if shortcut and t == 0:
                spk = out[0]
                torch.gt(inp, thr, out=spk)
                torch.addcmul(inp, inp, spk, value=-1, out=h)  # v = h - h*s with h = x
                v, h = h, v
                continue
            if cuba:
                i_syn = sdec * i_syn + sin * inp
                inp = i_syn
            if scaled is not None:
                inp = scaled
            elif not unit_scale:
                inp = scale * inp
            # h = decay * v + inp (+ leak); decay == 1 multiplies exactly, so it is skipped
            dst = h if self.spiking else out[t]
            if unit_decay:
                torch.add(v, inp, out=dst)
            elif self.fused_decay:
                torch.add(inp, v, alpha=decay, out=dst)  # type: ignore[arg-type]
            else:
                torch.mul(v, decay, out=dst)
                dst.add_(inp)
            if not no_leak:
                dst.add_(leak)
            if not self.spiking:
                v = dst
                continue
            spk = out[t]
            torch.gt(h, thr, out=spk)  # spikes straight into the float output
            if zero_reset:
                # v = h - h*s in one pass: h*s is exactly 0 or h, so this equals the canonical
                # h*(1 - s) (same spikes always; the membrane differs only in the sign of a zero
                # and where h = -inf, which becomes NaN; neither ever spikes again)
                torch.addcmul(h, h, spk, value=-1, out=h)
            elif self.reset == "subtract":
                h.sub_(spk * thr)
            else:
                torch.gt(h, thr, out=fired)
                h = torch.where(fired, vr, h)
            v, h = h, v
        if self.spiking:  # the two membrane buffers swap roles at every step
            ws.swap("v", "h", v, h)
        return out.reshape(T * B, *shape), (v, i_syn)


# --------------------------------------------------------------------------- graph compile


def _compile_node(name: str, node: Any, dtype, device, dt: float | None, reset: str) -> _Node:
    kind = type(node).__name__
    if kind in ("Input", "Output"):
        n = _Identity(name, node)
        n.kind = kind
        return n
    if kind == "Affine":
        return _Affine(name, node, dtype, device, bias=True)
    if kind == "Linear":
        return _Affine(name, node, dtype, device, bias=False)
    if kind == "Conv2d":
        return _Conv(name, node, dtype, device, 2)
    if kind == "Conv1d":
        return _Conv(name, node, dtype, device, 1)
    if kind in ("AvgPool2d", "SumPool2d"):
        return _Pool(name, node, dtype, device, summed=kind == "SumPool2d")
    if kind == "Flatten":
        return _Flatten(name, node)
    if kind == "Scale":
        return _Scale(name, node, dtype, device)
    if kind == "Threshold":
        return _Threshold(name, node, dtype, device)
    if kind in STATEFUL_NODES:
        if dt is None:
            raise SimulationError(
                f"node {name!r} ({kind}) needs a time step: graph metadata has no 'dt'; pass dt explicitly"
            )
        return _Neuron(name, node, dtype, device, dt, reset)
    if kind == "NIRGraph":
        raise SimulationError(f"node {name!r} is a nested NIRGraph; flatten subgraphs before simulating")
    raise SimulationError(
        f"node {name!r} has unsupported type {kind}; supported: {', '.join(SUPPORTED_NODES)}"
    )


def _toposort(nodes: Mapping[str, Any], edges: list[tuple[str, str]]) -> list[str]:
    """Execution order of a feed-forward graph; missing nodes and cycles are SimulationErrors."""
    from types import SimpleNamespace

    for a, b in edges:
        if a not in nodes or b not in nodes:
            missing = a if a not in nodes else b
            raise SimulationError(f"edge ({a!r}, {b!r}) refers to unknown node {missing!r}")
    graph = SimpleNamespace(nodes=nodes, edges=edges)
    order = topological_order(graph)
    if order is None:
        cyc = sorted(n for c in _find_cycles(graph) for n in c)
        raise SimulationError(
            f"graph has recurrent edges (cycle through {', '.join(cyc[:5])}); "
            "only feed-forward graphs are supported"
        )
    return order


def graph_dt(graph: Any, dt: float | None = None) -> float | None:
    """The time step: ``dt`` when given, else ``graph.metadata["dt"]``, else None (one rule for
    every NIR reader: :func:`trt_nm.nir.validate.graph_dt`), as a :class:`SimulationError`."""
    try:
        return _graph_dt(graph, dt)
    except NirError as exc:
        raise SimulationError(str(exc)) from None


class Simulator:
    """A NIR graph compiled once for repeated batched simulation.

    Args:
        graph: a ``nir.NIRGraph`` (feed-forward, one Input and one Output node).
        dt: time step in seconds; default ``graph.metadata["dt"]`` (error when neither exists
            and the graph has stateful nodes).
        device: torch device for the computation (default CPU).
        dtype: "float32" (default) or "float64".
        chunk_bytes: cache budget for chunked execution on the CPU (bytes of the largest node
            value of one chunk, see :meth:`plan_chunks`); None runs the whole input at once.
        state_bytes: budget of one batch piece's largest per-step value (bytes per torch thread:
            the plan multiplies it by ``torch.get_num_threads()``); the automatic plan splits the
            batch into pieces that fit (None: never split). Results are
            bit-identical to unchunked runs for every plan: every chunk keeps at least
            :data:`MIN_CHUNK_ROWS` merged rows (steps x samples).
    """

    def __init__(
        self,
        graph: Any,
        *,
        dt: float | None = None,
        device: str | torch.device | None = None,
        dtype: str = "float32",
        chunk_bytes: int | None = DEFAULT_CHUNK_BYTES,
        state_bytes: int | None = DEFAULT_STATE_BYTES,
    ) -> None:
        for key, val in (("chunk_bytes", chunk_bytes), ("state_bytes", state_bytes)):
            if val is not None and (isinstance(val, bool) or not isinstance(val, int) or val < 1):
                raise ConfigError(f"{key} must be a positive integer or None, got {val!r}")
        self.chunk_bytes = chunk_bytes
        self.state_bytes = state_bytes
        self._local = threading.local()
        nodes = getattr(graph, "nodes", None)
        edges = getattr(graph, "edges", None)
        if not isinstance(nodes, Mapping) or edges is None:
            raise SimulationError("not a NIR graph (no nodes/edges)")
        self.dt = graph_dt(graph, dt)
        reset = meta_str(graph, "reset", "zero")
        if reset not in ("zero", "subtract"):
            raise SimulationError(f"graph metadata reset {reset!r} is not 'zero' or 'subtract'")
        self.reset = reset
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.dtype = _dtype_of(dtype)
        edges = [(str(a), str(b)) for a, b in edges]
        self.order = _toposort(nodes, edges)
        self.preds: dict[str, list[str]] = {n: [] for n in nodes}
        for a, b in edges:
            self.preds[b].append(a)
        self.nodes = {
            n: _compile_node(n, nodes[n], self.dtype, self.device, self.dt, reset) for n in self.order
        }
        ins = [n for n in self.order if self.nodes[n].kind == "Input"]
        outs = [n for n in self.order if self.nodes[n].kind == "Output"]
        if len(ins) != 1 or len(outs) != 1:
            raise SimulationError(
                f"graph must have exactly one Input and one Output node, found {len(ins)} and {len(outs)}"
            )
        self.input_name, self.output_name = ins[0], outs[0]
        self._bound_integers()
        self._consumers = {n: 0 for n in self.order}  # how many nodes read each node's value
        for n in self.order:
            for p in self.preds[n]:
                self._consumers[p] += 1
        # nodes whose output tensor may BE (a view of) the graph's output
        self._aliases_output: set[str] = set()
        todo = [self.output_name]
        while todo:
            n = todo.pop()
            if n not in self._aliases_output:
                self._aliases_output.add(n)
                if self.nodes[n].kind in ("Output", "Input", "Flatten") and len(self.preds[n]) == 1:
                    todo.extend(self.preds[n])
        self.input_shape = _shape_of(nodes[self.input_name], "input_type")
        for n in self.order:
            if n != self.input_name and not self.preds[n]:
                raise SimulationError(f"node {n!r} has no incoming edge")

    def clear_buffers(self) -> None:
        """Free the work buffers kept between calls (this thread's; at most about one chunk's
        values per node, see :meth:`plan_chunks`). The next call allocates them again."""
        self._local.__dict__.pop("workspaces", None)

    def _bound_integers(self) -> None:
        """Tell pooling nodes when their input is integer-valued (spikes, sums of spikes) and
        how large it can get, so they may add window elements in any order (see ``_Pool``)."""
        bound: dict[str, float | None] = {}
        for n in self.order:
            node, ps = self.nodes[n], self.preds[n]
            ins = [bound.get(p) for p in ps]
            b_in = sum(ins) if ps and all(b is not None for b in ins) else None  # type: ignore[arg-type]
            if isinstance(node, _Pool):
                node.input_bound = b_in
            if node.spiking:
                bound[n] = 1.0
            elif b_in is None or node.kind in ("Input",):
                bound[n] = None
            elif node.kind in ("Flatten", "Output"):
                bound[n] = b_in
            elif node.kind == "SumPool2d":
                bound[n] = b_in * node.area  # type: ignore[attr-defined]
            elif node.kind == "Scale" and node.scale.uniform and float(node.scale.scalar).is_integer():
                bound[n] = b_in * abs(node.scale.scalar)
            else:
                bound[n] = None

    @property
    def spiking_layers(self) -> list[str]:
        return [n for n in self.order if self.nodes[n].spiking]

    @property
    def weighted_layers(self) -> list[str]:
        return [n for n in self.order if self.nodes[n].weighted]

    def _peak_elements(self, sample_shape: tuple[int, ...]) -> int:
        """Largest value of any node for ONE sample at ONE timestep (elements), for an input of
        ``sample_shape``; found once per input shape by simulating one zero sample for one step."""
        cache = self.__dict__.setdefault("_peak_cache", {})
        if sample_shape not in cache:
            probe = torch.zeros(1, 1, *sample_shape, dtype=self.dtype, device=self.device)
            sizes: list[int] = []
            self._run_chunk(probe, False, {}, {}, count_ops=False, record=False, sizes=sizes)
            cache[sample_shape] = max(sizes)
        return cache[sample_shape]

    def plan_chunks(
        self, x: torch.Tensor, chunk_steps: int | None = None, chunk_batch: int | None = None
    ) -> tuple[int, int]:
        """``(steps, samples)`` per chunk for input ``x [T, B, ...]``.

        Explicit ``chunk_steps`` / ``chunk_batch`` win (chunks are still widened to at least
        :data:`MIN_CHUNK_ROWS` rows). Otherwise, on the CPU, with ``row`` = the largest
        per-sample, per-step node value (bytes, measured once per input shape): the batch is
        split into equal pieces of at most ``state_bytes x threads / row`` samples (so the neuron
        loops work in cache; at least ``16 / T`` samples), and each piece runs as many steps per chunk
        as keep the chunk's largest value within ``chunk_bytes`` (at least one step). On other
        devices, and with ``chunk_bytes=None``, the whole input is one chunk.
        """
        key = (tuple(x.shape), chunk_steps, chunk_batch, self.chunk_bytes, self.state_bytes,
               torch.get_num_threads())
        plans = self.__dict__.setdefault("_plan_cache", {})
        if key not in plans:
            plans[key] = self._plan(x, chunk_steps, chunk_batch)
        return plans[key]

    def _plan(self, x: torch.Tensor, chunk_steps: int | None, chunk_batch: int | None) -> tuple[int, int]:
        T, B = int(x.shape[0]), int(x.shape[1])
        for name, val in (("chunk_steps", chunk_steps), ("chunk_batch", chunk_batch)):
            if val is not None and (isinstance(val, bool) or not isinstance(val, int) or val < 1):
                raise ConfigError(f"{name} must be a positive integer, got {val!r}")
        if self.chunk_bytes is None or self.device.type != "cpu" or (
            chunk_steps is not None and chunk_batch is not None
        ):
            return min(chunk_steps or T, T), min(chunk_batch or B, B)
        row = self._peak_elements(tuple(x.shape[2:])) * torch.finfo(self.dtype).bits // 8
        if chunk_batch is None:
            budget = None if self.state_bytes is None else self.state_bytes * torch.get_num_threads()
            if budget is None or B * row <= budget:
                chunk_batch = B
            else:
                per = max(1, budget // row, math.ceil(MIN_CHUNK_ROWS / T))
                chunk_batch = math.ceil(B / math.ceil(B / per))  # equal pieces
        if chunk_steps is None:
            chunk_steps = max(1, self.chunk_bytes // (min(chunk_batch, B) * row))
        return min(chunk_steps, T), min(chunk_batch, B)

    @torch.no_grad()
    def __call__(
        self,
        x: torch.Tensor,
        *,
        count_ops: bool = True,
        record: bool = False,
        chunk_steps: int | None = None,
        chunk_batch: int | None = None,
    ) -> SimResult:
        """Simulate ``x [T, B, *input_shape]``; see :class:`SimResult`.

        Args:
            x: time-major input (any float/bool/int dtype; converted to the compute dtype).
            count_ops: count synaptic operations (costs one extra pass per weighted node).
            record: keep every spiking node's full spike train in ``spike_trains``.
            chunk_steps: timesteps per chunk (default: automatic, see :meth:`plan_chunks`).
            chunk_batch: samples per chunk (default: automatic).

        The result does not depend on how the timesteps are chunked (bit-identical); with
        ``chunk_batch`` below 16 the convolution algorithm, hence the last bit, may change.
        """
        if not isinstance(x, torch.Tensor) or x.dim() < 2:
            raise ConfigError("simulate expects a time-major tensor [T, B, ...]")
        T, B = int(x.shape[0]), int(x.shape[1])
        if T < 1 or B < 1:
            raise ConfigError(f"empty input of shape {list(x.shape)}")
        if self.input_shape is not None and tuple(x.shape[2:]) != self.input_shape:
            if math.prod(x.shape[2:]) == math.prod(self.input_shape):
                x = x.reshape(T, B, *self.input_shape)
            else:
                raise ConfigError(
                    f"input shape {list(x.shape[2:])} does not match the graph's input "
                    f"{list(self.input_shape)} (expected [T, B, {', '.join(map(str, self.input_shape))}])"
                )
        xd = x.to(self.device, self.dtype)
        # direct coding (the same frame at every step): stateless nodes before the first neuron
        # run once on [B, ...]; a "static" value stands for itself repeated at every timestep
        static_in = _frames_identical(xd)
        ct, cb = self.plan_chunks(xd, chunk_steps, chunk_batch)
        batch_parts = []
        # per node: buffers reused by every chunk and, on the CPU, every call (per thread: a
        # Simulator may be shared by threads; results never alias them). CUDA's caching
        # allocator already reuses memory, so there they last one call only.
        if self.device.type == "cpu":
            workspaces: dict[str, _Workspace] = self._local.__dict__.setdefault("workspaces", {})
        else:
            workspaces = {}
        for b0, b1 in _batch_pieces(B, cb, T):
            xb = xd[:, b0:b1] if b1 - b0 < B else xd
            state: dict[str, Any] = {}  # neuron states carried from one chunk of steps to the next
            cache: dict[str, Any] = {}  # static (time-invariant) node results, computed once
            time_parts = [
                self._run_chunk(xb[t0:t1], static_in, state, cache, count_ops=count_ops, record=record,
                                workspaces=workspaces)
                for t0, t1 in _time_chunks(T, ct, int(xb.shape[1]))
            ]
            batch_parts.append(_join(time_parts, 0))
        logits, spikes, synops, trains, layers = _join(batch_parts, 1)
        steps = torch.arange(1, T + 1, device=logits.device, dtype=logits.dtype)
        cum = logits.cumsum(0) / steps.view(-1, *([1] * (logits.dim() - 1)))
        return SimResult(
            logits=logits,
            cum_logits=cum,
            spikes=spikes,
            synops=synops,
            layers=layers,
            spike_trains=trains,
            dt=float(self.dt) if self.dt is not None else float("nan"),
            reset=self.reset,
        )

    def _run_chunk(
        self,
        xd: torch.Tensor,
        static_in: bool,
        state: dict[str, Any],
        cache: dict[str, Any],
        *,
        count_ops: bool,
        record: bool,
        sizes: list[int] | None = None,
        workspaces: dict[str, _Workspace] | None = None,
    ) -> tuple:
        """Run the whole graph on the consecutive timesteps ``xd [Tc, B, ...]``.

        ``state`` holds the neuron states before these steps and is updated in place; ``cache``
        keeps the results of static nodes (time-invariant values, see ``static_in``) so later
        chunks reuse them. ``sizes`` (when given) collects each node's per-sample, per-step
        element count. Returns ``(logits [Tc, B, C], spikes, synops, trains, layers)``.
        """
        T, B = int(xd.shape[0]), int(xd.shape[1])
        values: dict[str, torch.Tensor] = {}
        acts: dict[str, torch.Tensor | None] = {}
        static: dict[str, bool] = {}
        remaining = dict(self._consumers)

        def per_step(t: torch.Tensor, is_static: bool) -> torch.Tensor:
            """``[T*B, ...]`` of a value (a static ``[B, ...]`` value is repeated T times)."""
            if not is_static:
                return t
            return t.unsqueeze(0).expand(T, *t.shape).reshape(T * t.shape[0], *t.shape[1:])

        def plus(a: torch.Tensor, a_st: bool, b: torch.Tensor, b_st: bool) -> torch.Tensor:
            if a_st == b_st:
                return a + b
            if a_st:  # broadcasting adds the same values as a materialised repeat
                return (a.unsqueeze(0) + b.reshape(T, B, *b.shape[1:])).reshape(b.shape)
            return (a.reshape(T, B, *a.shape[1:]) + b.unsqueeze(0)).reshape(a.shape)

        def per_sample_step(c: torch.Tensor, is_static: bool) -> torch.Tensor:
            """Per-sample counts ``[N]`` -> float64 ``[T, B]`` on the CPU."""
            c = c.double().cpu()
            return c.expand(T, B).clone() if is_static else c.reshape(T, B)

        spikes: dict[str, torch.Tensor] = {}
        synops: dict[str, torch.Tensor] = {}
        trains: dict[str, torch.Tensor] = {}
        layers: dict[str, LayerStats] = {}
        for name in self.order:
            node = self.nodes[name]
            ps = self.preds[name]
            st = static_in if name == self.input_name else all(static[p] for p in ps)
            hit = cache.get(name) if st and not node.stateful else None
            if hit is not None:  # a static node: the same result in every chunk
                out, out_act, stats, ops, spk = hit
                if ops is not None:
                    synops[name] = per_sample_step(ops, True)
            else:
                out, out_act, stats, ops, spk, st = self._run_node(
                    name, node, xd, st, values, acts, static, state, count_ops, plus, record,
                    None if workspaces is None else workspaces.setdefault(name, _Workspace()),
                )
                if st and not node.stateful:
                    cache[name] = (out, out_act, stats, ops, spk)
                if ops is not None:
                    synops[name] = per_sample_step(ops, st)
            for p in ps:  # free intermediate values as soon as nobody needs them
                remaining[p] -= 1
                if remaining[p] == 0 and p != self.output_name:
                    values.pop(p, None)
                    acts.pop(p, None)
            if spk is not None:
                spikes[name] = per_sample_step(spk, st)
                if record:
                    trains[name] = per_step(out, st).reshape(T, B, *out.shape[1:]).cpu()
            if sizes is not None:
                sizes.append(math.prod(out.shape[1:]))
            values[name] = out
            acts[name] = out_act
            static[name] = st
            layers[name] = stats
        final = per_step(values[self.output_name], static[self.output_name])
        logits = final.reshape(T, B, *final.shape[1:])
        return logits, spikes, synops, trains, layers

    def _run_node(self, name, node, xd, st, values, acts, static, state, count_ops, plus, record,
                  ws) -> tuple:
        """One node on one chunk: ``(out, out_act, stats, ops, spikes, static)``; ``ops`` and
        ``spikes`` are per-row counts (rows = samples x steps, or samples when static)."""
        T, B = int(xd.shape[0]), int(xd.shape[1])
        if name == self.input_name:
            inp = xd[0] if st else xd.reshape(T * B, *xd.shape[2:])
            act: torch.Tensor | None = None
            if count_ops and bool(((inp == 0) | (inp == 1)).all()):
                act = inp  # binary event input: the first layer costs ACs
        else:
            ps = self.preds[name]
            inp, st = values[ps[0]], static[ps[0]]
            act = acts.get(ps[0])
            act_is_inp = act is inp
            for p in ps[1:]:
                a2 = acts.get(p)
                act_is_inp = act_is_inp and a2 is values[p]
                act = None if act is None or a2 is None else plus(act, st, a2, static[p])
                inp = plus(inp, st, values[p], static[p])
                st = st and static[p]
            if act_is_inp:
                act = inp  # the summed events are the summed values
        stats = LayerStats(name, node.kind)
        out_act = None
        ops = None
        # a stateless node's result may live in its workspace (overwritten by the next chunk)
        # unless it outlives the chunk: cached static values, recorded spikes, the graph output
        keep_out = st or name in self._aliases_output or (record and node.spiking)
        node_ws = None if keep_out else ws
        if node.weighted:
            out = node.run(inp, T, node_ws)
            stats.weights = node.weight.numel()
            stats.nonzero_weights = node.nonzero_weights
            stats.dense_macs = math.prod(out.shape[1:]) * node.fan_in
            if count_ops:
                if act is not None:
                    stats.op_kind = "AC"
                    ops = node.count(act)
                else:
                    stats.op_kind = "MAC"
                    ops = node.count(inp != 0)
        elif node.stateful:
            # a neuron's output buffer is reused by the next chunk unless it leaves the chunk
            # (recorded spike trains, or the graph's output)
            reuse = not record and name not in self._aliases_output
            out, state[name] = node.run(inp, T, static=st, state=state.get(name), ws=ws,
                                        reuse_out=reuse)
            st = False
        else:
            out = node.run(inp, T, node_ws)
            if act is not None and count_ops and not node.spiking:
                out_act = node.events_from_output(out, act) if act is inp else node.events(act)
        spk = None
        stats.neurons = math.prod(out.shape[1:])
        if node.spiking:
            acc = torch.float64 if stats.neurons >= _F32_EXACT else out.dtype  # exact integer sums
            spk = out.reshape(out.shape[0], -1).sum(1, dtype=acc)
            out_act = out
        return out, out_act, stats, ops, spk, st


def _frames_identical(x: torch.Tensor) -> bool:
    """Whether every timestep of ``x [T, ...]`` holds the same bits as the first (T > 1).

    Bitwise, so identical bits (NaN payloads included) count as equal and -0.0 vs +0.0 does not:
    exactly the inputs whose results cannot differ. On the CPU the frames are compared as 64-bit
    words with numpy (several times faster than ``torch.equal``), after a short prefix check
    that rejects changing inputs at once.
    """
    T = int(x.shape[0])
    if T < 2:
        return False
    if x.device.type != "cpu" or not x.is_contiguous() or x.dtype not in (torch.float32, torch.float64):
        return all(torch.equal(x[t], x[0]) for t in range(1, T))
    a = x.reshape(T, -1).numpy()
    word = next(w for w in (8, 4, 2, 1) if (a.shape[1] * a.itemsize) % w == 0)
    words = a.view(np.dtype(f"<u{word}") if word > 1 else np.uint8)
    head = words[:, :16]
    if not (head == head[:1]).all():
        return False
    first = words[0]
    return all(np.array_equal(words[t], first) for t in range(1, T))


def _time_chunks(T: int, steps: int, batch: int) -> list[tuple[int, int]]:
    """``[(t0, t1), ...]`` covering ``range(T)`` in pieces of ``steps``; a piece with fewer than
    :data:`MIN_CHUNK_ROWS` rows (``(t1 - t0) * batch``) is merged into its neighbour, so every
    chunk's stateless nodes run on a batch of >= 16 rows (or on the whole input when smaller)."""
    steps = max(steps, min(T, math.ceil(MIN_CHUNK_ROWS / batch)))
    steps = math.ceil(T / math.ceil(T / steps))  # as even as possible: fewer kernel shapes
    bounds = list(range(0, T, steps)) + [T]
    if len(bounds) > 2 and (bounds[-1] - bounds[-2]) * batch < MIN_CHUNK_ROWS:
        del bounds[-2]  # the short tail joins the previous chunk
    return list(zip(bounds[:-1], bounds[1:]))


def _batch_pieces(B: int, samples: int, T: int) -> list[tuple[int, int]]:
    """``[(b0, b1), ...]`` covering ``range(B)`` in pieces of ``samples``; a last piece with
    fewer than :data:`MIN_CHUNK_ROWS` rows (``(b1 - b0) * T``) joins the previous one."""
    bounds = list(range(0, B, samples)) + [B]
    if len(bounds) > 2 and (bounds[-1] - bounds[-2]) * T < MIN_CHUNK_ROWS:
        del bounds[-2]
    return list(zip(bounds[:-1], bounds[1:]))


def _join(parts: list[tuple], dim: int) -> tuple:
    """Concatenate chunk results ``(logits, spikes, synops, trains, layers)`` along ``dim``
    (0: consecutive timesteps, 1: consecutive samples); ``layers`` come from the first part."""
    if len(parts) == 1:
        return parts[0]

    def cat(i: int) -> dict[str, torch.Tensor]:
        return {k: torch.cat([p[i][k] for p in parts], dim) for k in parts[0][i]}

    return torch.cat([p[0] for p in parts], dim), cat(1), cat(2), cat(3), parts[0][4]


def concat_results(results: list[SimResult]) -> SimResult:
    """Join results of consecutive batches along the batch dimension (same graph, same T)."""
    if not results:
        raise ConfigError("no simulation results to join")
    first = results[0]
    if any(r.T != first.T for r in results):
        raise ConfigError("cannot join simulation results with different T")

    def cat(key: str) -> dict[str, torch.Tensor]:
        return {k: torch.cat([getattr(r, key)[k] for r in results], 1) for k in getattr(first, key)}

    return SimResult(
        logits=torch.cat([r.logits for r in results], 1),
        cum_logits=torch.cat([r.cum_logits for r in results], 1),
        spikes=cat("spikes"),
        synops=cat("synops"),
        layers=first.layers,
        spike_trains=cat("spike_trains"),
        dt=first.dt,
        reset=first.reset,
    )


def simulate(
    graph: Any,
    x: torch.Tensor,
    *,
    dt: float | None = None,
    device: str | torch.device | None = None,
    count_ops: bool = True,
    record: bool = False,
) -> SimResult:
    """Run a NIR graph on time-major input ``x [T, B, ...]`` and count spikes and operations.

    Args:
        graph: a ``nir.NIRGraph`` (see the module docstring for the supported nodes).
        x: input ``[T, B, *input_shape]``, one frame per timestep (static images repeated T times).
        dt: time step in seconds; default ``graph.metadata["dt"]``.
        device: where to compute (default CPU).
        count_ops: count synaptic operations per weighted layer.
        record: keep full spike trains per spiking layer.

    Returns:
        :class:`SimResult` with ``logits [T, B, C]``, ``cum_logits [T, B, C]``, spike counts and
        synaptic operations ``[T, B]`` per layer.
    """
    return Simulator(graph, dt=dt, device=device)(x, count_ops=count_ops, record=record)


__all__ = ["simulate", "concat_results", "Simulator", "SimResult", "LayerStats", "SimulationError", "graph_dt"]
