"""Loihi 2 (Lava fixed point) without the vendor venv: the integer arithmetic against hand
computation, netx's weight pipeline, encode, the model == simulate identity, integerize
grids, size limits, the netx file, and a tiny train -> integerize -> simulate run."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from trt_nm.chip import get_chip
from trt_nm.chip.base import ChipNet
from trt_nm.chip.loihi2 import (
    DELAY_PER_LAYER,
    DU,
    DV,
    MULTI_SPIKE,
    RESET,
    STATE_BITS,
    VTH_MAX,
    WEIGHT_BITS,
    Loihi2MLP,
    lava_weights,
    neuron_step,
)
from trt_nm.chip.train import ChipTrainConfig, train_chip
from trt_nm.errors import ConfigError

CHIP = get_chip("loihi2")


def _t(*v):
    return torch.tensor(v, dtype=torch.int64)


def _params(du=DU, dv=DV, vth=10):
    return {"du": _t(du), "dv": _t(dv), "vth": _t(vth)}


def test_constants():
    assert (STATE_BITS, WEIGHT_BITS, MULTI_SPIKE, RESET, DELAY_PER_LAYER) == (24, 8, False, "zero", 1)


def test_neuron_step_by_hand():
    # du = 4095: u is the input only (<< 6); dv = 2048: v halves toward zero
    st = {"u": _t(0, 0, 0), "v": _t(0, 0, 0)}
    st, s = neuron_step(st, _t(5, -3, 11), _params(vth=10))
    assert st["u"].tolist() == [320, -192, 704]
    assert s.tolist() == [0, 0, 1] and st["v"].tolist() == [320, -192, 0]  # 704 > 640: spike, reset
    st, s = neuron_step(st, _t(0, 0, 0), _params(vth=10))
    assert st["v"].tolist() == [160, -96, 0] and s.tolist() == [0, 0, 0]
    st = {"u": _t(0), "v": _t(-3)}
    st, _ = neuron_step(st, _t(0), _params())
    assert st["v"].tolist() == [-1]  # -1.5 rounds toward zero
    # spike strictly above vth << 6
    st, s = neuron_step({"u": _t(0), "v": _t(0)}, _t(10), _params(vth=10))
    assert s.tolist() == [0] and st["v"].tolist() == [640]


def test_neuron_step_current_decay_wrap_clip_bias():
    # du = 2047 -> the current keeps (4096 - 2048)/4096 = 1/2 of itself
    st, _ = neuron_step({"u": _t(1001), "v": _t(0)}, _t(0), {**_params(du=2047, dv=0, vth=VTH_MAX)})
    assert st["u"].tolist() == [500] and st["v"].tolist() == [500]  # dv = 0: no leak
    # u wraps into (-2^23, 2^23]; v is clipped to +-(2^23 - 1)
    st, s = neuron_step({"u": _t(0), "v": _t(0)}, _t(131072), _params(vth=VTH_MAX))
    assert st["u"].tolist() == [2 ** 23]  # exactly 2^23 is kept (Lava: wraps only above it)
    assert s.tolist() == [1]  # v clipped to 2^23 - 1 > 131071 << 6: spikes, reset to 0
    st, s = neuron_step({"u": _t(0), "v": _t(2 ** 23 - 1)}, _t(131072), _params(dv=0, vth=VTH_MAX))
    assert st["v"].tolist() == [0] and s.tolist() == [1]
    st, s = neuron_step({"u": _t(0), "v": _t(-(2 ** 23) + 1)}, _t(-131071), _params(dv=0))
    assert st["v"].tolist() == [-(2 ** 23) + 1] and s.tolist() == [0]  # clipped below
    st, _ = neuron_step({"u": _t(0), "v": _t(0)}, _t(131073), _params(vth=VTH_MAX))
    assert st["u"].tolist() == [131073 * 64 - 2 ** 24]
    st, _ = neuron_step({"u": _t(0), "v": _t(0)}, _t(0), {**_params(), "bias": _t(7 << 6)})
    assert st["v"].tolist() == [448]


@pytest.mark.parametrize("w,shift", [
    (np.array([[127, -128], [3, 0]]), 1),      # mixed, full int8 range
    (np.array([[10, -10], [1, 0]]), 4),        # small mixed weights are scaled up by 2^4
    (np.array([[4, 8], [12, 0]]), 4),          # excitatory, multiples of 4
])
def test_lava_weights_lossless_for_int8(w, shift):
    hw, s = lava_weights(w)
    assert s == shift
    assert np.array_equal(hw, w << s)  # netx's rescaling makes Lava's LSB truncation lossless


def test_lava_weights_lossy_and_refused_cases():
    # all non-positive with -128: netx scales to -256, Lava's inhibitory clip is -255, truncated
    hw, s = lava_weights(np.array([[-128, -3]]))
    assert s == 1 and hw.tolist() == [[-254, -6]]
    with pytest.raises(ConfigError, match="all weights are 0"):
        lava_weights(np.zeros((2, 2), np.int64))


def test_encode_rate_code_and_flush():
    x = torch.tensor([0.0, 0.5, 1.0, 0.26]).reshape(1, 1, 1, 2, 2).expand(8, 2, 1, 2, 2)
    e = CHIP.encode(x)
    assert e.dtype == torch.int64 and e.shape == (8 + CHIP.flush, 2, 1, 2, 2)
    assert e[8:].abs().sum() == 0 and set(e.unique().tolist()) <= {0, 1}
    assert e[:8].sum(0)[0, 0].flatten().tolist() == [0, 4, 8, 2]  # round(8 p) spikes
    assert e[:8, 0, 0, 0, 1].tolist() == [1, 0, 1, 0, 1, 0, 1, 0]  # evenly spread
    assert CHIP.input_steps(8) == 8 + CHIP.flush and CHIP.input_range() == (0, 1)


def _net(sizes, seed=0, vth=None):
    rng = np.random.default_rng(seed)
    L = len(sizes) - 1
    arrays = {f"w{i}": rng.integers(-128, 128, (sizes[i + 1], sizes[i])) for i in range(L)}
    arrays.update(vth=np.array(vth or [40] * L), du=np.full(L, DU), dv=np.full(L, DV))
    names = [f"h{i + 1}" for i in range(L - 1)] + ["out"]
    return ChipNet("loihi2", arrays, {"layers": names, "sizes": list(sizes), "flush": L})


def _reference(net, x):
    """Independent per-sample numpy loop of Lava's arithmetic (du = 4095, dv = 2048)."""
    L = len(net.meta["layers"])
    out = []
    for b in range(x.shape[1]):
        h = x[:, b].reshape(x.shape[0], -1).astype(np.int64)
        for i in range(L):
            w, vth = net.arrays[f"w{i}"], int(net.arrays["vth"][i])
            a = np.vstack([np.zeros((1, w.shape[0]), np.int64), h[:-1] @ w.T])
            v = np.zeros(w.shape[0], np.int64)
            s_all = []
            for t in range(len(a)):
                v = np.sign(v) * (np.abs(v * 2048) >> 12) + (a[t] << 6)
                v = np.clip(v, -(2 ** 23) + 1, 2 ** 23 - 1)
                s = v > (vth << 6)
                v[s] = 0
                s_all.append(s.astype(np.int64))
            h = np.stack(s_all)
        out.append(h)
    return np.stack(out, axis=1)


