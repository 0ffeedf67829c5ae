"""The engine's compiled stateful nodes (LIF, IF, LI, I, CubaLIF, CubaLI): an in-place loop over
the timesteps of a chunk, with coefficients from the node table
(:func:`trt_nm.nir.nodes.coefficients`: ``h = decay*v + gain*S + leak``; Cuba nodes first
``i = syn_decay*i + syn_gain*S``, then ``S := i``).

Every value is rounded exactly as ``h = decay*v + gain*S + leak`` evaluated op by op (the
reference interpreter, :mod:`trt_nm.sim.reference`); the loop only skips ops that are exact
(``*1``, ``+0``), fuses ``x + decay*v`` when ``decay`` is a power of two (``decay*v`` is exact),
writes spikes straight into the float output and resets to zero with one ``h - h*s`` pass.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from trt_nm.errors import NirError
from trt_nm.nir.nodes import coefficients
from trt_nm.sim.layers import _arr, _Coef, _Node
from trt_nm.sim.workspace import _empty, _Workspace


class _Neuron(_Node):
    """Stateful nodes. ``run`` takes the merged ``[T*B, ...]`` input and loops over T."""

    def __init__(self, name: str, node: Any, dtype: torch.dtype, device: torch.device, dt: float,
                 reset: str) -> None:
        super().__init__(name, node)
        self.dt = dt
        self.reset = reset
        self.dtype, self.device = dtype, device
        try:
            co = coefficients(node, dt)  # float64, from the node table
        except NirError as exc:
            raise NirError(f"node {name!r}: {exc}") from None
        c = lambda key: _Coef(_arr(co[key]), dtype, device)  # noqa: E731
        self.decay, self.in_scale, self.leak = c("decay"), c("gain"), c("leak")
        self.cuba = "syn_decay" in co
        if self.cuba:
            self.syn_decay, self.syn_in = c("syn_decay"), c("syn_gain")
        if self.spiking:
            self.thr, self.v_reset = c("threshold"), c("v_reset")
        # which exact shortcuts the update may take, fixed by the node's coefficients
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
