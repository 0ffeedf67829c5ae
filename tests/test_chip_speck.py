"""Speck (sinabs DYNAP-CNN) chip: integer arithmetic, model == simulation, grids, limits, checks.

Fast: no vendor venv (tests/test_vendor_speck.py runs sinabs). ``planted_graph`` builds the
NIR graphs with one design-rule violation each that the vendor test also hands to sinabs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trt_nm.chip import ChipNet, get_chip
from trt_nm.chip.speck import (
    INPUT_MAX,
    MULTI_SPIKE,
    RESET,
    discretization_scale,
    is_fixed_point,
    neuron_step,
)
from trt_nm.chip.speck_cores import assign_cores, kernel_memory, layer_problems, neuron_memory
from trt_nm.exporters import get_exporter
from trt_nm.exporters.nir104 import schema_problems, write_nir104

CHIP = get_chip("speck")
IN = (2, 34, 34)


# ---------------------------------------------------------------------- helpers (shared)
def spec_chain(layers, in_shape=IN):
    """Layer specs from ``[(kind, c_out, k, stride, padding, pool)]`` (dense: kind, c_out)."""
    specs, shape = [], tuple(in_shape)
    for i, lay in enumerate(layers):
        kind, c_out = lay[0], lay[1]
        if kind == "dense":
            k, s, p, pool = shape[1], 1, 0, 1
            out = (c_out, 1, 1)
        else:
            k, s, p, pool = lay[2:]
            out = (c_out, (shape[1] + 2 * p - k) // s + 1, (shape[2] + 2 * p - k) // s + 1)
        specs.append({"name": f"l{i}", "kind": kind, "in_shape": list(shape), "out_shape": list(out),
                      "kernel": k, "stride": s, "padding": p, "pool": pool})
        shape = (out[0], out[1] // pool, out[2] // pool)
    return specs


def random_net(layers, seed=0, in_shape=IN, thr_range=(20, 400)) -> ChipNet:
    """A random integer Speck net on sinabs' grid (each layer has a weight of 127 or -128)."""
    rng = np.random.default_rng(seed)
    arrays = {}
    specs = spec_chain(layers, in_shape)
    for sp in specs:
        c_in, c_out, k = sp["in_shape"][0], sp["out_shape"][0], sp["kernel"]
        shape = (c_out, c_in * k * k) if sp["kind"] == "dense" else (c_out, c_in, k, k)
        w = rng.integers(-40, 60, shape)
        w.flat[rng.integers(w.size)] = rng.choice([127, -128])
        arrays[f"{sp['name']}.weight"] = w.astype(np.int64)
        arrays[f"{sp['name']}.threshold"] = np.asarray(rng.integers(*thr_range), dtype=np.int64)
    return ChipNet("speck", arrays, {"layers": specs, "device": "speck2fdevkit", "in_shape": list(in_shape)})


BASE = [("conv", 8, 3, 2, 0, 2), ("conv", 16, 3, 1, 0, 1), ("dense", 10)]


def planted_graph(kind: str):
    """A NIR graph (nir >= 1.0.5 objects) that fits Speck (``"ok"``) or breaks one rule."""
    import nir

    layers = {
        "neuron_memory": [("conv", 128, 3, 1, 0, 2), ("dense", 10)],
        "kernel_memory": [("conv", 8, 3, 2, 0, 2), ("conv", 512, 5, 1, 0, 1), ("dense", 10)],
        "too_many_layers": [("conv", 8, 3, 2, 0, 2)] + [("conv", 8, 1, 1, 0, 1)] * 8 + [("dense", 10)],
    }.get(kind, BASE)
    g = CHIP.nir_graph(random_net(layers, seed=3))
    nodes, edges = dict(g.nodes), list(g.edges)
    if kind == "nonspiking_readout":
        del nodes["l2_if"]
        edges = [e for e in edges if "l2_if" not in e] + [("l2", "output")]
    elif kind == "per_neuron_threshold":
        thr = np.random.default_rng(1).integers(50, 200, (8, 16, 16)).astype(np.float32)
        nodes["l0_if"] = nir.IF(r=np.ones_like(thr), v_threshold=thr, v_reset=np.zeros_like(thr))
    elif kind == "leaky":
        one = np.ones(1, np.float32)
        nodes["l1_if"] = nir.LIF(tau=one * 2.0, r=one * 2.0, v_leak=one * 0, v_threshold=one * 150,
                                 v_reset=one * 0)
    elif kind == "non_square_kernel":  # conv2 with a 3x2 kernel: 16x6x7 into the readout
        w = np.asarray(nodes["l1"].weight)[:, :, :, :2].copy()
        w[0, 0, 0, 0] = 127
        nodes["l1"] = nir.Conv2d(input_shape=(8, 8), weight=w, stride=(1, 1), padding=(0, 0),
                                 dilation=(1, 1), groups=1, bias=np.zeros(16, np.float32))
        nodes["l1"].output_type = {"output": np.array([16, 6, 7])}  # nir 1.0.8 computes 6x6
        nodes["flatten"] = nir.Flatten(input_type={"input": np.array([16, 6, 7])}, start_dim=0, end_dim=-1)
        w2 = np.random.default_rng(2).integers(-50, 50, (10, 16 * 6 * 7)).astype(np.float32)
        w2[0, 0] = 127
        nodes["l2"] = nir.Affine(weight=w2, bias=np.zeros(10, np.float32))
    elif kind not in ("ok", "neuron_memory", "kernel_memory", "too_many_layers"):
        raise ValueError(kind)
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=dict(g.metadata), type_check=False)


