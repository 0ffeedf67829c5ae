"""Xylo Audio 2 (trt_nm.chip.xylo): XyloSim's integer arithmetic, the hardware-aware model, the
vendor files and the mapper-parity checks of exporters/xylo.py (no vendor venv needed)."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch

from trt_nm.chip import get_chip
from trt_nm.chip.base import ChipNet
from trt_nm.chip.train import default_config, train_chip
from trt_nm.chip.xylo import (
    FLUSH_STEPS,
    LOGIT_SCALE,
    MAX_SPIKES_HIDDEN,
    STATE_MAX,
    STATE_MIN,
    XyloNet,
    deliver,
    neuron_step,
)
from trt_nm.exporters import get_exporter

CHIP = get_chip("xylo")
DT = 1e-3
#: the keyword arguments of rockpool 3.1.0's syns61201.XyloSim.from_specification (minus aliases,
#: verify_config, output_mode: not arrays / left at their defaults)
FROM_SPEC_KEYS = {"weights_in", "weights_out", "weights_rec", "dash_mem", "dash_mem_out", "dash_syn",
                  "dash_syn_2", "dash_syn_out", "threshold", "threshold_out", "bias", "bias_out",
                  "weight_shift_in", "weight_shift_rec", "weight_shift_out", "dt"}


def _t(*v):
    return torch.tensor(v, dtype=torch.int64)


def _p(ds, dm, thr, max_spikes=MAX_SPIKES_HIDDEN):
    return {"dash_syn": _t(ds), "dash_mem": _t(dm), "threshold": _t(thr), "max_spikes": max_spikes}


# ------------------------------------------------------------------ integer arithmetic
def test_neuron_step_hand_computed():
    # i = 10 + 7 = 17; decay(17, 1) = 8 -> i = 9; decay(100, 2) = 25: dv = 9 - 25 = -16 -> v = 84;
    # 84 // 20 = 4 spikes (multi-spike), v = 84 - 80 = 4
    st, n = neuron_step({"i": _t(10), "v": _t(100)}, _t(7), _p(1, 2, 20))
    assert (st["i"].item(), st["v"].item(), n.item()) == (9, 4, 4)


def test_decay_rounds_down_and_by_at_least_one_lsb():
    # negative values shift toward -inf (-3 >> 2 = -1), small values still decay by one LSB
    st, n = neuron_step({"i": _t(-3), "v": _t(1)}, _t(0), _p(2, 4, 100))
    assert st["i"].item() == -2          # -3 - (-1)
    assert st["v"].item() == 1 - 1 + -2  # decay(1, 4) = 1 (minimum), then + i
    st, _ = neuron_step({"i": _t(0), "v": _t(-1)}, _t(0), _p(1, 4, 100))
    assert st["v"].item() == 0           # decay(-1, 4) = -1 -> v = 0
    st, _ = neuron_step({"i": _t(-40), "v": _t(-17)}, _t(0), _p(3, 3, 100))
    assert st["i"].item() == -40 - (-5)                 # -40 >> 3 = -5
    assert st["v"].item() == -17 - (-3) + (-35)         # -17 >> 3 = -3


def test_spike_caps_and_saturation():
    # i = 30000 - 15000; dv = 15000 - decay(32000, 15) = 14999; v = sat(46999) = 32767; 31 spikes max
    st, n = neuron_step({"i": _t(0), "v": _t(32000)}, _t(30000), _p(1, 15, 1))
    assert st["i"].item() == 15000
    assert n.item() == 31 and st["v"].item() == STATE_MAX - 31
    st, n = neuron_step({"i": _t(0), "v": _t(100)}, _t(0), _p(1, 1, 10, max_spikes=1))
    assert n.item() == 1 and st["v"].item() == 50 - 10           # output neurons: one spike/step
    st, _ = neuron_step({"i": _t(STATE_MIN), "v": _t(STATE_MIN)}, _t(-5), _p(1, 1, 10))
    assert st["i"].item() >= STATE_MIN and st["v"].item() == STATE_MIN


def test_delivery_saturates_in_xylosim_order():
    i = torch.tensor([[32000]], dtype=torch.int64)
    w = torch.tensor([[1000], [-1000]], dtype=torch.int64)
    # pre 0 first: 33000 -> 32767, then -1000 -> 31767 (a plain sum would give 32000)
    assert deliver(i, _t(1, 1)[None], w, 15).item() == 31767 - 32000
    # the other order does not saturate
    assert deliver(i, _t(1, 1)[None], w.flip(0), 15).item() == 0
    # counts are capped (inputs: 15 events per step)
    assert deliver(torch.zeros(1, 1, dtype=torch.int64), _t(20, 0)[None], w, 15).item() == 15000


# ------------------------------------------------------------------ model == simulate
def _random_model(hidden, seed=0):
    m = CHIP.build((16,), 8, hidden, seed=seed)
    with torch.no_grad():
        for layer in m.hidden:
            layer.log_threshold.copy_(torch.log(torch.rand(layer.n_out) * 600 + 100))
    return m


@pytest.mark.parametrize("hidden", [(48,), (24, 20)])
def test_simulate_equals_model_forward(hidden):
    m = _random_model(hidden)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 16, (10, 6, 16), generator=g)
    net = CHIP.integerize(m)
    rec = CHIP.simulate(net, x.numpy())
    with torch.no_grad():
        v, spikes = m.run(x.float())
        logits = m(x.float())
    assert np.array_equal(v.numpy().astype(np.int64), rec["out"])
    hid = torch.cat(spikes[:-1], dim=2).numpy().astype(np.int64)
    assert np.array_equal(hid, rec["layer:hidden"]) and hid.sum() > 0
    assert np.array_equal(spikes[-1].numpy().astype(np.int64), rec["layer:out_spikes"])
    D = len(hidden)
    assert logits.shape == (10 - D, 6, 8)
    assert np.all(rec["out"][:D] == 0)  # nothing reaches the outputs before the delay
    assert torch.allclose(logits / LOGIT_SCALE, v[D:])


def test_model_has_gradients():
    m = _random_model((32,))
    x = torch.randint(0, 16, (8, 4, 16)).float()
    m(x).sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert m.hidden[0].weight.grad.abs().sum() > 0 and m.readout.weight.grad.abs().sum() > 0


# ------------------------------------------------------------------ encode, grids, limits
def test_encode_blocks_and_flush():
    x = torch.zeros(5, 3, 1, 28, 28)
    x[:, 0, 0, :7, :7] = 1.0          # block 0 full
    x[:, 1, 0, 21:, 21:] = 0.5        # block 15 half -> 7.5 -> 8 (round half to even: 8)
    e = CHIP.encode(x)
    assert e.dtype == torch.int64 and e.shape == (5 + FLUSH_STEPS, 3, 16)
    assert CHIP.input_steps(5) == 5 + FLUSH_STEPS
    assert e[:5, 0, 0].eq(15).all() and e[:5, 0, 1:].eq(0).all()
    assert e[:5, 1, 15].eq(8).all()
    assert e[5:].eq(0).all() and e.min() >= 0 and e.max() <= 15


def test_integerize_grids():
    m = _random_model((24, 20))
    net = CHIP.integerize(m)
    for nm in net.meta["layers"]:
        w = net.arrays[f"{nm}.weight"]
        assert w.dtype == np.int64 and np.abs(w).max() <= 127
        assert np.all(np.abs(w).max(axis=0) == 127)  # channel_quantize then scales by exactly 1
        thr = net.arrays[f"{nm}.threshold"]
        assert thr.min() >= 1 and thr.max() <= STATE_MAX
    assert net.arrays["out.threshold"].tolist() == [STATE_MAX] * 8
    assert CHIP.check_graph_lines(net) == []
    bad = ChipNet("xylo", dict(net.arrays), net.meta)
    bad.arrays["h0.weight"] = bad.arrays["h0.weight"] // 2
    assert any("127" in line for line in CHIP.check_graph_lines(bad))


def test_check_model_limits():
    assert CHIP.check_model(CHIP.build((16,), 8, (64,)), (16,)) == []
    assert any("input channels 17" in s for s in CHIP.check_model(CHIP.build((17,), 8, (8,)), (17,)))
    assert any("hidden neurons 1001" in s for s in CHIP.check_model(CHIP.build((16,), 8, (1001,)), (16,)))
    assert any("output neurons 9" in s for s in CHIP.check_model(CHIP.build((16,), 9, (8,)), (16,)))
    assert any("delay" in s for s in CHIP.check_model(CHIP.build((16,), 8, (8, 8, 8)), (16,)))
    assert any("hidden layer" in s for s in CHIP.check_model(CHIP.build((16,), 8, ()), (16,)))


# ------------------------------------------------------------------ vendor files
def test_write_spec_and_nir(tmp_path):
    net = CHIP.integerize(_random_model((24, 20)))
    files = CHIP.write(net, tmp_path)
    assert set(files) == {"spec.npz", "network.nir"}
    with np.load(tmp_path / "spec.npz", allow_pickle=False) as z:
        spec = {k: z[k] for k in z.files}
    assert set(spec) == FROM_SPEC_KEYS
    assert spec["weights_in"].shape == (16, 44, 1) and spec["weights_rec"].shape == (44, 44, 1)
    assert spec["weights_out"].shape == (44, 8)
    assert np.array_equal(spec["weights_rec"][:24, 24:, 0], net.arrays["h1.weight"])
    assert not spec["weights_rec"][24:].any() and not spec["weights_out"][:24].any()
    assert not spec["bias"].any() and spec["dash_syn"].min() >= 1
    g = nir.read(tmp_path / "network.nir")
    assert {type(n).__name__ for n in g.nodes.values()} == {"Input", "Output", "Linear", "CubaLIF"}
    assert "input" in g.nodes and "output" in g.nodes
    lif = g.nodes["h0_lif"]
    assert np.allclose(lif.tau_mem / (1 + lif.r), DT)
    assert np.allclose(np.log2(lif.tau_syn / DT), net.arrays["h0.dash_syn"])
    assert np.array_equal(g.nodes["out_lif"].v_threshold, net.arrays["out.threshold"])
    # the file trt_nm writes passes trt_nm's own Xylo check
    assert get_exporter("xylo").check(g).fits
    assert not list(tmp_path.glob(".spec-*"))  # atomic write left no temp file


def test_simulate_rejects_bad_networks():
    net = CHIP.integerize(_random_model((8,)))
    with pytest.raises(Exception, match="channels"):
        CHIP.simulate(net, np.zeros((3, 2, 15), np.int64))
    bad = ChipNet("xylo", dict(net.arrays), net.meta)
    bad.arrays["h0.threshold"] = np.zeros(8, np.int64)
    with pytest.raises(Exception, match="thresholds"):
        CHIP.simulate(bad, np.zeros((3, 2, 16), np.int64))


# ------------------------------------------------------------------ check parity (ours only)
def lif(n, beta=0.75):
    tau = np.full(n, DT / (1 - beta))
    return nir.LIF(tau=tau, r=tau / DT, v_leak=np.zeros(n), v_threshold=np.ones(n), v_reset=np.zeros(n))


def xylo_graph(n_in=16, hidden=(64,), n_out=8, bias=False, affine_readout=False, cuba=None, seed=0):
    """Input -> (Affine -> LIF)* -> [Affine] -> Output; ``cuba = (tau_syn, tau_mem)`` makes the
    first neuron layer a CubaLIF."""
    rng = np.random.default_rng(seed)
    nodes = {"input": nir.Input(input_type={"input": np.array([n_in])})}
    edges, prev, width = [], "input", n_in
    sizes = list(hidden) + ([] if affine_readout else [n_out])
    for i, h in enumerate(sizes):
        w = rng.normal(0, 1 / np.sqrt(width), (h, width)).astype(np.float32)
        b = rng.normal(0, 0.1, h) if bias and i == 0 else np.zeros(h)
        nodes[f"fc{i}"] = nir.Affine(weight=w, bias=b.astype(np.float32))
        if cuba and i == 0:
            nodes[f"lif{i}"] = nir.CubaLIF(tau_syn=np.full(h, cuba[0]), tau_mem=np.full(h, cuba[1]), r=np.ones(h),
                                           v_leak=np.zeros(h), v_threshold=np.ones(h), w_in=np.ones(h))
        else:
            nodes[f"lif{i}"] = lif(h)
        edges += [(prev, f"fc{i}"), (f"fc{i}", f"lif{i}")]
        prev, width = f"lif{i}", h
    if affine_readout:
        nodes["ro"] = nir.Affine(weight=rng.normal(0, 1, (n_out, width)).astype(np.float32),
                                 bias=np.zeros(n_out, np.float32))
        edges.append((prev, "ro"))
        prev = "ro"
    nodes["output"] = nir.Output(output_type={"output": np.array([n_out])})
    edges.append((prev, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": DT, "reset": "subtract"})


#: name -> (graph, words our diagnosis must contain); shared with tests/test_vendor_xylo.py
PLANTED = {
    "affine_readout": (lambda: xylo_graph(affine_readout=True), "directly from neurons"),
    "bias": (lambda: xylo_graph(bias=True), "not transferred"),
    "hidden_1001": (lambda: xylo_graph(hidden=(1001,)), "hidden neurons"),
    "outputs_9": (lambda: xylo_graph(n_out=9), "8 output channels"),
    "inputs_17": (lambda: xylo_graph(n_in=17), "16 input channels"),
    "tau_syn_eq_dt": (lambda: xylo_graph(cuba=(DT, 4 * DT)), "cannot be converted to a dash"),
    "tau_mem_eq_dt": (lambda: xylo_graph(cuba=(2 * DT, DT)), "cannot be converted to a dash"),
    "one_neuron_layer": (lambda: xylo_graph(hidden=()), "at least two layers"),
}


def test_fitting_graphs_pass():
    ex = get_exporter("xylo")
    assert ex.check(xylo_graph()).fits
    assert ex.check(xylo_graph(hidden=(32, 16))).fits
    assert ex.check(xylo_graph(cuba=(2 * DT, 8 * DT))).fits


@pytest.mark.parametrize("name", sorted(PLANTED))
def test_planted_violation_is_reported_with_fix(name):
    make, words = PLANTED[name]
    report = get_exporter("xylo").check(make())
    assert not report.fits
    msgs = [v.message() for v in report.violations]
    assert any(words in m and "--target xylo" in m for m in msgs), msgs


def test_non_power_of_two_tau_is_refused():
    report = get_exporter("xylo").check(xylo_graph(cuba=(3 * DT, 4 * DT)))
    assert any("bit-shift dash" in v.message() and v.constraint == "tau_syn" for v in report.violations)


def test_export_writes_rockpool_form(tmp_path):
    from trt_nm.exporters.xylo import rockpool_graph

    g = rockpool_graph(xylo_graph(hidden=(32,)))
    kinds = {n: type(v).__name__ for n, v in g.nodes.items()}
    assert kinds["fc0"] == "Linear" and kinds["lif0"] == "CubaLIF" and kinds["lif1"] == "CubaLIF"
    lif0 = g.nodes["lif0"]
    assert np.allclose(lif0.tau_mem / (1 + lif0.r), DT) and np.allclose(lif0.tau_mem, 4 * DT)
    assert np.allclose(lif0.tau_syn, 2 * DT) and np.array_equal(lif0.v_threshold, np.ones(32))
    with pytest.raises(Exception, match="subtract"):
        rockpool_graph(nir.NIRGraph(nodes=g.nodes, edges=g.edges, metadata={"dt": DT, "reset": "zero"}))


# ------------------------------------------------------------------ train smoke
def test_tiny_train_integerize_simulate(tmp_path):
    cfg = default_config("xylo", epochs=1, train_limit=128, test_limit=64, batch_size=32,
                         out_dir=str(tmp_path), hidden=(16,))
    payload = train_chip(cfg, log=lambda *_: None)
    assert 0.0 <= payload["test_acc"] <= 100.0 and (tmp_path / "last.pt").is_file()
    model = CHIP.build((16,), 8, (16,), seed=0)
    model.load_state_dict(payload["model"])
    assert isinstance(model, XyloNet)
    x = CHIP.encode(torch.rand(CHIP.task.T, 4, 1, 28, 28))
    out = CHIP.simulate(CHIP.integerize(model), x.numpy())["out"]
    assert out.shape == (CHIP.task.T + FLUSH_STEPS, 4, 8)
    assert CHIP.predict(out).shape == (4,)


def test_synops_count_events_times_nonzero_fanout():
    m = _random_model((24, 20), seed=3)
    net = CHIP.integerize(m)
    net.arrays["h0.weight"][::2] = 0  # half the input channels connect nowhere
    x = np.random.default_rng(0).integers(0, 16, (6, 3, 16))
    rec = CHIP.simulate(net, x)
    h = rec["layer:hidden"]
    w0, w1, wo = (net.arrays[f"{n}.weight"] for n in ("h0", "h1", "out"))
    want = (x.sum((0, 1)) * (w0 != 0).sum(1)).sum()
    want += (h[..., :24].sum((0, 1)) * (w1 != 0).sum(1)).sum()
    want += (h[..., 24:].sum((0, 1)) * (wo != 0).sum(1)).sum()
    assert CHIP.synops(net, rec, x) == want
    assert x[:, :, 0].sum() > 0  # the zeroed channels did fire: their events cost nothing
