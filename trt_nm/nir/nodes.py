"""THE table of NIR node kinds: what every node type is and how it computes, written once.

Every reader of a NIR graph (validator, ``from_nir``, simulator, quantizer, target checks and
exporters, ``trt-nm inspect``) asks this table -- :data:`NODE_KINDS`, :func:`node_kind`,
:func:`kinds_where`, :func:`coefficients` -- instead of restating lists of type names. The
torch modules that run the nodes live in :mod:`trt_nm.nir.modules`, the graph utilities in
:mod:`trt_nm.nir.graph`.

Discrete time (forward Euler with step ``dt`` in seconds). With ``S`` the summed input of a
node at one timestep and ``H(x) = (x > 0)``, :func:`coefficients` returns float64 arrays
(broadcastable to the node's batch-free shape) for:

* ``LIF``: ``h = decay*v + gain*S + leak`` with ``decay = 1 - dt/tau``, ``gain = r*dt/tau``,
  ``leak = v_leak*dt/tau`` (Euler for ``tau dv/dt = v_leak - v + r S``); ``z = H(h - threshold)``;
  ``v = where(z, v_reset, h)`` (reset "zero") or ``v = h - z*threshold`` (reset "subtract",
  only when the graph metadata says so). For trt_nm graphs ``gain == 1`` and ``leak == 0``.
* ``CubaLIF``: ``i = syn_decay*i + syn_gain*S`` (``syn_decay = 1 - dt/tau_syn``,
  ``syn_gain = w_in*dt/tau_syn``), then the LIF membrane with ``tau = tau_mem`` driven by the
  NEW current ``i`` instead of ``S``; spike and reset as LIF.
* ``CubaLI``: as CubaLIF without spike/reset; outputs ``v``.
* ``LI``: ``v = decay*v + gain*S + leak``; outputs ``v``.
* ``IF``: ``decay = 1``, ``gain = r*dt``, ``leak = 0``; spike and reset as LIF.
  ``I``: the same membrane, outputs ``v``.
* ``Threshold``: ``H(S - threshold)``, stateless.

State (``v``, ``i``) starts at 0. Shapes are batch-free (NIR convention); stateless nodes map
``[N, *in_shape] -> [N, *out_shape]``, stateful ones keep the shape.

Adding a node kind (a new NIR type, or a chip's neuron such as Loihi 2 fixed point): append
ONE :class:`NodeKind` to ``_KINDS`` below -- its role, layer kind, flags, parameter fields
and, for a stateful node, a ``coefficients(node, dt)`` function written next to ``_lif``. Then
give it a module in :mod:`trt_nm.nir.modules` (``stateless_module`` or, when its coefficients
fit the membrane/current update above, nothing: ``stateful_module`` reads the table) and a node
in the simulator if it needs its own arithmetic; validator, importer, quantizer, op counting
and target checks read everything else from here. ``tests/test_nir_nodes.py`` checks that
every simulated kind has a module.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import torch

from trt_nm.errors import NirError


def arr(value: Any) -> np.ndarray:
    """A NIR parameter (numpy array, torch tensor, number) as a float64 numpy array (same shape)."""
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
        simulated: the simulator and ``from_nir`` run it.

    Derived: :attr:`weighted` (Affine/Linear/Conv), :attr:`neuron` (a neuron model a chip must
    implement), :attr:`relay` (stateless and unweighted, between a weighted node and the next
    neuron: pooling, Flatten, Scale).
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

    @property
    def relay(self) -> bool:
        """Stateless, unweighted and not a neuron: pooling, reshape or scale (what the quantizer
        and conversions look through between a weighted node and the neuron it feeds)."""
        return self.role in ("pool", "reshape", "scale")


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
    NodeKind("CubaLI", "neuron", "neuron", stateful=True,
             params=("tau_mem", "tau_syn", "r", "v_leak", "w_in"), state=("v", "i"),
             coefficients=_cuba_li),
    NodeKind("I", "neuron", "neuron", stateful=True, params=("r",), state=("v",), coefficients=_i),
    NodeKind("Threshold", "threshold", "neuron", spiking=True, params=("threshold",), events="emit"),
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
    """Names of the node kinds whose attributes (fields or derived properties) equal ``flags``,
    in table order: ``kinds_where(role="weight")`` -> ``("Affine", "Linear", "Conv1d", "Conv2d")``,
    ``kinds_where(stateful=True)``, ``kinds_where(relay=True)``."""
    return tuple(k.name for k in _KINDS if all(getattr(k, f) == v for f, v in flags.items()))


def coefficients(node: Any, dt: float) -> dict[str, np.ndarray]:
    """The discrete-time coefficients of a node with time constants (see :class:`NodeKind`).

    Args:
        node: a NIR node (LIF, IF, CubaLIF, LI, I, CubaLI).
        dt: timestep in seconds.

    Returns:
        ``{name: float64 array}`` broadcastable to the node's batch-free shape (``decay``,
        ``gain``, ``leak``, and ``syn_decay``/``syn_gain``, ``threshold``/``v_reset`` where the
        node has them). Time constants <= 0 and kinds without coefficients raise NirError.
    """
    kind = node_kind(node)
    if kind.coefficients is None:
        raise NirError(f"NIR node type {kind.name} has no discrete-time coefficients")
    return kind.coefficients(node, dt)


#: NIR node types with state carried across timesteps
STATEFUL_TYPES = frozenset(kinds_where(stateful=True))
#: NIR node types whose output is spikes
SPIKING_TYPES = frozenset(kinds_where(spiking=True))
#: NIR types a target profile may list in ``neuron_models`` (every neuron model)
NEURON_KINDS = kinds_where(neuron=True)
#: layer kinds (:attr:`NodeKind.layer`) a target profile may list in ``layer_types``
LAYER_KINDS = tuple(dict.fromkeys(k.layer for k in _KINDS if k.weighted or k.relay))


@dataclass(frozen=True)
class ChipNeuronKind:
    """A chip's own neuron: integer arithmetic that trt_nm runs exactly (simulator), trains for
    (straight-through quantizers), puts weights on (quantizer) and writes (exporters).

    The arithmetic is written once, in the chip's module (``trt_nm.chip.<chip>``): its
    ``neuron_step(state, syn_in, params) -> (state, spikes)`` on int64 tensors and the constants
    below. This row only says where, so every reader finds the same code; the module is
    imported on use (it needs torch and knows the chip's files).

    Attributes:
        name: the kind's name (``"XyloLIF"``, ``"Loihi2CubaLIF"``, ``"SpeckIAF"``).
        chip: the target it belongs to.
        nir: the NIR node type it is exchanged as in the vendor's NIR file (None: the vendor
            reads no NIR).
        module: the module holding ``neuron_step`` and the constants.
    """

    name: str
    chip: str
    nir: str | None
    module: str

    def arithmetic(self) -> ModuleType:
        """The module with ``neuron_step``, ``STATE_BITS``, ``WEIGHT_BITS``, ``MULTI_SPIKE``,
        ``RESET``, ``DELAY_PER_LAYER``."""
        return importlib.import_module(self.module)

    @property
    def step(self) -> Callable[..., Any]:
        """``neuron_step(state, syn_in, params) -> (state, spikes)`` (int64 tensors)."""
        return self.arithmetic().neuron_step

    def facts(self) -> dict[str, Any]:
        """State and weight widths, multi-spike, reset and delay per layer, as plain data."""
        m = self.arithmetic()
        return {"state_bits": m.STATE_BITS, "weight_bits": m.WEIGHT_BITS,
                "multi_spike": bool(m.MULTI_SPIKE), "reset": m.RESET,
                "delay_per_layer": int(m.DELAY_PER_LAYER)}

    def describe(self) -> str:
        """One line for ``trt-nm targets NAME``."""
        f = self.facts()
        spikes = "several spikes per step" if f["multi_spike"] else "one spike per step"
        nir = f"exchanged as NIR {self.nir}" if self.nir else "no NIR reader at the vendor"
        return (f"chip-exact neuron {self.name}: {f['state_bits']}-bit state, {f['weight_bits']}-bit "
                f"weights, {spikes}, reset {f['reset']}, {f['delay_per_layer']} step(s) of delay per "
                f"layer; {nir}; arithmetic in {self.module}")


_CHIP_KINDS = (
    ChipNeuronKind("XyloLIF", "xylo", "CubaLIF", "trt_nm.chip.xylo"),
    ChipNeuronKind("Loihi2CubaLIF", "loihi2", None, "trt_nm.chip.loihi2"),
    ChipNeuronKind("SpeckIAF", "speck", "IF", "trt_nm.chip.speck"),
)
#: chip-exact neuron kinds by name (the chips' integer arithmetic, see :class:`ChipNeuronKind`)
CHIP_NEURON_KINDS: dict[str, ChipNeuronKind] = {k.name: k for k in _CHIP_KINDS}


def chip_neuron(chip: str) -> ChipNeuronKind:
    """The chip-exact neuron kind of target ``chip``; unknown chips raise NirError."""
    for k in _CHIP_KINDS:
        if k.chip == chip:
            return k
    raise NirError(f"no chip-exact neuron for target {chip!r}; chips: {', '.join(k.chip for k in _CHIP_KINDS)}")