#: planted violation -> the constraint trt_nm's check names
PLANTED = {
    "nonspiking_readout": "spiking layer after weights",
    "per_neuron_threshold": "thresholds per layer",
    "neuron_memory": "neurons/core (one layer per core)",
    "kernel_memory": "kernel memory/core",
    "too_many_layers": "neuron layers",
    "leaky": "leak",
    "non_square_kernel": "square kernel",
}


# ---------------------------------------------------------------------- integer arithmetic
def test_neuron_step_hand_example():
    p = {"threshold": torch.tensor(3), "min_v": torch.tensor(-3)}
    state = {"v": torch.zeros(4, dtype=torch.int64)}
    state, s = neuron_step(state, torch.tensor([7, -5, 2, 3]), p)
    assert s.tolist() == [2, 0, 0, 1]  # several spikes per step, subtract reset
    assert state["v"].tolist() == [1, -3, 2, 0]  # clamp at min_v = -threshold
    state, s = neuron_step(state, torch.tensor([2, 1, 0, -4]), p)
    assert s.tolist() == [1, 0, 0, 0]
    assert state["v"].tolist() == [0, -2, 2, -3]
    assert MULTI_SPIKE and RESET == "subtract"


def test_discretization_scale_follows_sinabs():
    assert discretization_scale(torch.tensor([-1.0, 0.5]), 8) == 128.0
    assert discretization_scale(torch.tensor([0.5, -0.2]), 8) == 254.0
    assert discretization_scale(torch.zeros(3), 8) == float("inf")
    assert discretization_scale(torch.tensor([-100.0, 100.0]), 16) == pytest.approx(327.67)
    assert is_fixed_point(np.array([127, -3]), 500) and is_fixed_point(np.array([-128, 5]), 32767)
    assert not is_fixed_point(np.array([100, -3]), 500)
    assert is_fixed_point(np.zeros(4), 32767) and not is_fixed_point(np.zeros(4), 100)


def test_memory_formulas_and_core_assignment():
    assert kernel_memory(2, 3, 8) == 2 * 2 ** (4 + 3)
    assert neuron_memory(8, 16, 16) == 8 * 256
    assert kernel_memory(16, 6, 10) == 16 * 2 ** (6 + 4) == 16 * 1024  # fits a 16 Ki core
    assert neuron_memory(10, 1, 1) == 10
    assert assign_cores([(1, 1, 1)] * 9) is not None and assign_cores([(1, 1, 1)] * 10) is None
    assert sorted(assign_cores([(64 * 1024, 1, 1)] * 2)) == [5, 6]
    assert assign_cores([(64 * 1024, 1, 1)] * 3) is None
    assert assign_cores([(1, 64 * 1024, 1), (64 * 1024, 1, 1)]) is not None


# ---------------------------------------------------------------------- model / simulate
def test_encode_clips_events():
    x = torch.tensor([[[0.0, 3.0, 20.0, 15.4]]]).reshape(1, 1, 4)
    e = CHIP.encode(x)
    assert e.dtype == torch.int64 and e.shape == x.shape
    assert e.flatten().tolist() == [0, 3, INPUT_MAX, 15]
    assert CHIP.input_range() == (0, INPUT_MAX) and CHIP.input_steps(8) == 8


@pytest.mark.parametrize("seed", [0, 1])
def test_model_forward_equals_simulate(seed):
    model = CHIP.build(IN, 10, (8, 16), seed=seed)
    x = torch.randint(0, 5, (6, 3, *IN))
    with torch.no_grad():
        out = model(x.float())
    net = CHIP.integerize(model)
    rec = CHIP.simulate(net, x.numpy())
    assert rec["out"].shape == (6, 3, 10) and rec["out"].dtype == np.int64
    assert np.array_equal(rec["out"], out.numpy().astype(np.int64))
    assert rec["layer:conv1"].shape == (6, 3, 8, 16, 16)
    assert rec["layer:conv2"].shape == (6, 3, 16, 6, 6)
    assert rec["out"].sum() > 0


