"""The fast NIR engine: a ``nir.NIRGraph`` compiled once, run in batched torch, with spike and
synaptic-operation counting. Its results equal the reference interpreter's
(:func:`trt_nm.sim.reference.simulate_reference`) bit for bit (``tests/test_sim_reference.py``).

``simulate(graph, x)`` runs a NIR graph on time-major input ``x [T, B, ...]`` and returns a
:class:`~trt_nm.sim.result.SimResult`: per-timestep logits, cumulative-mean logits, spike counts
per spiking layer per timestep per sample, and synaptic operations per weighted layer per
timestep per sample.

Execution: the graph must be a DAG (no recurrent edges). The input is cut into chunks of
consecutive timesteps x a piece of the batch (sized so a neuron's per-step state and the largest
intermediate of a chunk stay within cache budgets, ``Simulator(state_bytes=..., chunk_bytes=...)``;
see :meth:`Simulator.plan_chunks` and :mod:`trt_nm.sim.planner`); per chunk, nodes run in
topological order: stateless nodes (Affine, Linear, Conv, pooling, Flatten, Scale, Threshold) run
once on the merged ``[Tc*B, ...]`` batch (:mod:`trt_nm.sim.layers`); stateful nodes (LIF, IF,
LI, I, CubaLIF, CubaLI; :mod:`trt_nm.sim.neurons`) loop over the chunk's steps, carrying their
state to the next chunk. The result is bit-identical to running the whole sequence as one chunk.
A node with several incoming edges receives the SUM of its inputs (in edge order).

Discrete-time semantics (forward Euler with step ``dt``, taken from ``graph.metadata["dt"]``
unless ``dt`` is given), with the coefficients of the node table
(:func:`trt_nm.nir.nodes.coefficients`). For ``LIF(tau, r, v_leak, v_threshold, v_reset)``::

    h = (1 - dt/tau) * v + (r*dt/tau) * I + (dt/tau) * v_leak     # integrate
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
layer's count per sample is ``events.flatten(1) @ fanout`` -- one matrix-vector product
(:mod:`trt_nm.sim.counting`).

Speed: when every timestep carries the same frame (direct coding of static images,
:mod:`trt_nm.sim.frames`), the stateless nodes before the first neuron run once on ``[B, ...]``
and their output is reused for every step; the results are bit-identical to running them on
``[T*B, ...]``. Pooling of integer-valued inputs (spikes; :mod:`trt_nm.sim.bounds` proves which)
adds strided slices (exact in any order); the neuron loop uses three float passes per step;
work buffers persist across chunks and calls (:mod:`trt_nm.sim.workspace`; also
:func:`trt_nm.sim.allocator.retain_freed_memory`). Measurements: ``docs/simulate.md``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from typing import Any

import torch

from trt_nm.errors import ConfigError
from trt_nm.limits import check_T
from trt_nm.metrics.accuracy import cumulative_mean
from trt_nm.nir.graph import (
    declared_input_shape,
    graph_dt,
    graph_reset,
    predecessors,
    require_order,
)
from trt_nm.nir.nodes import NODE_KINDS, kinds_where
from trt_nm.sim.bounds import integer_bounds
from trt_nm.sim.counting import _F32_EXACT
from trt_nm.sim.frames import _frames_identical
from trt_nm.sim.layers import (
    _Affine,
    _Conv,
    _Flatten,
    _Identity,
    _Node,
    _Pool,
    _Scale,
    _Threshold,
)
from trt_nm.sim.neurons import _Neuron
from trt_nm.sim.planner import (
    DEFAULT_CHUNK_BYTES,
    DEFAULT_STATE_BYTES,
    MIN_CHUNK_ROWS,
    _batch_pieces,
    _join,
    _time_chunks,
    check_positive,
    plan,
)
from trt_nm.sim.result import ExitRun, LayerStats, SimResult, SimulationError, concat_results
from trt_nm.sim.workspace import _Workspace

#: NIR node types the engine runs (the node table's ``simulated`` kinds)
_SUPPORTED = kinds_where(simulated=True)


def _dtype_of(name: str) -> torch.dtype:
    return {"float32": torch.float32, "float64": torch.float64}[name]


def _compile_node(name: str, node: Any, dtype: torch.dtype, device: torch.device, dt: float | None,
                  reset: str) -> _Node:
    """The compiled node for NIR ``node`` (dispatch on the node table's role)."""
    kind = NODE_KINDS.get(type(node).__name__)
    if kind is not None and kind.name == "NIRGraph":
        raise SimulationError(f"node {name!r} is a nested NIRGraph; flatten subgraphs before simulating")
    if kind is None or not kind.simulated:
        raise SimulationError(
            f"node {name!r} has unsupported type {type(node).__name__}; supported: {', '.join(_SUPPORTED)}"
        )
    role = kind.role
    if role == "io":
        return _Identity(name, node)
    if role == "weight":
        if kind.layer == "dense":
            return _Affine(name, node, dtype, device, bias=kind.name == "Affine")
        return _Conv(name, node, dtype, device, 2 if kind.name == "Conv2d" else 1)
    if role == "pool":
        return _Pool(name, node, dtype, device, summed=kind.name == "SumPool2d")
    if role == "reshape":
        return _Flatten(name, node)
    if role == "scale":
        return _Scale(name, node, dtype, device)
    if role == "threshold":
        return _Threshold(name, node, dtype, device)
    if dt is None:  # a stateful neuron
        raise SimulationError(
            f"node {name!r} ({kind.name}) needs a time step: graph metadata has no 'dt'; pass dt explicitly"
        )
    return _Neuron(name, node, dtype, device, dt, reset)


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
            :data:`MIN_CHUNK_ROWS` merged rows (steps x samples). (One exception, from MKL:
            an Affine/Linear whose fan-in x piece size is not a multiple of 4 floats sees its
            rows at other 16-byte alignments, which can change the last bit; docs/simulate.md.)
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
        self.reset = reset = graph_reset(graph)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.dtype = _dtype_of(dtype)
        self.order = require_order(graph, who="simulator")
        self.preds: dict[str, list[str]] = predecessors(graph)
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
        self.input_shape = declared_input_shape(nodes[self.input_name])
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
        _, inputs = integer_bounds(self.order, self.preds, self.nodes)
        for n, node in self.nodes.items():
            if isinstance(node, _Pool):
                node.input_bound = inputs[n]

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
        def row_bytes() -> int:
            return self._peak_elements(tuple(x.shape[2:])) * torch.finfo(self.dtype).bits // 8

        return plan(int(x.shape[0]), int(x.shape[1]), row_bytes, chunk_steps=chunk_steps,
                    chunk_batch=chunk_batch, chunk_bytes=self.chunk_bytes, state_bytes=self.state_bytes,
                    on_cpu=self.device.type == "cpu")

    def _prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        """``x [T, B, ...]`` checked against the graph's input shape, in the compute dtype and
        on the simulator's device (one-line ConfigError otherwise)."""
        if not isinstance(x, torch.Tensor) or x.dim() < 2:
            raise ConfigError("simulate expects a time-major tensor [T, B, ...]")
        T, B = int(x.shape[0]), int(x.shape[1])
        if T < 1 or B < 1:
            raise ConfigError(f"empty input of shape {list(x.shape)}")
        check_T(T, where="the input's time dimension")  # the bound every other path applies
        if self.input_shape is not None and tuple(x.shape[2:]) != self.input_shape:
            if math.prod(x.shape[2:]) == math.prod(self.input_shape):
                x = x.reshape(T, B, *self.input_shape)
            else:
                raise ConfigError(
                    f"input shape {list(x.shape[2:])} does not match the graph's input "
                    f"{list(self.input_shape)} (expected [T, B, {', '.join(map(str, self.input_shape))}])"
                )
        return x.to(self.device, self.dtype)

    def _workspaces(self) -> dict[str, _Workspace]:
        """Per node: buffers reused by every chunk and, on the CPU, every call (per thread: a
        Simulator may be shared by threads; results never alias them). CUDA's caching
        allocator already reuses memory, so there they last one call only."""
        if self.device.type == "cpu":
            return self._local.__dict__.setdefault("workspaces", {})
        return {}

    @torch.no_grad()
    def run_exit(self, x: torch.Tensor, rule: Any, *, count_ops: bool = True, chunk_steps: int = 1) -> ExitRun:
        """Simulate ``x [T, B, *input_shape]`` with EXECUTED early exit: step through time,
        drop every sample whose ``rule`` has fired from the batch and go on with the rest.

        Args:
            x: time-major input, as for :meth:`__call__`.
            rule: an :class:`trt_nm.early_exit.ExitRule` (anything with its ``exits_in``).
            count_ops: count synaptic operations (up to each sample's exit step).
            chunk_steps: timesteps per chunk (default 1: the rule is checked after every step;
                chunks are widened while few samples remain, see :mod:`trt_nm.sim.exit_run`).

        Returns:
            :class:`~trt_nm.sim.result.ExitRun`: prediction and 1-based exit step per sample,
            logits / cumulative logits / spikes / synops ``[T, B]`` for the steps each sample
            ran (NaN / 0 after its exit). Predictions and exit steps equal
            ``rule.exit_steps(self(x).cum_logits)`` exactly (``tests/test_early_exit_executed.py``).
        """
        from trt_nm.sim.exit_run import run_exit

        check_positive("chunk_steps", chunk_steps)
        return run_exit(self, self._prepare_input(x), rule, count_ops=count_ops, chunk_steps=chunk_steps)

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
        xd = self._prepare_input(x)
        T, B = int(xd.shape[0]), int(xd.shape[1])
        # direct coding (the same frame at every step): stateless nodes before the first neuron
        # run once on [B, ...]; a "static" value stands for itself repeated at every timestep
        static_in = _frames_identical(xd)
        ct, cb = self.plan_chunks(xd, chunk_steps, chunk_batch)
        batch_parts = []
        workspaces = self._workspaces()
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
        return SimResult(
            logits=logits,
            cum_logits=cumulative_mean(logits),
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

    def _run_node(self, name: str, node: Any, xd: torch.Tensor, st: bool, values: dict, acts: dict,
                  static: dict, state: dict, count_ops: bool, plus: Any, record: bool,
                  ws: _Workspace | None) -> tuple:
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


__all__ = [
    "simulate", "Simulator", "SimResult", "ExitRun", "LayerStats", "SimulationError", "concat_results",
    "DEFAULT_CHUNK_BYTES", "DEFAULT_STATE_BYTES", "MIN_CHUNK_ROWS",
]
