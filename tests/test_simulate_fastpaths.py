"""The simulator's fast paths are exact: window sums of spikes by strided adds, the fused
neuron update, batch pieces and time chunks, and work buffers reused across chunks, calls
and threads never leak into results."""

from __future__ import annotations

import threading

import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import randomise_bn

import trt_nm
from trt_nm.models import build_model, list_models
from trt_nm.neuron.lif import lif_step
from trt_nm.nir.io import to_nir
from trt_nm.sim.allocator import apply_from_env, retain_freed_memory
from trt_nm.sim.engine import Simulator
from trt_nm.sim.layers import _Pool
from trt_nm.sim.planner import _batch_pieces, _time_chunks

SIZES = {"mlp": (12, 12), "cnn-small": (12, 12), "vggsnn": (16, 16), "resnet19": (8, 8), "sew-resnet34": (32, 32)}


def _pool(kind: str, k, s, p) -> _Pool:
    node = getattr(nir, kind)(kernel_size=np.array(k), stride=np.array(s), padding=np.array(p))
    pool = _Pool("pool", node, torch.float32, torch.device("cpu"), summed=kind == "SumPool2d")
    pool.input_bound = 3.0  # e.g. the sum of three spike trains
    return pool


@pytest.mark.parametrize("kind", ["AvgPool2d", "SumPool2d"])
@pytest.mark.parametrize("k,s,p", [((2, 2), (2, 2), (0, 0)), ((3, 3), (3, 3), (0, 0)), ((3, 3), (2, 2), (1, 1)),
                                   ((2, 3), (1, 2), (1, 0)), ((1, 1), (1, 1), (0, 0)), ((5, 5), (5, 5), (0, 0)),
                                   ((4, 4), (4, 4), (2, 1))])
def test_window_sums_equal_torch_pooling(kind, k, s, p):
    """Integer inputs: strided-add window sums (then / area, as torch divides) equal torch's
    pooling bit for bit, for odd sizes, strides, padding and non-square windows."""
    torch.manual_seed(0)
    pool = _pool(kind, k, s, p)
    x = torch.randint(0, 4, (5, 3, 17, 13)).float()
    ref = F.avg_pool2d(x, k, s, p, count_include_pad=True, divisor_override=1 if kind == "SumPool2d" else None)
    got = pool.run(x, 1)
    assert got.shape == ref.shape and torch.equal(got, ref)
    assert torch.equal(pool.events(x), F.avg_pool2d(x, k, s, p, divisor_override=1))
    pool.input_bound = None  # unknown input: torch's own kernel
    assert torch.equal(pool.run(x, 1), ref)


def test_window_sums_only_for_integer_inputs():
    """The fast path is taken only when the simulator proved the input integer-valued."""
    torch.manual_seed(0)
    model = build_model("cnn-small", input_size=(12, 12), in_channels=2, T=2).eval()
    sim = Simulator(to_nir(model))
    pools = [n for n in sim.order if sim.nodes[n].kind == "AvgPool2d"]
    assert pools and all(sim.nodes[n].input_bound == 1.0 for n in pools)  # fed by LIF spikes
    x = torch.rand(2, 3, 4, 6, 6) * 3  # analogue values: torch's kernel
    pool = _pool("AvgPool2d", (3, 3), (3, 3), (0, 0))
    pool.input_bound = None
    assert torch.equal(pool.run(x.flatten(0, 1), 1), F.avg_pool2d(x.flatten(0, 1), 3, 3))


