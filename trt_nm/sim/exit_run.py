"""Executed early exit: the engine steps through time and drops every sample whose exit rule
has fired from the batch (compaction), so the remaining steps run on fewer rows.

:meth:`trt_nm.sim.Simulator.run_exit` calls :func:`run_exit`. It reuses the engine's chunk
runner (``Simulator._run_chunk``: compiled layers, the in-place neuron loop, strided-add pooling,
work buffers, exact counting), so every fast path stays. How it runs:

1. The batch is cut into groups of samples: as many as keep one step's largest node value
   within the simulator's ``chunk_bytes`` (or, for a direct-coded input whose full-run pieces
   have fewer than 16 samples, the full run's own pieces). The first chunk of each group runs
   the direct-coded input's stateless prefix (the nodes before the first neuron) once; its
   values are then carried per sample, and only those a later node still reads are gathered.
2. Chunk by chunk (``chunk_steps`` steps, default 1; once fewer than :data:`TAIL_ROWS` samples
   remain, as many steps as make about that many rows, within a group's one-step budget) the
   surviving samples advance; after each chunk the rule decides on the chunk's cumulative
   logits (:meth:`ExitRule.exits_in`: the same ``fires`` comparison and first-firing arithmetic
   as the post-hoc :meth:`ExitRule.exit_steps`; the cumulative logits are
   :func:`~trt_nm.metrics.accuracy.cumulative_mean` of the sample's logits so far, exactly as
   ``SimResult.cum_logits``). Spike and operation counts are placed once, at the end.
3. Compaction: the first time samples leave a group, the survivors' neuron states and cached
   values are copied into the group's own tensors; afterwards they are compacted in place (each
   survivor beyond the new end moves into the slot of an exited sample: only
   ``min(exited, survivors)`` rows move, through small temporaries). Each group keeps its two
   membrane buffers per neuron between chunks (and, warm, between calls), so groups in which
   nobody exits cost no copy. When the survivors fit in fewer groups (or a group falls below 16
   samples), the groups are pooled (one copy) and split evenly again.

Cost model: a full run costs ``P + T*S`` per sample (``P``: work done once whatever T, e.g. a
direct-coded prefix; ``S``: one step); executed exit ``P + m*S`` plus per-chunk overhead, with
``m`` the mean exit step (``bench/early_exit_speed.py`` measures both).

Exactness (predictions and exit steps equal the post-hoc evaluation of the same rule on the
same simulator's full run, bit for bit in logits, spikes and counts for the steps run): torch's
CPU kernels choose their algorithm by the number of rows below 16 (docs/simulate.md), so every
chunk keeps at least :data:`~trt_nm.sim.planner.MIN_CHUNK_ROWS` merged rows, as a full run's
chunks do: while few samples remain a chunk covers more steps (``ceil(16 / samples)``; a sample
that exits inside such a chunk has its later steps computed but not counted), and when even the
remaining steps are too few, the chunk is padded with copies of surviving samples whose results
are dropped. An input smaller than 16 rows in all (T x B < 16) runs as one chunk, as in a full
run. (The MKL row-alignment condition of docs/simulate.md applies as for any plan: layers whose
fan-in is not a multiple of 4 floats may see rows at other alignments.)

Counts stop at each sample's exit step; ``ExitRun.row_steps`` says how many (sample, step) rows
were actually computed, padding and steps after an exit inside a chunk included.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from trt_nm.metrics.accuracy import cumulative_mean
from trt_nm.sim.frames import _frames_identical
from trt_nm.sim.planner import MIN_CHUNK_ROWS, _batch_pieces
from trt_nm.sim.result import ExitRun
from trt_nm.sim.workspace import _Workspace


class _Group:
    """Samples advancing together: their original indices, neuron states and static values
    (row ``r`` of every tensor belongs to sample ``samples[r]``)."""

    def __init__(self, samples: torch.Tensor, state: dict[str, Any], cache: dict[str, Any],
                 contiguous: tuple[int, int] | None = None, owned: bool = False,
                 ws: dict[str, Any] | None = None) -> None:
        self.samples = samples  # int64, CPU
        self.state = state
        self.cache = cache
        self.contiguous = contiguous  # (b0, b1) while the rows are the input's samples b0..b1-1
        # the live cached values are this group's own tensors (copies), not views of the input
        # or of another value, so they may be compacted in place
        self.owned = owned
        self.ws = ws if ws is not None else {}  # this group's neuron work buffers (its states)

    @property
    def n(self) -> int:
        return int(self.samples.numel())


def _take_state(state: dict[str, Any], idx: torch.Tensor) -> dict[str, Any]:
    """Neuron states of the rows ``idx`` (new tensors: never a work buffer)."""
    return {k: (v.index_select(0, idx), None if i is None else i.index_select(0, idx)) for k, (v, i) in state.items()}


def _take_cache(cache: dict[str, Any], idx: torch.Tensor, live: set[str] | None = None) -> dict[str, Any]:
    """Cached static node results ``(out, out_act, stats, ops, spikes)`` of the rows ``idx``.

    Only the values of ``live`` nodes (read by a node that is not cached) are gathered; the
    others are never read again (their consumers are cached too) and become a broadcast view of
    one row, so a direct-coded input and the prefix's inner values are not copied at every step
    (their counts ``ops``/``spikes`` are always gathered)."""
    out: dict[str, Any] = {}
    n = int(idx.numel())
    for k, (val, act, stats, ops, spk) in cache.items():
        if live is not None and k not in live:
            nv = val[:1].expand(n, *val.shape[1:])
            out[k] = (nv, None if act is None else nv, stats,
                      None if ops is None else ops.index_select(0, idx.to(ops.device)),
                      None if spk is None else spk.index_select(0, idx.to(spk.device)))
            continue
        nv = val.index_select(0, idx)
        na = nv if act is val else (None if act is None else act.index_select(0, idx))
        out[k] = (nv, na, stats,
                  None if ops is None else ops.index_select(0, idx.to(ops.device)),
                  None if spk is None else spk.index_select(0, idx.to(spk.device)))
    return out


class _StateWorkspace(_Workspace):
    """A neuron's work buffers in executed exit: its two membrane buffers (``v``/``h``, which
    hold the state between chunks) belong to one group of samples (``own``, kept by the
    simulator between calls, so they are warm memory); everything else (its output buffer,
    consumed within the chunk) is the simulator's shared buffer."""

    def __init__(self, own: _Workspace, shared: _Workspace) -> None:
        super().__init__()
        self.own, self.shared = own, shared
        self.bufs = own.bufs

    def get(self, key, shape, like):
        return (self.own if key in ("v", "h") else self.shared).get(key, shape, like)


