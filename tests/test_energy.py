"""Energy profiles and operation counting."""

from __future__ import annotations

import dataclasses

import nir
import numpy as np
import pytest
import torch

from trt_nm.errors import ConfigError
from trt_nm.metrics.energy import (
    COUNTING_RULE,
    ann_energy,
    count_ops,
    estimate_energy,
    get_energy_profile,
    list_energy_profiles,
)
from trt_nm.models import build_model
from trt_nm.nir.io import to_nir
from trt_nm.sim.engine import simulate


def test_profiles_registry_and_citations():
    names = list_energy_profiles()
    for n in ("cmos45nm", "loihi", "loihi2", "spinnaker2", "truenorth", "xylo"):
        assert n in names
    for n in names:
        p = get_energy_profile(n)
        assert p.source and 1990 < p.year < 2100
        with pytest.raises(dataclasses.FrozenInstanceError):
            p.e_ac = 1.0  # type: ignore[misc]
    c = get_energy_profile("cmos45nm")
    assert c.e_ac == pytest.approx(0.9e-12) and c.e_mac == pytest.approx(4.6e-12)
    with pytest.raises(ConfigError, match="valid energy profiles"):
        get_energy_profile("tpu")
    assert "spikes x fan-out" in COUNTING_RULE


def _chain_graph(w2):
    n_in, n_h = 3, w2.shape[1]
    nodes = {
        "input": nir.Input(input_type={"input": np.array([n_in])}),
        "fc1": nir.Affine(weight=np.ones((n_h, n_in), np.float32), bias=np.zeros(n_h, np.float32)),
        "lif": nir.LIF(tau=np.full(n_h, 2e-4), r=np.full(n_h, 2.0), v_leak=np.zeros(n_h),
                       v_threshold=np.ones(n_h)),
        "fc2": nir.Linear(weight=w2.astype(np.float32)),
        "output": nir.Output(output_type={"output": np.array([w2.shape[0]])}),
    }
    edges = [("input", "fc1"), ("fc1", "lif"), ("lif", "fc2"), ("fc2", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1e-4}, type_check=False)


def test_acs_are_spikes_times_nonzero_fanout_and_energy_is_linear():
    w2 = np.array([[1.0, 0.0, 2.0, 0.0], [0.0, 0.0, 1.0, 1.0]])  # fan-out 1, 0, 2, 1
    g = _chain_graph(w2)
    x = torch.rand(5, 8, 3)
    res = simulate(g, x, record=True)
    spk = res.spike_trains["lif"]  # [T, B, 4]
    fan = torch.tensor([1.0, 0.0, 2.0, 1.0], dtype=torch.float64)
    assert torch.equal(res.synops["fc2"], (spk.double() * fan).sum(-1))
    counts = count_ops(res)
    assert counts.effective_acs == pytest.approx(float((spk.double() * fan).sum()) / 8)
    assert counts.spikes == pytest.approx(float(spk.sum()) / 8)
    assert counts.neuron_updates == 4 * 5
    assert counts.ann_macs == 4 * 3 + 2 * 4
    assert counts.activation_sparsity == pytest.approx(1 - float(spk.sum()) / (8 * 5 * 4))
    # twice the input -> more spikes; energy on a fixed profile is linear in the counts
    res2 = simulate(g, x * 3)
    c2 = count_ops(res2)
    assert c2.spikes > counts.spikes
    for name in list_energy_profiles():
        p = get_energy_profile(name)
        e1, e2 = estimate_energy(counts, p), estimate_energy(c2, p)
        assert e2.ac_j == pytest.approx(c2.effective_acs * p.e_ac)
        if counts.effective_acs:
            ratio = c2.effective_acs / counts.effective_acs
            assert e2.ac_j == pytest.approx(e1.ac_j * ratio)
        assert e1.total_j == pytest.approx(e1.ac_j + e1.mac_j + e1.neuron_j + p.e_inference)
    # scaling every spike count by k scales the spike-driven energy by k
    doubled = dataclasses.replace(counts, effective_acs=2 * counts.effective_acs)
    loihi = get_energy_profile("loihi")
    assert estimate_energy(doubled, loihi).ac_j == pytest.approx(2 * estimate_energy(counts, loihi).ac_j)


def test_counts_stop_at_exit_step():
    g = _chain_graph(np.ones((2, 4)))
    res = simulate(g, torch.rand(4, 6, 3) * 2)
    first = count_ops(res, torch.ones(6, dtype=torch.long))
    assert first.mean_timesteps == 1
    assert first.spikes == pytest.approx(float(res.spikes["lif"][0].sum()) / 6)
    assert first.effective_macs == pytest.approx(float(res.synops["fc1"][0].sum()) / 6)
    full = count_ops(res)
    assert full.effective_acs >= first.effective_acs and full.neuron_updates == 4 * 4


def test_ann_equivalent_of_mlp():
    model = build_model("mlp", input_size=(28, 28), hidden=(256, 256)).eval()
    res = simulate(to_nir(model), torch.rand(2, 2, 1, 28, 28))
    counts = count_ops(res)
    assert counts.ann_macs == 784 * 256 + 256 * 256 + 256 * 10
    assert ann_energy(counts) == pytest.approx(counts.ann_macs * 4.6e-12)
    assert res.layers["body_1"].op_kind == "MAC"  # dense pixels into the first layer
    assert res.layers["body_4"].op_kind == "AC"