@pytest.mark.parametrize("beta", [0.5, 0.25, 0.3, 0.9])
@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_neuron_loop_equals_canonical_lif(beta, reset):
    """The simulator's in-place neuron loop (fused x + beta*v when beta is a power of two,
    v = h - h*s reset) gives the canonical LIF's spikes and membrane, step for step."""
    torch.manual_seed(1)
    cfg = trt_nm.NeuronConfig(beta=beta, threshold=1.0, reset=reset)
    T, B, n = 12, 7, 33
    x = torch.randn(T, B, n) * 1.5
    x[3, 0, :5] = 0.0
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([n])),
               "lif": nir.LIF(tau=np.full(n, 1e-4 / (1 - beta)), r=np.full(n, 1 / (1 - beta)),
                              v_leak=np.zeros(n), v_threshold=np.ones(n)),
               "output": nir.Output(output_type=np.array([n]))},
        edges=[("input", "lif"), ("lif", "output")],
        metadata={"dt": 1e-4, "reset": reset},
    )
    res = Simulator(graph, chunk_bytes=None)(x, record=True, count_ops=False)
    v = torch.zeros(B, n)
    for t in range(T):
        s, v = lif_step(x[t], v, cfg)
        assert torch.equal(res.spike_trains["lif"][t], s), t
        assert torch.equal(res.logits[t], s)


@pytest.mark.parametrize("arch", list_models())
def test_batch_pieces_and_chunks_match_backend(arch):
    """Tiny budgets force batch pieces and several time chunks: every zoo architecture still
    reproduces the backend's spikes exactly and its logits within 1e-5."""
    torch.manual_seed(2)
    size = SIZES[arch]
    T, B = 4, 21
    model = build_model(arch, input_size=size, in_channels=2, T=T).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.2, 0.2)
            m.bias.data.uniform_(-0.1, 0.4)
    x = (torch.rand(T, B, 2, *size) < 0.4).float() * 1.5
    spikes: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: spikes.__setitem__(n.replace(".", "_"), o.detach()))
             for n, m in model.neurons()]
    with torch.no_grad():
        ref = model(x)
    for h in hooks:
        h.remove()
    sim = Simulator(to_nir(model), chunk_bytes=1, state_bytes=1)
    steps, samples = sim.plan_chunks(x)
    assert samples == 4 and _time_chunks(T, steps, samples) == [(0, T)]  # >= 16 rows: 4 x 4
    res = sim(x, record=True)
    whole = Simulator(to_nir(model), chunk_bytes=None)(x, record=True)
    assert (res.logits - ref).abs().max().item() <= 1e-5
    assert torch.equal(res.logits, whole.logits)
    for name, s in spikes.items():
        assert torch.equal(res.spike_trains[name], s), name
    for key in ("spikes", "synops"):
        a, b = getattr(res, key), getattr(whole, key)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_plan_rules():
    assert _batch_pieces(21, 4, 4) == [(0, 4), (4, 8), (8, 12), (12, 16), (16, 21)]  # 1x4 rows: joins
    assert _batch_pieces(64, 16, 1) == [(0, 16), (16, 32), (32, 48), (48, 64)]
    assert _batch_pieces(5, 8, 3) == [(0, 5)]
    assert _time_chunks(20, 8, 10) == [(0, 7), (7, 14), (14, 20)]  # even chunks
    model = build_model("cnn-small", T=20).eval()
    sim = Simulator(to_nir(model))  # defaults: 2 MiB per piece-step and thread, 32 MiB per chunk
    x = torch.zeros(20, 64, 1, 28, 28)
    steps, samples = sim.plan_chunks(x)
    row = 32 * 28 * 28 * 4
    assert samples * row <= 2 * 2**20 * torch.get_num_threads() and steps * samples * row <= 32 * 2**20 and steps * samples >= 16
    assert Simulator(to_nir(model), state_bytes=None).plan_chunks(x)[1] == 64


def _alias_graph():
    """LIF -> Flatten -> Output: the graph's output IS (a view of) the neuron's spikes."""
    return nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([2, 3, 3])),
               "lif": nir.LIF(tau=np.full((2, 3, 3), 2e-4), r=np.full((2, 3, 3), 2.0),
                              v_leak=np.zeros((2, 3, 3)), v_threshold=np.ones((2, 3, 3))),
               "flat": nir.Flatten(input_type={"input": np.array([2, 3, 3])}, start_dim=0, end_dim=-1),
               "output": nir.Output(output_type=np.array([18]))},
        edges=[("input", "lif"), ("lif", "flat"), ("flat", "output")],
        metadata={"dt": 1e-4},
    )