def test_simulate_matches_reference_and_delays():
    net = _net([30, 12, 5])
    x = (np.random.default_rng(1).random((9, 4, 30)) < 0.4).astype(np.int64)
    rec = CHIP.simulate(net, x)
    assert set(rec) == {"out", "layer:h1"}
    assert rec["out"].shape == (9, 4, 5) and rec["layer:h1"].shape == (9, 4, 12)
    assert np.array_equal(rec["out"], _reference(net, x))
    assert rec["layer:h1"][0].sum() == 0 and rec["out"][:2].sum() == 0  # one step per layer
    assert rec["out"].sum() > 0


def test_model_forward_equals_simulate():
    torch.manual_seed(0)
    x = CHIP.encode(torch.rand(8, 6, 1, 28, 28))
    model = CHIP.build((1, 28, 28), 10, (32,), seed=3)
    with torch.no_grad():
        h = model.spikes(x.float())
        out = model(x.float())
    net = CHIP.integerize(model)
    rec = CHIP.simulate(net, x.numpy())
    assert rec["layer:h1"].sum() > 0 and rec["out"].sum() > 0
    assert np.array_equal(rec["layer:h1"], h[0].numpy().astype(np.int64))
    assert np.array_equal(rec["out"], h[1].numpy().astype(np.int64))
    L = 2
    assert out.shape == (8, 6, 10)  # the aligned window out[L : L + T]
    assert torch.equal(out / 4.0, h[1][L:L + 8])