#: rows (steps x samples) a chunk covers while few samples remain, within the chunk budget (a
#: group's ``piece`` samples x one step): below about 128 rows a graph pass costs more per row
#: (fixed per-node and per-chunk overhead), so a small tail of survivors advances several steps
#: per chunk (a sample that exits inside the chunk has its later steps computed but not counted)
TAIL_ROWS = 128

#: largest temporary (bytes) of an in-place row move: stays below glibc's mmap threshold
_MOVE_BYTES = 4 * 2**20


def _move_rows(t: torch.Tensor, dst: torch.Tensor, src: torch.Tensor, m: int) -> torch.Tensor:
    """``t[dst] = t[src]`` in place (``dst`` and ``src`` disjoint), then its first ``m`` rows.
    Moves go through small temporaries: a fresh multi-MiB tensor per step would cost a page
    fault per 4 KiB (see :mod:`trt_nm.sim.allocator`)."""
    if not t.is_contiguous():
        t = t.contiguous()
    if dst.numel():
        f = t.view(t.shape[0], -1)
        step = max(1, _MOVE_BYTES // max(f.shape[1] * f.element_size(), 1))
        for i in range(0, dst.numel(), step):
            f.index_copy_(0, dst[i:i + step], f.index_select(0, src[i:i + step]))
    return t[:m]


def _compact_in_place(g: _Group, keep: torch.Tensor, live: set[str], dev: torch.device) -> _Group:
    """The survivors ``keep`` (sorted row positions) of an owned group, compacted without new
    tensors: each survivor beyond the new end moves into the hole of an exited row before it, so
    only ``min(exited, survivors)`` rows are copied (the rows' order changes; ``samples``
    follows)."""
    n, m = g.n, int(keep.numel())
    kept = torch.zeros(n, dtype=torch.bool)
    kept[keep] = True
    dst = (~kept[:m]).nonzero().squeeze(1)
    src = keep[keep >= m]
    dd, sd = dst.to(dev), src.to(dev)
    samples = g.samples.clone()
    samples[dst] = samples[src]

    def mv(t: torch.Tensor | None) -> torch.Tensor | None:
        if t is None:
            return None
        on = (dd, sd) if t.device == dev else (dst.to(t.device), src.to(t.device))
        return _move_rows(t, on[0], on[1], m)

    state = {k: (mv(v), mv(i)) for k, (v, i) in g.state.items()}
    cache: dict[str, Any] = {}
    for k, (val, act, stats, ops, spk) in g.cache.items():
        if k in live:
            nv = mv(val)
            na = nv if act is val else mv(act)
        else:
            nv = val[:1].expand(m, *val.shape[1:])
            na = None if act is None else nv
        cache[k] = (nv, na, stats, mv(ops), mv(spk))
    return _Group(samples[:m], state, cache, owned=True, ws=g.ws)


def _cat_state(parts: list[dict[str, Any]]) -> dict[str, Any]:
    return {k: (torch.cat([p[k][0] for p in parts]),
                None if parts[0][k][1] is None else torch.cat([p[k][1] for p in parts]))
            for k in parts[0]}


def _cat_cache(parts: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in parts[0]:
        if all(p[k][0].stride(0) == 0 for p in parts):  # a value nobody reads again (see _take_cache)
            n = sum(int(p[k][0].shape[0]) for p in parts)
            val = parts[0][k][0][:1].expand(n, *parts[0][k][0].shape[1:])
        else:
            val = torch.cat([p[k][0] for p in parts])
        act0 = parts[0][k][1]
        act = val if act0 is parts[0][k][0] else (None if act0 is None else torch.cat([p[k][1] for p in parts]))
        ops = None if parts[0][k][3] is None else torch.cat([p[k][3] for p in parts])
        spk = None if parts[0][k][4] is None else torch.cat([p[k][4] for p in parts])
        out[k] = (val, act, parts[0][k][2], ops, spk)
    return out


def _split(group: _Group, pieces: int) -> list[_Group]:
    """``group`` as ``pieces`` groups of (nearly) equal size (views of its tensors)."""
    if pieces <= 1:
        return [group]
    bounds = [round(i * group.n / pieces) for i in range(pieces + 1)]
    out = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        out.append(_Group(
            group.samples[a:b],
            {k: (v[a:b], None if i is None else i[a:b]) for k, (v, i) in group.state.items()},
            {k: (val[a:b], val[a:b] if act is val else (None if act is None else act[a:b]), st,
                 None if ops is None else ops[a:b], None if spk is None else spk[a:b])
             for k, (val, act, st, ops, spk) in group.cache.items()},
            owned=False,  # views of the pooled tensors: several groups share their storage
        ))
    return out


def _live(sim: Any, cache: dict[str, Any]) -> set[str]:
    """Cached (static) nodes whose value a node outside the cache reads in later chunks."""
    return {p for n in sim.order if n not in cache for p in sim.preds[n] if p in cache} | {sim.output_name}


def _piece_size(sim: Any, xd: torch.Tensor, static_in: bool) -> int:
    """Samples per group: as many as keep one step's largest node value within the simulator's
    ``chunk_bytes`` (at least 16; a full run's smaller ``state_bytes`` pieces would cost a graph
    pass per piece at every step). A direct-coded input whose full-run pieces have fewer than
    16 samples keeps those pieces: its static prefix then runs on the same rows as in a full run."""
    B = int(xd.shape[1])
    _, cb = sim.plan_chunks(xd)
    if static_in and cb < MIN_CHUNK_ROWS:
        return cb
    if sim.chunk_bytes is None or xd.device.type != "cpu":
        return B
    row = sim._peak_elements(tuple(xd.shape[2:])) * xd.element_size()
    per = max(MIN_CHUNK_ROWS, sim.chunk_bytes // max(row, 1))
    return min(B, math.ceil(B / math.ceil(B / per)))  # equal pieces


def _place_counts(pieces: list[tuple], T: int, B: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Per-layer spike and operation counts ``[T, B]`` (float64) from the chunks' per-row counts
    ``[Tc, n]`` (one scatter per layer): steps a sample did not run (after its exit inside a
    chunk) stay 0."""
    if not pieces:
        return {}, {}
    idx: list[torch.Tensor] = []
    vals: tuple[dict[str, list], dict[str, list]] = ({k: [] for k in pieces[0][4]}, {k: [] for k in pieces[0][5]})
    for t, Tc, real, valid, *counts in pieces:
        flat = (torch.arange(t, t + Tc).unsqueeze(1) * B + real.unsqueeze(0)).reshape(-1)
        keep = None if valid is None else valid.reshape(-1)
        idx.append(flat if keep is None else flat[keep])
        for per_layer, into in zip(counts, vals):
            for k, v in per_layer.items():
                v = v.double().cpu().reshape(-1)
                into[k].append(v if keep is None else v[keep])
    where = torch.cat(idx)

    def place(parts: list[torch.Tensor]) -> torch.Tensor:
        o = torch.zeros(T * B, dtype=torch.float64)
        o.index_put_((where,), torch.cat(parts))
        return o.view(T, B)

    spikes, synops = ({k: place(parts) for k, parts in d.items()} for d in vals)
    return spikes, synops


def run_exit(sim: Any, xd: torch.Tensor, rule: Any, *, count_ops: bool, chunk_steps: int) -> ExitRun:
    """Executed early exit of ``rule`` on ``xd [T, B, ...]`` (already in the compute dtype on
    the simulator's device); see the module docstring."""
    T, B = int(xd.shape[0]), int(xd.shape[1])
    dev = xd.device
    static_in = _frames_identical(xd)
    piece = _piece_size(sim, xd, static_in)
    shared = sim._workspaces()  # stateless nodes' buffers: consumed within a chunk
    neurons = [n for n in sim.order if sim.nodes[n].stateful]
    tiny = T * B < MIN_CHUNK_ROWS  # a full run is one chunk of every row: do the same
    exit_steps = torch.zeros(B, dtype=torch.int64)
    predictions = torch.zeros(B, dtype=torch.int64)
    logits = cum_all = None
    pieces: list[tuple] = []  # (t, Tc, samples, valid or None, spikes, synops) per chunk
    layers: dict[str, Any] | None = None
    live: set[str] | None = None  # cached values a later node reads (the same for every group)
    row_steps = chunks = 0

    def group_ws(i: int) -> dict[str, _Workspace]:
        # group i's own membrane buffers: its states stay in them from chunk to chunk, so groups
        # never overwrite each other's states and need no copy while nobody exits (the first
        # chunk uses the shared buffers: its survivors are copied out anyway)
        return {n: _StateWorkspace(shared.setdefault(("exit-state", i, n), _Workspace()),
                                   shared.setdefault(n, _Workspace())) for n in neurons}

    groups = [_Group(torch.arange(b0, b1), {}, {}, (b0, b1)) for b0, b1 in _batch_pieces(B, piece, T)]
    t = 0
    while groups:
        smallest, largest = min(g.n for g in groups), max(g.n for g in groups)
        R = T - t
        # a small tail advances several steps per chunk, as far as the chunk budget allows
        # (``piece`` samples x one step); never fewer than MIN_CHUNK_ROWS rows (exactness)
        wide = min(math.ceil(TAIL_ROWS / smallest), max(piece // largest, 1))
        Tc = R if tiny else min(R, max(chunk_steps, math.ceil(MIN_CHUNK_ROWS / smallest), wide))
        survivors: list[_Group] = []
        for g in groups:
            n_real = g.n
            if not tiny and Tc * n_real < MIN_CHUNK_ROWS:  # pad with copies of surviving rows
                rows = torch.arange(math.ceil(MIN_CHUNK_ROWS / Tc)) % n_real
                rows_dev = rows.to(dev)
                g = _Group(g.samples[rows], _take_state(g.state, rows_dev), _take_cache(g.cache, rows_dev),
                           owned=True, ws=g.ws)
            n = g.n
            if g.contiguous is not None:  # the input's own rows, as in a full run's piece
                b0, b1 = g.contiguous
                xc = xd[t:t + Tc, b0:b1] if b1 - b0 < B else xd[t:t + Tc]
            elif static_in and g.cache:  # the input is a cached static value: never read
                xc = xd[t:t + Tc, :1].expand(Tc, n, *xd.shape[2:])
            else:
                xc = xd[t:t + Tc].index_select(1, g.samples.to(dev))
            lg, spk, ops, _, lay = sim._run_chunk(xc, static_in, g.state, g.cache, count_ops=count_ops,
                                                 record=False, workspaces={**shared, **g.ws})
            chunks += 1
            row_steps += Tc * n
            if layers is None:
                layers = lay
            if logits is None:
                logits = torch.full((T, B, *lg.shape[2:]), math.nan, dtype=lg.dtype, device=lg.device)
                cum_all = torch.full_like(logits, math.nan)
            real = g.samples[:n_real]
            real_dev = real.to(logits.device)
            logits[t:t + Tc].index_copy_(1, real_dev, lg[:, :n_real])
            # the cumulative mean over this sample's steps so far: cumulative_mean itself
            cum = cumulative_mean(logits[:t + Tc].index_select(1, real_dev))[t:]
            steps = rule.exits_in(cum, t, T).cpu()  # [n_real]: exit step, 0 = goes on
            done = steps > 0
            ran = torch.where(done, steps, torch.full_like(steps, T))
            valid = (torch.arange(t + 1, t + Tc + 1).unsqueeze(1) <= ran.unsqueeze(0))  # [Tc, n_real]
            cum_all[t:t + Tc].index_copy_(1, real_dev, cum)
            if done.any():
                d = done.nonzero().squeeze(1)
                exit_steps[real[d]] = steps[d]
                at = cum[steps[d] - 1 - t, d.to(cum.device)]  # cumulative logits at the exit step
                predictions[real[d]] = at.argmax(-1).cpu()
            # counts are placed once at the end (one scatter per layer, not one per chunk)
            full_chunk = bool(valid.all())
            pieces.append((t, Tc, real, None if full_chunk else valid,
                           {k: v[:, :n_real] for k, v in spk.items()}, {k: v[:, :n_real] for k, v in ops.items()}))
            if not full_chunk:  # steps computed inside the chunk after an exit: not run
                inv = (~valid).to(logits.device)
                blk = logits[t:t + Tc].index_select(1, real_dev).masked_fill_(inv.unsqueeze(-1), math.nan)
                logits[t:t + Tc].index_copy_(1, real_dev, blk)
                blk = cum_all[t:t + Tc].index_select(1, real_dev).masked_fill_(inv.unsqueeze(-1), math.nan)
                cum_all[t:t + Tc].index_copy_(1, real_dev, blk)
            keep = (~done).nonzero().squeeze(1)
            if keep.numel() == 0:
                continue
            alone = len(groups) == 1 or bool(g.ws)  # no other group writes its state buffers
            if keep.numel() == n and alone:  # nobody exited: keep the tensors as they are
                survivors.append(g)
                continue
            if live is None:
                live = _live(sim, g.cache)
            if g.owned and alone:  # the group's own tensors: compact in place
                survivors.append(_compact_in_place(g, keep, live, dev))
                continue
            # the first compaction copies (the cached static values may be views of the input)
            kd = keep.to(dev)
            survivors.append(_Group(g.samples[keep], _take_state(g.state, kd),
                                    _take_cache(g.cache, kd, live), owned=True, ws=g.ws))
        t += Tc
        total = sum(s.n for s in survivors)
        want = math.ceil(total / piece) if total else 0
        if len(survivors) > max(want, 1) or (len(survivors) > 1 and min(s.n for s in survivors) < MIN_CHUNK_ROWS):
            # fewer, fuller groups: pool the survivors (one copy) and split them evenly
            pooled = _Group(torch.cat([s.samples for s in survivors]),
                            _cat_state([s.state for s in survivors]), _cat_cache([s.cache for s in survivors]),
                            owned=True)
            groups = _split(pooled, want)
            if len(groups) > 1:
                for i, g in enumerate(groups):
                    g.ws = group_ws(i)
        else:
            groups = survivors
            if len(groups) > 1 and not groups[0].ws:  # after the first chunk: copies, now own buffers
                for i, g in enumerate(groups):
                    g.ws = group_ws(i)
    assert logits is not None and cum_all is not None and layers is not None
    spikes, synops = _place_counts(pieces, T, B)
    return ExitRun(exit_steps=exit_steps, predictions=predictions, logits=logits, cum_logits=cum_all,
                   spikes=spikes, synops=synops, layers=layers, row_steps=row_steps, chunks=chunks,
                   dt=float(sim.dt) if sim.dt is not None else float("nan"), reset=sim.reset)


__all__ = ["run_exit"]