def test_integer_valued_weights_are_kept_exactly():
    model = CHIP.build(IN, 10, (8, 16), seed=2)
    rng = np.random.default_rng(0)
    with torch.no_grad():
        for layer in model.layers:
            w = rng.integers(-50, 50, layer.weight.shape).astype(np.float32)
            w.flat[0] = 127
            layer.weight.copy_(torch.from_numpy(w))
            layer.threshold.fill_(300.0)
    net = CHIP.integerize(model)
    for layer in model.layers:
        assert np.array_equal(net.arrays[f"{layer.name}.weight"], layer.weight.detach().numpy().astype(np.int64))
        assert int(net.arrays[f"{layer.name}.threshold"]) == 300
    x = torch.randint(0, 3, (4, 2, *IN))
    with torch.no_grad():
        out = model(x.float())
    assert np.array_equal(CHIP.simulate(net, x.numpy())["out"], out.numpy())


def test_integerize_grids():
    net = CHIP.integerize(CHIP.build(IN, 10, (8, 16), seed=4))
    for spec in net.meta["layers"]:
        w = net.arrays[f"{spec['name']}.weight"]
        thr = int(net.arrays[f"{spec['name']}.threshold"])
        assert w.dtype == np.int64 and -128 <= w.min() and w.max() <= 127
        assert w.max() == 127 or w.min() == -128
        assert 1 <= thr <= 32767 and is_fixed_point(w, thr)
    assert CHIP.check_graph_lines(net) == []