def test_integerize_grids():
    model = CHIP.build((1, 28, 28), 10, (16,), seed=0)
    with torch.no_grad():
        model.layers[0].weight.mul_(3.0)
    net = CHIP.integerize(model)
    for i in range(2):
        w = net.arrays[f"w{i}"]
        assert w.dtype == np.int64 and w.min() >= -128 and w.max() <= 127
        assert np.abs(w).max() == 127  # per-layer step max|w| / 127
    assert (0 <= net.arrays["vth"]).all() and (net.arrays["vth"] <= VTH_MAX).all()
    assert net.arrays["du"].tolist() == [DU, DU] and net.arrays["dv"].tolist() == [DV, DV]
    assert CHIP.check_graph_lines(net) == []


def test_check_model_and_graph_limits():
    assert CHIP.check_model(CHIP.build((1, 28, 28), 10, (64,)), (1, 28, 28)) == []
    deep = Loihi2MLP([784, 32, 32, 10], flush=CHIP.flush)
    assert any("flush steps" in line for line in CHIP.check_model(deep, (1, 28, 28)))
    huge = Loihi2MLP([1000, 1_100_000, 10], flush=2)
    lines = CHIP.check_model(huge, (1000,))
    assert any("per Loihi 2 chip" in line for line in lines)
    assert any("cores" in line for line in lines)
    bad = _net([10, 4, 3])
    bad.arrays["w0"] = bad.arrays["w0"] * 3
    bad.arrays["w1"] = np.zeros_like(bad.arrays["w1"])
    bad.arrays["vth"] = np.array([VTH_MAX + 1, 5])
    bad.arrays["dv"] = np.array([4096, 2048])
    lines = CHIP.check_graph_lines(bad)
    assert any("outside the 8-bit range" in x for x in lines)
    assert any("all weights are 0" in x for x in lines)
    assert any("17-bit" in x for x in lines)
    assert any("dv=4096" in x for x in lines)


def test_write_netx_layout(tmp_path):
    net = _net([20, 8, 4], vth=[33, 44])
    files = CHIP.write(net, tmp_path)
    assert list(files) == ["network.net"]
    with h5py.File(tmp_path / "network.net", "r") as f:
        lay = f["layer"]
        assert sorted(lay) == ["0", "1", "2"]
        assert lay["0/type"][0] == b"input" and lay["0/shape"][()].tolist() == [20]
        assert lay["1/type"][0] == b"dense" and lay["1/shape"][()].tolist() == [8]
        assert np.array_equal(lay["1/weight"][()], net.arrays["w0"])
        n = lay["2/neuron"]
        assert n["type"][0] == b"CUBA"
        assert (int(n["iDecay"][()]), int(n["vDecay"][()]), int(n["vThMant"][()])) == (DU + 1, DV, 44)
        assert lay["2"].attrs["name"] == "out"
    bad = _net([20, 8, 4])
    bad.arrays["w1"] = np.zeros_like(bad.arrays["w1"])
    with pytest.raises(ConfigError, match="all weights are 0"):
        CHIP.write(bad, tmp_path / "x")


def test_synops_counts_events_times_fanout():
    net = _net([6, 3, 2])
    net.arrays["w0"][:, 0] = 0
    x = np.zeros((3, 1, 6), np.int64)
    x[0, 0, :2] = 1
    rec = CHIP.simulate(net, x)
    nz1 = (net.arrays["w1"] != 0).sum(axis=0)
    want = 0 + int((net.arrays["w0"][:, 1] != 0).sum()) + int((rec["layer:h1"].sum((0, 1)) * nz1).sum())
    assert CHIP.synops(net, rec, x) == want


