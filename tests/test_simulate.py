"""The NIR simulator against the backends (every zoo architecture), other tools' graphs,
hand-checked operation counts, and bad graphs."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch
from conftest import randomise_bn

import trt_nm
from trt_nm.models import build_model, list_models
from trt_nm.nir.io import from_nir, to_nir
from trt_nm.sim import SimulationError, Simulator, concat_results, simulate

SIZES = {"mlp": (12, 12), "cnn-small": (12, 12), "vggsnn": (16, 16), "resnet19": (8, 8), "sew-resnet34": (32, 32)}


def _hooked_run(model, x):
    spikes: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: spikes.__setitem__(n, o.detach()))
             for n, m in model.neurons()]
    with torch.no_grad():
        out = model(x)
    for h in hooks:
        h.remove()
    return out, spikes


@pytest.mark.parametrize("arch", list_models())
@pytest.mark.parametrize("backend", trt_nm.list_backends())
def test_zoo_matches_backends(arch, backend):
    if backend != "torch" and arch in ("vggsnn", "sew-resnet34"):
        pytest.skip("large nets checked on the torch backend; backends agree with torch (test_backends)")
    size = SIZES[arch]
    model = build_model(arch, backend=backend, input_size=size, in_channels=2, T=3).eval()
    randomise_bn(model)
    x = (torch.rand(3, 3, 2, *size) < 0.4).float() * 1.5
    ref, ref_spikes = _hooked_run(model, x)
    res = simulate(to_nir(model), x, record=True, count_ops=False)
    assert (res.logits - ref).abs().max().item() <= 1e-5
    assert set(res.spike_trains) == {n.replace(".", "_") for n in ref_spikes}
    total = 0.0
    for name, s in ref_spikes.items():
        assert torch.equal(res.spike_trains[name.replace(".", "_")], s), name
        total += float(s.sum())
    assert total > 0, "test input must make neurons fire"
    # counts agree with forward hooks
    assert sum(res.spike_totals().values()) == total


def _snntorch_graph():
    snn = pytest.importorskip("snntorch")
    from snntorch.export_nir import export_to_nir

    net = torch.nn.Sequential(
        torch.nn.Linear(6, 5),
        snn.Leaky(beta=torch.full((5,), 0.5), threshold=torch.ones(5), init_hidden=True,
                  reset_mechanism="zero", reset_delay=False),
        torch.nn.Linear(5, 3),
    )
    return net, export_to_nir(net, torch.randn(1, 6), ignore_dims=[0])


def test_snntorch_made_graph():
    net, graph = _snntorch_graph()
    x = torch.randn(6, 8, 6) * 2
    with pytest.raises(SimulationError, match="dt"):
        simulate(graph, x)  # snnTorch writes no dt
    res = simulate(graph, x, dt=1e-4, record=True)
    net[1].reset_mem()
    spk = []
    outs = []
    with torch.no_grad():
        for t in range(6):
            h = net[0](x[t])
            s = net[1](h)
            spk.append(s)
            outs.append(net[2](s))
    assert torch.equal(res.spike_trains["1"], torch.stack(spk))
    assert (res.logits - torch.stack(outs)).abs().max() <= 1e-5


def _hand_graph(dt_meta=True):
    rng = np.random.default_rng(0)
    w1 = rng.normal(size=(4, 2, 3, 3)).astype(np.float32)
    w1[0, 0] = 0.0  # sparse connectivity
    n = 4 * 3 * 3
    nodes = {
        "input": nir.Input(input_type={"input": np.array([2, 6, 6])}),
        "conv": nir.Conv2d(input_shape=(6, 6), weight=w1, stride=1, padding=1, dilation=1, groups=1,
                           bias=np.zeros(4, np.float32) + 0.2),
        "if": nir.IF(r=np.full((4, 6, 6), 1e4), v_threshold=np.ones((4, 6, 6))),
        "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "flat": nir.Flatten(input_type={"input": np.array([4, 3, 3])}, start_dim=0, end_dim=-1),
        "aff": nir.Affine(weight=rng.normal(size=(5, n)).astype(np.float32), bias=np.zeros(5, np.float32)),
        "cuba": nir.CubaLIF(tau_syn=np.full(5, 2e-4), tau_mem=np.full(5, 4e-4), r=np.ones(5),
                            v_leak=np.zeros(5), v_threshold=np.full(5, 0.5)),
        "li": nir.LI(tau=np.full(5, 2e-4), r=np.ones(5), v_leak=np.zeros(5)),
        "output": nir.Output(output_type={"output": np.array([5])}),
    }
    edges = [("input", "conv"), ("conv", "if"), ("if", "pool"), ("pool", "flat"), ("flat", "aff"),
             ("aff", "cuba"), ("cuba", "li"), ("li", "output")]
    meta = {"dt": 1e-4} if dt_meta else {}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, type_check=False)


def test_hand_graph_matches_nir_bridge_interpreter():
    graph = _hand_graph()
    x = torch.rand(5, 3, 2, 6, 6) * 2
    res = Simulator(graph, dtype="float64")(x, record=True)
    net = from_nir(graph, backend="torch").double()
    with torch.no_grad():
        ref = net(x.double())
    assert (res.logits - ref.to(res.logits.dtype)).abs().max() <= 1e-5
    assert res.spikes["if"].sum() > 0
    assert set(res.spikes) == {"if", "cuba"}


def test_synops_hand_counted():
    graph = _hand_graph()
    x = torch.rand(4, 2, 2, 6, 6)
    x[0, 0] = 0.0  # an all-zero frame costs no MACs
    res = simulate(graph, x, record=True)
    conv = graph.nodes["conv"]
    wmask = torch.as_tensor(conv.weight != 0).float()
    # first layer (dense input): nonzero inputs x nonzero weights, brute force over positions
    xin = torch.nn.functional.pad((x != 0).float().flatten(0, 1), (1, 1, 1, 1))
    macs = torch.zeros(8)
    for i in range(6):
        for j in range(6):
            patch = xin[:, :, i:i + 3, j:j + 3]  # [N, 2, 3, 3]
            macs += (patch.unsqueeze(1) * wmask.unsqueeze(0)).sum((1, 2, 3, 4))
    assert torch.equal(res.synops["conv"].flatten().float(), macs)
    assert res.layers["conv"].op_kind == "MAC"
    # spikes of "if" pass a 2x2 sum pool and reach 5 synapses each (dense Affine)
    aff_w = torch.as_tensor(graph.nodes["aff"].weight)
    fan_out = (aff_w != 0).sum(0).reshape(4, 3, 3)
    s = res.spike_trains["if"][..., :6, :6]  # [T, B, 4, 6, 6]
    pooled = s.reshape(4, 2, 4, 3, 2, 3, 2).sum((4, 6))
    assert torch.equal(res.synops["aff"], (pooled * fan_out).sum((2, 3, 4)).double())
    assert res.layers["aff"].op_kind == "AC"
    assert res.layers["aff"].dense_macs == 5 * 36


def test_concat_and_exit_totals():
    graph = _hand_graph()
    x = torch.rand(3, 6, 2, 6, 6) * 2
    sim = Simulator(graph)
    whole = sim(x)
    parts = concat_results([sim(x[:, :2]), sim(x[:, 2:])])
    assert torch.allclose(whole.logits, parts.logits)
    assert whole.spike_totals() == parts.spike_totals()
    one = whole.spike_totals(torch.ones(6, dtype=torch.long))
    assert one["if"] == float(whole.spikes["if"][0].sum())


def test_subtract_reset_from_metadata():
    from trt_nm.config import NeuronConfig

    model = build_model("mlp", input_size=(4, 4), T=5, neuron=NeuronConfig(reset="subtract"), hidden=(8,)).eval()
    x = torch.rand(5, 3, 1, 4, 4) * 3
    ref, spikes = _hooked_run(model, x)
    graph = to_nir(model, reset_mode="metadata")
    res = simulate(graph, x, record=True)
    assert (res.logits - ref).abs().max() <= 1e-5
    name = next(iter(spikes))
    assert torch.equal(res.spike_trains[name.replace(".", "_")], spikes[name])


def test_bad_graphs():
    x = torch.rand(2, 1, 2, 6, 6)
    with pytest.raises(SimulationError, match="dt"):
        simulate(_hand_graph(dt_meta=False), x)
    simulate(_hand_graph(dt_meta=False), x, dt=1e-4)  # explicit dt works
    g = _hand_graph()
    g.nodes["li"] = nir.Delay(delay=np.ones(5))
    with pytest.raises(SimulationError, match="unsupported type Delay"):
        Simulator(g)
    g = _hand_graph()
    g.edges.append(("li", "aff"))
    with pytest.raises(SimulationError, match="recurrent"):
        Simulator(g)
    with pytest.raises(trt_nm.TrtNmError, match="input shape"):
        simulate(_hand_graph(), torch.rand(2, 1, 3, 6, 6))
    with pytest.raises(trt_nm.TrtNmError):
        simulate(_hand_graph(), torch.rand(2, 1, 2, 6, 6), dt=-1.0)


def test_top_level_binding():
    import trt_nm.sim.engine  # noqa: F401  importing the module must not break the call form

    res = trt_nm.simulate(_hand_graph(), torch.rand(2, 1, 2, 6, 6))
    assert res.logits.shape == (2, 1, 5)


@pytest.mark.parametrize("dims,stride,padding,dilation,groups", [
    (2, 1, 1, 1, 1), (2, 2, 1, 1, 1), (2, 3, 2, 2, 2), (2, 2, 0, 1, 4), (2, 1, "same", 2, 1),
    (1, 2, 1, 1, 1), (1, 1, 3, 3, 2),
])
def test_fanout_count_equals_mask_convolution(dims, stride, padding, dilation, groups):
    """The fan-out-map count (one matvec) equals convolving events with the nonzero mask."""
    from trt_nm.sim.engine import _compile_node

    g = torch.Generator().manual_seed(dims * 100 + groups)
    cin, cout, k = 4, 8, 3
    w = torch.randn(cout, cin // groups, *([k] * dims), generator=g)
    w[torch.rand(w.shape, generator=g) < 0.5] = 0.0  # sparse connectivity
    w[0] = 0.0  # a dead output channel
    cls = nir.Conv2d if dims == 2 else nir.Conv1d
    spatial = (9, 11) if dims == 2 else (13,)
    node = cls(input_shape=spatial if dims == 2 else spatial[0], weight=w.numpy(), stride=stride, padding=padding,
               dilation=dilation, groups=groups, bias=np.zeros(cout, np.float32))
    conv = _compile_node("c", node, torch.float32, torch.device("cpu"), 1e-4, "zero")
    fn = torch.nn.functional.conv2d if dims == 2 else torch.nn.functional.conv1d
    mask = (w != 0).float()
    spikes = (torch.rand(6, cin, *spatial, generator=g) < 0.3).float()
    events = torch.randint(0, 5, (6, cin, *spatial), generator=g).float()  # pooled event counts
    for act in (spikes, events):
        ref = fn(act, mask, None, stride, padding, dilation, groups).flatten(1).sum(1, dtype=torch.float64)
        assert torch.equal(conv.count(act), ref)
    assert torch.equal(conv.count(torch.zeros_like(spikes)), torch.zeros(6, dtype=torch.float64))


def test_fanout_count_affine_and_float64_fallback():
    from trt_nm.sim.engine import _compile_node

    g = torch.Generator().manual_seed(3)
    w = torch.randn(7, 20, generator=g)
    w[torch.rand(w.shape, generator=g) < 0.6] = 0.0
    aff = _compile_node("a", nir.Affine(weight=w.numpy(), bias=np.zeros(7, np.float32)),
                        torch.float32, torch.device("cpu"), 1e-4, "zero")
    act = (torch.rand(5, 20, generator=g) < 0.5).float()
    ref = (act.double() @ (w != 0).double().T).sum(1)
    assert torch.equal(aff.count(act), ref)
    # counts beyond float32's exact integer range fall back to float64 and stay exact
    big = torch.full((2, 20), 2.0**22)
    assert torch.equal(aff.count(big), (big.double() @ (w != 0).double().T).sum(1))


def _assert_same_result(a, b) -> None:
    assert torch.equal(a.logits, b.logits) and torch.equal(a.cum_logits, b.cum_logits)
    for key in ("spikes", "synops", "spike_trains"):
        da, db = getattr(a, key), getattr(b, key)
        assert da.keys() == db.keys() and da, key
        for n in da:
            assert torch.equal(da[n], db[n]), (key, n)
    assert {n: vars(s) for n, s in a.layers.items()} == {n: vars(s) for n, s in b.layers.items()}


@pytest.mark.parametrize("coding", ["binary", "analog", "static"])
def test_chunked_execution_is_bit_identical(coding):
    """Chunks of timesteps (neuron states carried across chunks, incl. CubaLIF synaptic current
    and LI) give exactly the unchunked result, for residual graphs too."""
    torch.manual_seed(0)
    model = build_model("resnet19", input_size=(8, 8), in_channels=2, T=4).eval()
    randomise_bn(model)
    cases = ((to_nir(model), (2, 8, 8), 4, [(0, 2), (2, 4)]),
             (_hand_graph(), (2, 6, 6), 7, [(0, 2), (2, 4), (4, 7)]))
    for graph, shape, T, chunks in cases:
        if coding == "static":
            x = (torch.rand(1, 8, *shape) * 2).expand(T, -1, *shape).contiguous()
        elif coding == "binary":
            x = (torch.rand(T, 8, *shape) < 0.4).float()
        else:
            x = torch.rand(T, 8, *shape) * 2
        sim = Simulator(graph)  # one simulator: its fan-out maps are computed once
        assert sim.plan_chunks(x) == (T, 8)  # small input: one chunk
        sim.chunk_bytes = None
        whole = sim(x, record=True)
        assert sum(whole.spike_totals().values()) > 0
        sim.chunk_bytes = 1  # automatic plan: 1 step per chunk, widened to >= 16 rows
        assert sim.plan_chunks(x) == (1, 8)
        from trt_nm.sim.planner import _time_chunks

        assert _time_chunks(T, 1, 8) == chunks
        _assert_same_result(sim(x, record=True), whole)
        _assert_same_result(sim(x, record=True, chunk_steps=3, chunk_batch=8), whole)


def test_time_chunks_keep_16_rows():
    from trt_nm.sim.planner import _time_chunks

    assert _time_chunks(20, 1, 64) == [(t, t + 1) for t in range(20)]
    assert _time_chunks(7, 1, 8) == [(0, 2), (2, 4), (4, 7)]
    assert _time_chunks(5, 1, 2) == [(0, 5)]
    assert _time_chunks(3, 10, 1) == [(0, 3)]


def test_chunk_arguments_validated():
    x = torch.rand(3, 2, 2, 6, 6)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(trt_nm.TrtNmError, match="chunk_steps"):
            Simulator(_hand_graph())(x, chunk_steps=bad)
        with pytest.raises(trt_nm.TrtNmError, match="chunk_batch"):
            Simulator(_hand_graph())(x, chunk_batch=bad)
    with pytest.raises(trt_nm.TrtNmError, match="chunk_bytes"):
        Simulator(_hand_graph(), chunk_bytes=0)
    with pytest.raises(trt_nm.TrtNmError, match="state_bytes"):
        Simulator(_hand_graph(), state_bytes=0)
