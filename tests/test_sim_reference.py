"""The fast engine equals the reference interpreter bit for bit: logits, cumulative logits,
spikes, synaptic operations, spike trains and layer facts, over every zoo model and every fast
path (direct-coded input, time chunks, batch pieces, strided-add pooling of spikes, the fused
power-of-two decay, the first-step shortcut, subtract and non-zero reset, per-neuron and
per-channel coefficients, every neuron kind)."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch
from conftest import randomise_bn

from trt_nm.models import build_model, list_models
from trt_nm.nir.io import to_nir
from trt_nm.sim.engine import SimulationError, Simulator
from trt_nm.sim.reference import simulate_reference

SIZES = {"mlp": (12, 12), "cnn-small": (12, 12), "vggsnn": (16, 16), "resnet19": (8, 8), "sew-resnet34": (32, 32)}
DT = 1e-4
#: samples per batch: >= 16 rows per step, so the reference's per-step kernels are the engine's
B = 16


def _assert_same(got, want) -> None:
    assert torch.equal(got.logits, want.logits), (got.logits - want.logits).abs().max()
    assert torch.equal(got.cum_logits, want.cum_logits)
    for key in ("spikes", "synops", "spike_trains"):
        a, b = getattr(got, key), getattr(want, key)
        assert a.keys() == b.keys(), key
        for name in a:
            assert a[name].dtype == b[name].dtype and torch.equal(a[name], b[name]), (key, name)
    assert {n: vars(s) for n, s in got.layers.items()} == {n: vars(s) for n, s in want.layers.items()}
    assert (got.dt, got.reset) == (want.dt, want.reset)


def _input(coding: str, T: int, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if coding == "binary":
        return (torch.rand(T, B, *shape, generator=g) < 0.35).float()
    if coding == "static":  # direct coding: one analogue frame at every step
        return (torch.rand(1, B, *shape, generator=g) * 2).expand(T, -1, *shape).contiguous()
    return torch.rand(T, B, *shape, generator=g) * 2 - 0.3


#: engine settings: automatic plan, one step per chunk, explicit time chunks x batch pieces
PLANS = {
    "auto": ({}, {}),
    "tiny-budgets": ({"chunk_bytes": 1, "state_bytes": 1}, {}),
    "chunks-x-pieces": ({}, {"chunk_steps": 2, "chunk_batch": 8}),
}


@pytest.mark.parametrize("arch", list_models())
@pytest.mark.parametrize("coding", ["binary", "static"])
def test_zoo_engine_equals_reference(arch, coding):
    torch.manual_seed(7)
    size = SIZES[arch]
    T = 4
    model = build_model(arch, input_size=size, in_channels=2, T=T).eval()
    randomise_bn(model)
    graph = to_nir(model)
    x = _input(coding, T, (2, *size), seed=11)
    want = simulate_reference(graph, x, record=True)
    assert sum(want.spike_totals().values()) > 0
    sim = Simulator(graph)  # one simulator: fan-out maps computed once
    _assert_same(sim(x, record=True), want)
    _assert_same(sim(x, record=True, **PLANS["chunks-x-pieces"][1]), want)


# --------------------------------------------------------------------------- hand-built graphs


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _w(rng: np.random.Generator, *shape: int, sparsity: float = 0.3) -> np.ndarray:
    w = rng.normal(size=shape).astype(np.float32) * 0.7
    w[rng.random(shape) < sparsity] = 0.0
    return w


def _conv_graph(reset: str, per_channel: bool) -> nir.NIRGraph:
    """Conv -> LIF (per-neuron or per-channel tau, r, v_leak, thresholds, NON-zero v_reset) ->
    Scale(2) -> SumPool -> Flatten -> Affine -> CubaLIF -> Linear -> Threshold -> Affine -> LI."""
    rng = _rng(1)
    lif_shape = (4,) if per_channel else (4, 8, 8)
    tau = rng.uniform(1.5e-4, 5e-4, lif_shape)
    nodes = {
        "input": nir.Input(input_type={"input": np.array([2, 8, 8])}),
        "conv": nir.Conv2d(input_shape=(8, 8), weight=_w(rng, 4, 2, 3, 3), stride=1, padding=1, dilation=1,
                           groups=1, bias=rng.normal(size=4).astype(np.float32) * 0.3),
        "lif": nir.LIF(tau=tau, r=tau / DT * rng.uniform(0.8, 1.2, lif_shape), v_leak=rng.uniform(-0.1, 0.2, lif_shape),
                       v_threshold=rng.uniform(0.4, 1.2, lif_shape), v_reset=rng.uniform(-0.3, 0.2, lif_shape)),
        "scale": nir.Scale(scale=np.full((4, 8, 8), 2.0)),
        "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "flat": nir.Flatten(input_type={"input": np.array([4, 4, 4])}, start_dim=0, end_dim=-1),
        "aff": nir.Affine(weight=_w(rng, 12, 64) * 0.3, bias=rng.normal(size=12).astype(np.float32) * 0.2),
        "cuba": nir.CubaLIF(tau_syn=rng.uniform(1.2e-4, 4e-4, 12), tau_mem=rng.uniform(1.2e-4, 4e-4, 12),
                            r=rng.uniform(0.5, 2.0, 12), v_leak=rng.uniform(0.0, 0.1, 12),
                            v_threshold=rng.uniform(0.2, 0.6, 12), w_in=rng.uniform(0.5, 1.5, 12)),
        "lin": nir.Linear(weight=_w(rng, 8, 12)),
        "thr": nir.Threshold(threshold=rng.uniform(-0.2, 0.4, 8)),
        "aff2": nir.Affine(weight=_w(rng, 5, 8), bias=np.zeros(5, np.float32)),
        "li": nir.LI(tau=rng.uniform(1.5e-4, 6e-4, 5), r=rng.uniform(0.5, 2.0, 5), v_leak=rng.uniform(-0.1, 0.1, 5)),
        "output": nir.Output(output_type={"output": np.array([5])}),
    }
    chain = ["input", "conv", "lif", "scale", "pool", "flat", "aff", "cuba", "lin", "thr", "aff2", "li", "output"]
    return nir.NIRGraph(nodes=nodes, edges=list(zip(chain[:-1], chain[1:])), metadata={"dt": DT, "reset": reset},
                        type_check=False)


def _mlp_graph(reset: str) -> nir.NIRGraph:
    """Affine -> LIF (uniform beta 0.5, gain 1, no leak: fused decay and first-step shortcut) ->
    Affine + a skip Affine from the input -> IF (decay 1) -> Affine -> I -> Affine -> CubaLI."""
    rng = _rng(2)
    nodes = {
        "input": nir.Input(input_type={"input": np.array([12])}),
        "aff1": nir.Affine(weight=_w(rng, 16, 12), bias=rng.normal(size=16).astype(np.float32) * 0.3),
        "lif": nir.LIF(tau=np.full(16, 2 * DT), r=np.full(16, 2.0), v_leak=np.zeros(16), v_threshold=np.ones(16)),
        "aff2": nir.Affine(weight=_w(rng, 16, 16), bias=np.zeros(16, np.float32)),
        "skip": nir.Affine(weight=_w(rng, 16, 12) * 0.5, bias=np.zeros(16, np.float32)),
        "if": nir.IF(r=np.full(16, 1 / DT), v_threshold=np.full(16, 0.8)),
        "aff3": nir.Affine(weight=_w(rng, 8, 16), bias=np.zeros(8, np.float32)),
        "i": nir.I(r=rng.uniform(0.5, 1.5, 8) / DT),
        "aff4": nir.Affine(weight=_w(rng, 6, 8), bias=rng.normal(size=6).astype(np.float32)),
        "cubali": nir.CubaLI(tau_syn=np.full(6, 3e-4), tau_mem=rng.uniform(2e-4, 5e-4, 6), r=np.ones(6),
                             v_leak=np.zeros(6), w_in=np.full(6, 1.5)),
        "output": nir.Output(output_type={"output": np.array([6])}),
    }
    edges = [("input", "aff1"), ("aff1", "lif"), ("lif", "aff2"), ("aff2", "if"), ("input", "skip"), ("skip", "if"),
             ("if", "aff3"), ("aff3", "i"), ("i", "aff4"), ("aff4", "cubali"), ("cubali", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": DT, "reset": reset}, type_check=False)


def _pool_first_graph(reset: str) -> nir.NIRGraph:
    """AvgPool2d straight on the input (binary input events pass it as window sums) -> Conv2d ->
    LIF (beta 0.25: fused decay) -> Flatten(1, 2) -> Conv1d -> IF -> Flatten -> Linear."""
    rng = _rng(3)
    nodes = {
        "input": nir.Input(input_type={"input": np.array([2, 8, 8])}),
        "pool": nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "conv": nir.Conv2d(input_shape=(4, 4), weight=_w(rng, 3, 2, 3, 3) * 2, stride=1, padding=1, dilation=1,
                           groups=1, bias=np.full(3, 0.1, np.float32)),
        "lif": nir.LIF(tau=np.full((3, 4, 4), DT / 0.75), r=np.full((3, 4, 4), 1 / 0.75),
                       v_leak=np.zeros((3, 4, 4)), v_threshold=np.full((3, 4, 4), 0.5)),
        "flat": nir.Flatten(input_type={"input": np.array([3, 4, 4])}, start_dim=1, end_dim=2),
        "c1": nir.Conv1d(input_shape=16, weight=_w(rng, 4, 3, 3), stride=2, padding=1, dilation=1, groups=1,
                         bias=np.zeros(4, np.float32)),
        "if": nir.IF(r=np.full((4, 8), 1 / DT), v_threshold=np.full((4, 8), 0.3)),
        "flat2": nir.Flatten(input_type={"input": np.array([4, 8])}, start_dim=0, end_dim=-1),
        "lin": nir.Linear(weight=_w(rng, 4, 32)),
        "output": nir.Output(output_type={"output": np.array([4])}),
    }
    chain = ["input", "pool", "conv", "lif", "flat", "c1", "if", "flat2", "lin", "output"]
    return nir.NIRGraph(nodes=nodes, edges=list(zip(chain[:-1], chain[1:])), metadata={"dt": DT, "reset": reset},
                        type_check=False)


GRAPHS = {
    "conv-per-neuron": (lambda r: _conv_graph(r, per_channel=False), (2, 8, 8)),
    "conv-per-channel": (lambda r: _conv_graph(r, per_channel=True), (2, 8, 8)),
    "mlp-skip": (_mlp_graph, (12,)),
    "pool-first": (_pool_first_graph, (2, 8, 8)),
}


@pytest.mark.parametrize("graph_name", sorted(GRAPHS))
@pytest.mark.parametrize("reset", ["zero", "subtract"])
@pytest.mark.parametrize("coding", ["binary", "analog", "static"])
def test_hand_graphs_engine_equals_reference(graph_name, reset, coding):
    make, shape = GRAPHS[graph_name]
    graph = make(reset)
    T = 6
    x = _input(coding, T, shape, seed=10 * sorted(GRAPHS).index(graph_name) + len(coding))
    want = simulate_reference(graph, x, record=True)
    assert sum(want.spike_totals().values()) > 0
    for kwargs, call in PLANS.values():
        _assert_same(Simulator(graph, **kwargs)(x, record=True, **call), want)
    _assert_same(Simulator(graph, dtype="float64")(x, record=True),
                 simulate_reference(graph, x, record=True, dtype="float64"))
    plain = simulate_reference(graph, x, count_ops=False)
    _assert_same(Simulator(graph)(x, count_ops=False), plain)
    assert not plain.synops and not plain.spike_trains


def test_hand_graphs_take_the_fast_paths():
    """The graphs above do exercise the engine's shortcuts (else the equality proves little)."""
    lif = Simulator(_mlp_graph("zero")).nodes["lif"]
    assert lif.fused_decay and lif.zero_reset and lif.first_step_is_input
    assert not Simulator(_mlp_graph("subtract")).nodes["lif"].first_step_is_input
    assert Simulator(_mlp_graph("zero")).nodes["if"].unit_decay
    assert Simulator(_pool_first_graph("zero")).nodes["lif"].fused_decay
    conv = Simulator(_conv_graph("zero", per_channel=False))
    assert not conv.nodes["lif"].decay.uniform and not conv.nodes["lif"].zero_reset  # v_reset != 0
    assert conv.nodes["pool"].input_bound == 2.0  # Scale(2) of spikes: strided-add window sums
    assert not Simulator(_conv_graph("zero", per_channel=True)).nodes["lif"].decay.uniform
    assert Simulator(_pool_first_graph("zero")).nodes["pool"].input_bound is None  # analogue input
    x = _input("binary", 4, (2, 8, 8), seed=0)
    res = simulate_reference(_pool_first_graph("zero"), x)
    assert res.layers["conv"].op_kind == "AC" and res.layers["c1"].op_kind == "AC"  # pooled input events
    assert simulate_reference(_mlp_graph("zero"), _input("analog", 4, (12,), 0)).layers["aff1"].op_kind == "MAC"


def test_reference_refuses_what_the_engine_refuses():
    graph = _mlp_graph("zero")
    x = _input("analog", 3, (12,), 0)
    with pytest.raises(SimulationError, match="dt"):
        simulate_reference(nir.NIRGraph(nodes=graph.nodes, edges=graph.edges, metadata={}, type_check=False), x)
    graph.nodes["i"] = nir.Delay(delay=np.ones(8))
    with pytest.raises(SimulationError, match="unsupported"):
        simulate_reference(graph, x)
    graph = _mlp_graph("zero")
    graph.nodes["lif"] = nir.LIF(tau=np.zeros(16), r=np.ones(16), v_leak=np.zeros(16), v_threshold=np.ones(16))
    with pytest.raises(SimulationError, match="tau must be > 0"):
        simulate_reference(graph, x)
    with pytest.raises(SimulationError, match="node 'lif': tau must be > 0"):
        Simulator(graph)