def test_tiny_train_integerize_simulate(tmp_path):
    cfg = ChipTrainConfig(target="loihi2", task=CHIP.task, epochs=2, batch_size=32,
                          train_limit=512, test_limit=200, out_dir=str(tmp_path))
    payload = train_chip(cfg, log=lambda *_: None)
    assert 0.0 <= payload["test_acc"] <= 100.0
    assert payload["test_acc"] > 30.0, payload["history"]  # well above chance (10 %)


# ---------------------------------------------------------------------- exporter (NIR graphs)
DT = 1e-4


def _graph(readout="LIF", zero=False, thr=1.0, pool=False):
    import nir

    rng = np.random.default_rng(0)

    def lif(n, t=1.0):
        tau = np.full(n, 2 * DT)
        return nir.LIF(tau=tau, r=tau / DT, v_leak=np.zeros(n), v_threshold=np.full(n, t),
                       v_reset=np.zeros(n))

    w1 = rng.normal(0, 0.5, (4, 8)).astype(np.float32) * (0 if zero else 1)
    nodes = {"input": nir.Input(input_type={"input": np.array([20])}),
             "fc0": nir.Affine(weight=rng.normal(0, 0.5, (8, 20)).astype(np.float32),
                               bias=np.zeros(8, np.float32)),
             "lif0": lif(8, thr), "fc1": nir.Linear(weight=w1),
             "lif1": lif(4) if readout == "LIF" else nir.LI(tau=np.full(4, 2 * DT), r=np.full(4, 2.0),
                                                           v_leak=np.zeros(4)),
             "output": nir.Output(output_type={"output": np.array([4])})}
    edges = [("input", "fc0"), ("fc0", "lif0"), ("lif0", "fc1"), ("fc1", "lif1"), ("lif1", "output")]
    if pool:
        nodes["input"] = nir.Input(input_type={"input": np.array([1, 4, 5])})
        nodes["pool"] = nir.SumPool2d(kernel_size=np.array([1, 1]), stride=np.array([1, 1]),
                                      padding=np.array([0, 0]))
        nodes["pool"].input_type = {"input": np.array([1, 4, 5])}
        nodes["pool"].output_type = {"output": np.array([1, 4, 5])}
        nodes["flat"] = nir.Flatten(input_type={"input": np.array([1, 4, 5])}, start_dim=0, end_dim=-1)
        edges = [("input", "pool"), ("pool", "flat"), ("flat", "fc0")] + edges[1:]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": DT, "reset": "zero", "producer": "trt_nm"})


@pytest.mark.parametrize("kw,constraint", [
    ({}, None),
    ({"pool": True}, "layer type"),        # netx: pool is not implemented
    ({"readout": "LI"}, "neuron model"),   # netx has no LI neuron
    ({"zero": True}, "weights"),           # netx cannot scale an all-zero layer
    ({"thr": 3000.0}, "threshold (vth)"),  # vth > 17 bits (Lava's CPU model does not check)
])
def test_exporter_checks_what_netx_rejects(kw, constraint):
    from trt_nm.exporters import get_exporter

    report = get_exporter("loihi2").check(_graph(**kw))
    found = {v.constraint for v in report.violations}
    assert found == (set() if constraint is None else {constraint}), report.text()


def test_exporter_writes_nir_and_netx(tmp_path):
    from trt_nm.exporters import get_exporter
    from trt_nm.exporters.loihi2 import netx_layers

    res = get_exporter("loihi2").export(_graph(), tmp_path / "g.nir")
    assert [p.name for p in res.paths] == ["g.nir", "g.net"]
    layers = netx_layers(res.graph)
    assert [r["type"] for r in layers] == ["input", "dense", "dense"]
    d0 = layers[1]
    assert np.abs(d0["weight"]).max() == 127 and d0["neuron"]["type"] == "CUBA"
    assert d0["neuron"]["iDecay"] == 4096 and d0["neuron"]["vDecay"] == 2048  # beta = 1/2
    with h5py.File(res.paths[1], "r") as f:
        assert f["layer/2/neuron/type"][0] == b"CUBA"
        assert f["layer/1/weight"].shape == (8, 20)
    assert [r["type"] for r in netx_layers(_graph(pool=True))][:3] == ["input", "pool", "flatten"]