def _firing_cnn():
    model = build_model("cnn-small", input_size=(8, 8), T=3).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.bias.data.uniform_(0.0, 0.8)
    return to_nir(model)


@pytest.mark.parametrize("graph_fn", [_alias_graph, _firing_cnn])
def test_results_never_alias_work_buffers(graph_fn):
    """A second call (and more chunks) reuse the work buffers; earlier results stay intact."""
    torch.manual_seed(3)
    graph = graph_fn()
    sim = Simulator(graph, chunk_bytes=1, state_bytes=1)
    shape = sim.input_shape
    x1 = torch.rand(3, 20, *shape) * 3
    x2 = torch.rand(3, 20, *shape) * 3
    r1 = sim(x1, record=True)
    assert sum(r1.spike_totals().values()) > 0
    saved = (r1.logits.clone(), {k: v.clone() for k, v in r1.spike_trains.items()})
    r2 = sim(x2, record=True)
    r1b = sim(x1)
    assert torch.equal(r1.logits, saved[0]) and torch.equal(r1b.logits, saved[0])
    assert all(torch.equal(r1.spike_trains[k], v) for k, v in saved[1].items())
    assert any(not torch.equal(r2.spike_trains[k], r1.spike_trains[k]) for k in r1.spike_trains)
    sim.clear_buffers()
    assert torch.equal(sim(x1).logits, saved[0])