def test_simulate_pooling_and_padding_against_a_direct_loop():
    net = random_net([("conv", 4, 3, 1, 1, 2), ("conv", 3, 2, 2, 0, 1), ("dense", 5)],
                     seed=7, in_shape=(2, 9, 9), thr_range=(5, 40))
    x = np.random.default_rng(1).integers(0, 4, (5, 2, 2, 9, 9))
    rec = CHIP.simulate(net, x)
    # direct per-step reference with numpy loops for the first layer
    w = net.arrays["l0.weight"]
    thr = int(net.arrays["l0.threshold"])
    xp = np.pad(x, ((0, 0), (0, 0), (0, 0), (1, 1), (1, 1)))
    v = np.zeros((2, 4, 9, 9), dtype=np.int64)
    for t in range(5):
        cur = np.zeros_like(v)
        for i in range(9):
            for j in range(9):
                cur[:, :, i, j] = np.einsum("bchw,ochw->bo", xp[t, :, :, i:i + 3, j:j + 3], w)
        v = v + cur
        s = np.where(v > 0, v // thr, 0)
        v = np.maximum(v - s * thr, -thr)
        assert np.array_equal(rec["layer:l0"][t], s)
    assert rec["layer:l1"].shape == (5, 2, 3, 2, 2) and rec["out"].shape == (5, 2, 5)


def test_check_model_limits():
    assert CHIP.check_model(CHIP.build(IN, 10, (8, 16)), IN) == []
    problems = CHIP.check_model(CHIP.build(IN, 10, (128,)), IN)
    assert any("readout: kernel memory 131,072" in p for p in problems)
    ten = spec_chain([("conv", 8, 3, 2, 0, 2)] + [("conv", 8, 1, 1, 0, 1)] * 8 + [("dense", 10)])
    assert any("10 layers > 9 cores" in p for p in layer_problems(ten))
    big = spec_chain([("conv", 128, 3, 1, 0, 2), ("dense", 10)])
    assert any("neuron memory 131,072" in p for p in layer_problems(big))
    assert any("kernel 17" in p for p in layer_problems(spec_chain([("conv", 4, 17, 1, 0, 1), ("dense", 2)])))


def test_tiny_train_integerize_simulate_smoke():
    torch.manual_seed(0)
    model = CHIP.build(IN, 10, (8, 16), seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = torch.randint(0, 3, (4, 8, *IN)).float()
    y = torch.randint(0, 10, (8,))
    for _ in range(3):
        out = model(x)
        loss = torch.nn.functional.cross_entropy(out.sum(0), y)
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
        opt.step()
    net = CHIP.integerize(model)
    with torch.no_grad():
        ref = model(x)
    assert np.array_equal(CHIP.simulate(net, x.long().numpy())["out"], ref.numpy())
    assert CHIP.predict(ref.numpy()).shape == (8,)


# ---------------------------------------------------------------------- files and checks
def test_write_nir_follows_nir104_and_trt_nm_reads_it(tmp_path):
    import nir

    net = random_net(BASE, seed=5)
    files = CHIP.write(net, tmp_path)
    assert set(files) == {"speck.nir", "memory_summary.json", "speck.json"}
    assert schema_problems(tmp_path / "speck.nir") == []
    g = nir.read(str(tmp_path / "speck.nir"), type_check=False)
    assert float(np.asarray(g.nodes["l0_if"].v_threshold).ravel()[0]) == int(net.arrays["l0.threshold"])
    assert get_exporter("speck").check(g).fits
    extra = CHIP.manifest_extra(net)
    assert extra["layer2core"] is not None and "specksim" in extra["vendor_simulator"]


def test_planted_graphs_ok_fits():
    assert get_exporter("speck").check(planted_graph("ok")).fits


@pytest.mark.parametrize("kind", sorted(PLANTED))
def test_planted_violation_is_reported(kind, tmp_path):
    report = get_exporter("speck").check(planted_graph(kind))
    assert not report.fits
    assert PLANTED[kind] in {v.constraint for v in report.violations}, report.text()
    if kind == "leaky":
        assert any("retrain with --target speck" in v.hint for v in report.violations)
    write_nir104(planted_graph(kind), tmp_path / "g.nir")  # the vendor test reads these files


def test_uniform_per_neuron_thresholds_are_collapsed_on_export(tmp_path):
    import nir

    g = planted_graph("ok")
    nodes = dict(g.nodes)
    thr = np.full((8, 16, 16), 0.02, np.float32)  # gain r*dt = 2e4 * 1e-4 = 2 is folded in
    nodes["l0_if"] = nir.IF(r=np.full_like(thr, 2e4), v_threshold=thr, v_reset=np.zeros_like(thr))
    meta = {**g.metadata, "dt": 1e-4}
    g2 = nir.NIRGraph(nodes=nodes, edges=list(g.edges), metadata=meta, type_check=False)
    ex = get_exporter("speck")
    assert ex.check(g2).fits
    ex.write(g2, tmp_path / "s.nir")
    back = nir.read(str(tmp_path / "s.nir"), type_check=False)
    assert np.asarray(back.nodes["l0_if"].v_threshold).shape == (1,)
    assert float(np.asarray(back.nodes["l0_if"].v_threshold)[0]) == pytest.approx(0.01)
    assert float(np.asarray(back.nodes["l0_if"].r)[0]) == 1.0 and float(back.metadata["dt"]) == 1.0


def test_synops_equal_a_brute_force_count():
    """Each event times the nonzero weights it reaches, counted from an explicit connection
    matrix (each input position's effect found by convolving a unit impulse)."""
    import torch.nn.functional as F

    layers = [("conv", 4, 3, 1, 1, 2), ("conv", 3, 2, 2, 0, 1), ("dense", 5)]
    net = random_net(layers, seed=7, in_shape=(2, 9, 9), thr_range=(5, 40))
    for k in list(net.arrays):
        if k.endswith(".weight"):  # plant zeros: they must not count
            a = net.arrays[k].copy()
            a.flat[::3] = 0
            net.arrays[k] = a
    x = np.random.default_rng(1).integers(0, 4, (5, 2, 2, 9, 9))
    rec = CHIP.simulate(net, x)
    total = 0
    h = x
    for spec in net.meta["layers"]:
        w = torch.from_numpy(net.arrays[spec["name"] + ".weight"].astype(np.float64))
        n_in = int(np.prod(spec["in_shape"]))
        fan = np.zeros(n_in)
        for i in range(n_in):
            e = torch.zeros(n_in, dtype=torch.float64)
            e[i] = 1.0
            # the nonzero weights one event at position i reaches: the impulse through the mask
            m = (w != 0).to(torch.float64)
            if spec["kind"] == "dense":
                reached = m.reshape(m.shape[0], -1) @ e
            else:
                reached = F.conv2d(e.reshape(1, *spec["in_shape"]), m, stride=spec["stride"],
                                   padding=spec["padding"])
            fan[i] = float(reached.sum())
        total += int((np.asarray(h).reshape(h.shape[0], h.shape[1], -1).sum((0, 1)) * fan).sum())
        s = rec["layer:" + spec["name"]]
        pool = int(spec["pool"])
        if pool > 1:
            T, B, c, hh, ww = s.shape
            s = s[..., : hh // pool * pool, : ww // pool * pool].reshape(
                T, B, c, hh // pool, pool, ww // pool, pool).sum((4, 6))
        h = s
    assert CHIP.synops(net, rec, x) == total > 0
