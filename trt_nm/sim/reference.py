"""The reference interpreter: a NIR graph run straight from the node table, one timestep at a time.

:func:`simulate_reference` is the readable ground truth of :mod:`trt_nm.sim.engine`: no chunks,
no work buffers, no fast paths. Nodes run in topological order
(:func:`trt_nm.nir.graph.require_order`), each on the whole batch ``[B, ...]`` of one timestep; a
node with several incoming edges gets the sum of its inputs (in edge order). What a node is
(stateful, spiking, weighted, how it counts operations and passes events) comes from
:data:`trt_nm.nir.nodes.NODE_KINDS`, neuron coefficients from
:func:`trt_nm.nir.nodes.coefficients` (float64, rounded once to the compute dtype). Per step,
with ``S`` the summed input::

    i = syn_decay*i + syn_gain*S;  S = i          # CubaLIF / CubaLI: the current first
    h = decay*v + gain*S + leak                    # evaluated left to right, op by op
    s = (h > threshold)                            # spiking kinds
    v = where(s, v_reset, h)  or  h - s*threshold  # graph metadata reset "zero" / "subtract"

Counting rule: a weighted node costs, per sample and step, one operation per (input event,
nonzero weight it reaches) pair -- ``sum(layer(events, weights = nonzero mask))``, exact
integers, float64 ``[B]`` -- where the events are the binary input (only when ALL of ``x`` is 0/1) or spikes,
carried past pooling as window sums, past Flatten as a reshape and past Scale unchanged (ACs);
without events it costs one per nonzero input x nonzero weight (effective MACs).

Where the engine's rounding differs from this text, the engine is the contract (golden test):

* zero reset: the engine computes ``v = h - h*s`` (one ``addcmul``); it equals ``where(s, 0, h)``
  except for the sign of a zero membrane and ``h = +-inf`` (NaN there): neither ever spikes,
  and ``torch.equal`` treats -0.0 as 0.0, so spikes, logits and counts are the same.
* exact shortcuts: the engine skips ``*1`` and ``+0`` (sign of a zero only), fuses
  ``x + decay*v`` into one FMA when ``decay`` is a power of two (``decay*v`` is exact unless it
  is subnormal), and starts a fresh zero-reset LIF without gain or leak from ``h = x``.
* batch size: stateless nodes run here on ``B`` rows per step, in the engine on merged chunks
  of at least 16 rows (:data:`trt_nm.sim.planner.MIN_CHUNK_ROWS`; direct-coded prefixes on
  ``B`` rows). torch may pick other convolution / matmul kernels below 16 rows, so the two are
  bit-identical for ``B >= 16``.
* row alignment: MKL's sgemm rounds a row differently depending on its address modulo 16 bytes.
  A row ``(t, b)`` of an Affine/Linear input sits ``fan_in * (t*b_piece + b)`` floats into the
  engine's buffer and ``fan_in * b`` into ours: the same alignment when ``fan_in * b_piece`` is a
  multiple of 4 (always for the zoo; not e.g. for fan-in 10 with pieces of 3 samples, where even
  two engine plans differ in the last bit).
* the engine decides "binary input" per chunk; counts differ only when a non-weighted node sits
  between the input and the first weighted node and only part of the input is binary.
* ``nonzero_weights`` counts the weights rounded to the compute dtype, the fan-out mask the
  float64 weights (as the engine does): different only for weights that underflow float32.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from trt_nm.errors import ConfigError, NirError
from trt_nm.metrics.accuracy import cumulative_mean
from trt_nm.nir.graph import (
    declared_input_shape,
    graph_reset,
    predecessors,
    require_dt,
    require_order,
)
from trt_nm.nir.nodes import NodeKind, arr, coefficients, node_kind
from trt_nm.sim.result import LayerStats, SimResult


def _ints(value: Any, n: int) -> tuple[int, ...]:
    a = [int(v) for v in np.asarray(value).reshape(-1)]
    return tuple(a * n if len(a) == 1 else a)


def _fit(p: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """A parameter broadcastable against ``[B, *shape]``: one value, the sample's shape, the
    same number of elements, or one per channel (the first dim)."""
    if bool((p == p.reshape(-1)[0]).all()):
        return p.reshape(-1)[0]
    if p.numel() == math.prod(shape):
        return p.reshape(shape)
    if p.dim() == 1 and shape and p.shape[0] == shape[0]:
        return p.view(-1, *([1] * (len(shape) - 1)))
    raise NirError(f"neuron parameters of shape {list(p.shape)} do not fit input of shape {list(shape)}")


class _Op(NamedTuple):
    """A stateless node on one step ``[B, ...]``: ``run(S)``; ``count(act)`` -> float64 ``[B]``
    operations (weighted nodes); ``events(act)`` -> the events after the node (None: blocked)."""

    run: Callable[[torch.Tensor], torch.Tensor]
    count: Callable[[torch.Tensor], torch.Tensor] | None
    events: Callable[[torch.Tensor], torch.Tensor] | None
    weight: torch.Tensor | None
    fan_in: int


def _stateless(node: Any, kind: NodeKind, t: Callable[[Any], torch.Tensor], dev: torch.device) -> _Op:
    """The :class:`_Op` of a stateless node (``t`` turns a parameter into a compute-dtype tensor)."""
    name, count, events, weight, fan_in = kind.name, None, None, None, 0
    if kind.weighted:
        weight = t(node.weight)
        mask = torch.as_tensor(arr(node.weight) != 0, dtype=torch.float64, device=dev)  # nonzero synapses
        if kind.layer == "dense":
            bias = t(node.bias) if name == "Affine" else None
            fan_in = int(weight.shape[1])
            run = lambda s: F.linear(s, weight, bias)  # noqa: E731
            layer = F.linear
        else:
            n = 2 if name == "Conv2d" else 1
            conv = F.conv2d if n == 2 else F.conv1d
            b = getattr(node, "bias", None)
            bias = None if b is None else t(b).reshape(-1).expand(weight.shape[0])
            pad = node.padding if isinstance(node.padding, str) else _ints(node.padding, n)
            args = (_ints(node.stride, n), pad, _ints(node.dilation, n), int(node.groups))
            fan_in = int(weight[0].numel())
            run = lambda s: conv(s, weight, bias, *args)  # noqa: E731
            layer = lambda a, m: conv(a, m, None, *args)  # noqa: E731

        def count(a: torch.Tensor) -> torch.Tensor:  # sum of events x mask over every output
            # integers: exact in float32 while each output's sum stays below 2**24, else float64
            small = a.numel() == 0 or float(a.max()) * fan_in < 2**24
            ct = torch.float32 if small else torch.float64
            return layer(a.to(ct), mask.to(ct)).flatten(1).sum(1, dtype=torch.float64)
    elif kind.role == "pool":
        k = _ints(node.kernel_size, 2)
        st = k if getattr(node, "stride", None) is None else _ints(node.stride, 2)
        p = (0, 0) if getattr(node, "padding", None) is None else _ints(node.padding, 2)
        div = 1 if name == "SumPool2d" else None
        run = lambda s: F.avg_pool2d(s, k, st, p, count_include_pad=True, divisor_override=div)  # noqa: E731
        events = lambda a: F.avg_pool2d(a, k, st, p, divisor_override=1)  # noqa: E731  window sums
    elif kind.role == "reshape":
        in_shape = declared_input_shape(node)

        def run(s: torch.Tensor) -> torch.Tensor:  # batch-free dims, unless input_type has the batch
            shift = 1 if in_shape is None or len(in_shape) == s.dim() - 1 else 0
            return s.flatten(*(d + shift if d >= 0 else d for d in (int(node.start_dim), int(node.end_dim))))
        events = run
    elif kind.role == "scale":
        scale = t(node.scale)
        run = lambda s: s * _fit(scale, tuple(s.shape[1:]))  # noqa: E731
    elif kind.role == "threshold":
        thr = t(node.threshold)
        run = lambda s: (s > _fit(thr, tuple(s.shape[1:]))).to(s.dtype)  # noqa: E731
    else:  # Input, Output
        run = lambda s: s  # noqa: E731
    if kind.events == "identity":
        events = lambda a: a  # noqa: E731
    return _Op(run, count, events, weight, fan_in)


def _neuron_step(c: dict[str, torch.Tensor], S: torch.Tensor, state: tuple, spiking: bool,
                 subtract: bool) -> tuple[torch.Tensor, tuple]:
    """One Euler step of a stateful node: ``(output, (v, i))``; spikes for spiking kinds, else ``v``."""
    v, i = state
    if "syn_decay" in c:  # the current first, then the membrane driven by the NEW current
        i = c["syn_decay"] * i + c["syn_gain"] * S
        S = i
    h = c["decay"] * v + c["gain"] * S + c["leak"]
    if not spiking:
        return h, (h, i)
    s = (h > c["threshold"]).to(h.dtype)
    v = h - s * c["threshold"] if subtract else torch.where(s.bool(), c["v_reset"], h)
    return s, (v, i)


@torch.no_grad()
def simulate_reference(graph: Any, x: torch.Tensor, *, dt: float | None = None,
                       device: str | torch.device | None = None, dtype: str = "float32",
                       count_ops: bool = True, record: bool = False) -> SimResult:
    """Run a NIR graph on ``x [T, B, *input_shape]`` one timestep at a time (see the module docstring).

    Args:
        graph: a feed-forward ``nir.NIRGraph`` with one Input and one Output node.
        x: time-major input (converted to ``dtype``).
        dt: time step in seconds; default ``graph.metadata["dt"]``.
        device: where to compute (default CPU).
        dtype: "float32" or "float64".
        count_ops: count synaptic operations per weighted node.
        record: keep every spiking node's spike train ``[T, B, *shape]``.

    Returns:
        the same :class:`SimResult` as :func:`trt_nm.sim.simulate` (logits ``[T, B, C]``,
        spikes and synops ``[T, B]`` float64 per layer, ``layers`` in execution order).
    """
    dt = require_dt(graph, dt, who="simulate_reference")
    subtract = graph_reset(graph) == "subtract"
    order, preds = require_order(graph, who="simulate_reference"), predecessors(graph)
    dev = torch.device(device or "cpu")
    cdtype = {"float32": torch.float32, "float64": torch.float64}[dtype]

    def t(v: Any) -> torch.Tensor:
        return torch.as_tensor(arr(v)).to(cdtype).to(dev)

    kinds = {n: node_kind(graph.nodes[n]) for n in order}
    for n, k in kinds.items():
        if not k.simulated:
            raise NirError(f"node {n!r} has unsupported type {k.name}")
    inp = next(n for n in order if kinds[n].name == "Input")
    out_name = next(n for n in order if kinds[n].name == "Output")
    ops = {n: _stateless(graph.nodes[n], k, t, dev) for n, k in kinds.items() if not k.stateful}
    coefs = {n: {key: t(v) for key, v in coefficients(graph.nodes[n], dt).items()}
             for n, k in kinds.items() if k.stateful}
    if x.dim() < 2:
        raise ConfigError("simulate expects a time-major tensor [T, B, ...]")
    T, B = int(x.shape[0]), int(x.shape[1])
    shape = declared_input_shape(graph.nodes[inp])
    x = x.to(dev, cdtype)
    x = x if shape is None else x.reshape(T, B, *shape)
    binary = count_ops and bool(((x == 0) | (x == 1)).all())

    state: dict[str, tuple] = {}
    logits, spikes, synops, trains = [], {}, {}, {}
    layers: dict[str, LayerStats] = {}
    for step in range(T):
        val: dict[str, torch.Tensor] = {}
        ev: dict[str, torch.Tensor | None] = {}  # events (spike / binary-input counts) per node
        for n in order:
            kind = kinds[n]
            if n == inp:
                S, E = x[step], (x[step] if binary else None)
            else:
                S, E = val[preds[n][0]], ev[preds[n][0]]
                for p in preds[n][1:]:
                    S = S + val[p]
                    E = None if E is None or ev[p] is None else E + ev[p]
            stats = LayerStats(n, kind.name)
            if kind.stateful:
                c = {key: _fit(v, tuple(S.shape[1:])) for key, v in coefs[n].items()}
                zero = torch.zeros_like(S)
                out, state[n] = _neuron_step(c, S, state.get(n, (zero, zero)), kind.spiking, subtract)
            else:
                op = ops[n]
                out = op.run(S)
                if kind.ops == "fanout" and count_ops:
                    stats.op_kind = "AC" if E is not None else "MAC"
                    synops.setdefault(n, []).append(op.count(E if E is not None else S != 0))
                if op.weight is not None:
                    stats.weights, stats.dense_macs = op.weight.numel(), math.prod(out.shape[1:]) * op.fan_in
                    stats.nonzero_weights = int((op.weight != 0).sum())
            stats.neurons = math.prod(out.shape[1:])
            layers[n] = stats
            val[n] = out
            if kind.spiking:  # its events are its spikes (NodeKind.events == "emit")
                ev[n] = out
                spikes.setdefault(n, []).append(out.flatten(1).sum(1, dtype=torch.float64))
                if record:
                    trains.setdefault(n, []).append(out)
            else:
                ev[n] = ops[n].events(E) if E is not None and kind.events != "block" else None
        logits.append(val[out_name])

    def stack(d: dict[str, list[torch.Tensor]]) -> dict[str, torch.Tensor]:
        return {k: torch.stack(v).cpu() for k, v in d.items()}

    lg = torch.stack(logits)
    return SimResult(logits=lg, cum_logits=cumulative_mean(lg), spikes=stack(spikes), synops=stack(synops),
                     layers=layers, spike_trains=stack(trains),
                     dt=float(dt) if dt is not None else float("nan"), reset="subtract" if subtract else "zero")


__all__ = ["simulate_reference"]