def test_threads_share_one_simulator():
    torch.manual_seed(4)
    model = build_model("cnn-small", input_size=(12, 12), T=3).eval()
    sim = Simulator(to_nir(model), chunk_bytes=1, state_bytes=1)
    xs = [torch.rand(3, 20, 1, 12, 12) * 3 for _ in range(4)]
    serial = [sim(x).logits for x in xs]
    out: dict[int, torch.Tensor] = {}
    threads = [threading.Thread(target=lambda i=i: out.__setitem__(i, sim(xs[i]).logits)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(torch.equal(out[i], serial[i]) for i in range(4))


def test_allocator_policy(monkeypatch):
    with pytest.raises(ValueError):
        retain_freed_memory(mmap_bytes=2**30)
    ok = retain_freed_memory()
    assert ok is retain_freed_memory()  # idempotent
    monkeypatch.setenv("TRT_NM_MALLOC", "default")
    assert apply_from_env() is False


def test_static_input_detection_is_bitwise():
    from trt_nm.sim.frames import _frames_identical

    frame = torch.rand(5, 3)
    assert _frames_identical(frame.expand(4, 5, 3).contiguous())
    assert not _frames_identical(frame.unsqueeze(0))  # one step: nothing to reuse
    nan = frame.clone()
    nan[0, 0] = float("nan")
    assert _frames_identical(torch.stack([nan, nan, nan]))  # same bits
    zero = torch.zeros(3, 7)  # 7 floats: compared as 4-byte words
    neg = zero.clone()
    neg[2, 6] = -0.0
    assert _frames_identical(zero) and not _frames_identical(neg)
    late = frame.expand(6, 5, 3).contiguous()
    late[5, 4, 2] += 1.0  # differs only in the last element of the last frame
    assert not _frames_identical(late)
    assert _frames_identical(frame.double().expand(3, 5, 3).contiguous())
    assert _frames_identical(frame.expand(4, 5, 3))  # stride 0 over time: identical unseen
    big = torch.rand(64, 4096).expand(3, 64, 4096).contiguous()
    big[2, 40, 1000] += 1.0  # found by the spread probe or the full comparison
    assert not _frames_identical(big)


def test_expanded_direct_coding_equals_materialised_frames():
    """An input expanded over time (``x.expand(T, ...)``, stride 0) runs the static prefix
    like the materialised frames and gives the same bits, in the full run and executed exit."""
    from trt_nm.early_exit import ExitRule

    torch.manual_seed(3)
    graph = to_nir(build_model("mlp", input_size=(6, 6), in_channels=1, T=5).eval())
    frame = torch.rand(24, 1, 6, 6) * 3
    sim = Simulator(graph)
    a, b = sim(frame.expand(5, *frame.shape)), sim(frame.expand(5, *frame.shape).contiguous())
    assert torch.equal(a.logits, b.logits) and all(torch.equal(a.spikes[k], b.spikes[k]) for k in a.spikes)
    rule = ExitRule("confidence", 0.3)
    ea, eb = sim.run_exit(frame.expand(5, *frame.shape), rule), sim.run_exit(frame.expand(5, *frame.shape).contiguous(), rule)
    assert torch.equal(ea.exit_steps, eb.exit_steps) and torch.equal(ea.predictions, eb.predictions)


@pytest.mark.parametrize("arch", list_models())
def test_simulator_equals_exported_network_bitwise(arch):
    """Against the network the NIR file describes (``from_nir`` on every backend) the
    simulator is bit-identical -- logits and every spike -- with realistic (non-dyadic) BN and
    batch pieces. (Against the original unfolded model, BN folding can round differently.)"""
    torch.manual_seed(5)
    size = SIZES[arch]
    T, B = 4, 20
    model = build_model(arch, input_size=size, in_channels=2, T=T).eval()
    randomise_bn(model)
    graph = to_nir(model)
    x = (torch.rand(T, B, 2, *size) < 0.35).float() * 1.5
    res = Simulator(graph, state_bytes=2**14)(x, record=True)
    backends = trt_nm.list_backends() if arch in ("mlp", "cnn-small", "resnet19") else ["torch"]
    for backend in backends:
        net = trt_nm.from_nir(graph, backend=backend).eval()
        spikes: dict[str, torch.Tensor] = {}
        hooks = [m.register_forward_hook(lambda mod, i, o, n=n, d=spikes: d.__setitem__(n, o.detach().clone()))
                 for n, m in net.neurons()]
        with torch.no_grad():
            out = net(x)
        for h in hooks:
            h.remove()
        assert torch.equal(out, res.logits), backend
        assert spikes.keys() == res.spike_trains.keys()
        for name, s in spikes.items():
            assert torch.equal(res.spike_trains[name], s), (backend, name)
        assert sum(float(s.sum()) for s in spikes.values()) > 0


@pytest.mark.parametrize("arch", list_models())
@pytest.mark.parametrize("backend", ["torch", "snntorch"])
def test_fold_batchnorm_is_the_exact_pytorch_twin(arch, backend):
    """Evaluating without autograd, a zoo model uses the export's folded BatchNorm arithmetic
    (trt_nm.models.bn_fold), and ``fold_batchnorm(model)`` does in every mode: the simulator reproduces
    both models' logits and every spike bit for bit, with realistic BN. With autograd the
    original model runs the differentiable ``bn(conv(x))`` (close, not bitwise)."""
    if backend != "torch" and arch in ("vggsnn", "sew-resnet34"):
        pytest.skip("large nets on the torch backend only")
    torch.manual_seed(6)
    size = SIZES[arch]
    T, B = 4, 20
    model = build_model(arch, backend=backend, input_size=size, in_channels=2, T=T).eval()
    randomise_bn(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    twin = trt_nm.fold_batchnorm(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # original untouched
    x = (torch.rand(T, B, 2, *size) < 0.35).float() * 1.5
    spikes: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: spikes.__setitem__(n.replace(".", "_"), o.detach().clone()))
             for n, m in twin.neurons()]
    with torch.no_grad():
        out = twin(x)
        orig = model(x)
    with torch.enable_grad():
        unfolded = model(x)
        twin_grad = twin(x)
    for h in hooks:
        h.remove()
    res = Simulator(to_nir(model), state_bytes=2**14)(x, record=True)
    assert torch.equal(out, res.logits) and torch.equal(orig, res.logits)
    assert torch.equal(twin_grad.detach(), res.logits)  # the twin is folded with autograd too
    assert (unfolded.detach() - orig).abs().max().item() <= 1e-4
    for name, s in spikes.items():
        assert torch.equal(res.spike_trains[name], s), name
    assert sum(float(s.sum()) for s in spikes.values()) > 0
