"""The node table (trt_nm.nir.nodes) and the modules built from it agree."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch

from trt_nm.errors import NirError
from trt_nm.nir.graph import graph_reset
from trt_nm.nir.importer import build_network, graph_surrogate
from trt_nm.nir.modules import STATELESS_BUILDERS, stateful_module
from trt_nm.nir.nodes import NODE_KINDS, coefficients, kinds_where, node_kind

DT = 1e-3


def _neurons(n: int = 3) -> dict[str, object]:
    rng = np.random.default_rng(0)
    tau = rng.uniform(2e-3, 8e-3, n)
    kw = {"r": rng.uniform(0.5, 2.0, n), "v_leak": rng.uniform(-0.1, 0.1, n)}
    thr, vr = rng.uniform(0.5, 1.0, n), rng.uniform(-0.2, 0.0, n)
    cuba = {"tau_syn": tau / 2, "tau_mem": tau, "w_in": rng.uniform(0.5, 1.5, n), **kw}
    return {
        "LIF": nir.LIF(tau=tau, v_threshold=thr, v_reset=vr, **kw),
        "LI": nir.LI(tau=tau, **kw),
        "IF": nir.IF(r=kw["r"], v_threshold=thr, v_reset=vr),
        "I": nir.I(r=kw["r"]),
        "CubaLIF": nir.CubaLIF(v_threshold=thr, v_reset=vr, **cuba),
        "CubaLI": nir.CubaLI(**cuba),
    }


def test_every_simulated_kind_has_a_module():
    for name in kinds_where(simulated=True):
        kind = NODE_KINDS[name]
        if kind.role == "io":
            continue
        if kind.stateful:
            assert kind.coefficients is not None, name
        else:
            assert name in STATELESS_BUILDERS, name
    assert set(STATELESS_BUILDERS) <= set(kinds_where(simulated=True, stateful=False))


def test_stateful_modules_run_the_table_coefficients():
    """Each module's step, in float64, is the table's update written out."""
    x = torch.rand(6, 2, 3, dtype=torch.float64) * 2
    for name, node in _neurons().items():
        assert node_kind(node).name == name
        c = {k: torch.as_tensor(v) for k, v in coefficients(node, DT).items()}
        mod = stateful_module(node, DT).double()
        v = torch.zeros(2, 3, dtype=torch.float64)
        i = torch.zeros(2, 3, dtype=torch.float64)
        want = []
        for t in range(x.shape[0]):
            s = x[t]
            if "syn_decay" in c:
                i = c["syn_decay"] * i + c["syn_gain"] * s
                s = i
            h = c["decay"] * v + c["gain"] * s + c["leak"]
            if "threshold" in c:
                z = (h > c["threshold"]).double()
                v = h * (1.0 - z) + z * c["v_reset"]
                want.append(z)
            else:
                v = h
                want.append(h)
        assert torch.equal(mod(x), torch.stack(want)), name


def test_cubalif_current_gain_is_the_simulators_order():
    node = _neurons()["CubaLIF"]
    c = coefficients(node, DT)
    assert np.array_equal(c["syn_gain"], node.w_in * DT / node.tau_syn)
    assert np.array_equal(c["syn_decay"], 1.0 - DT / node.tau_syn)


def _graph(metadata: dict) -> nir.NIRGraph:
    n = 3
    nodes = {
        "input": nir.Input(input_type={"input": np.array([n])}),
        "lif": nir.LIF(tau=np.full(n, 2e-3), r=np.full(n, 2.0), v_leak=np.zeros(n),
                       v_threshold=np.ones(n), v_reset=np.zeros(n)),
        "output": nir.Output(output_type={"output": np.array([n])}),
    }
    return nir.NIRGraph(nodes=nodes, edges=[("input", "lif"), ("lif", "output")],
                        metadata={"dt": DT, **metadata}, type_check=False)


def test_bad_surrogate_metadata_is_an_error():
    assert graph_surrogate(_graph({})) == ("triangle", 1.0)
    assert graph_surrogate(_graph({"surrogate": "atan", "surrogate_scale": 3.0})) == ("atan", 3.0)
    with pytest.raises(NirError, match="'wiggle'.*valid surrogates: atan"):
        build_network(_graph({"surrogate": "wiggle"}), backend="torch")
    for bad in ("wide", -1.0, float("nan")):
        with pytest.raises(NirError, match="surrogate_scale.*positive finite"):
            build_network(_graph({"surrogate_scale": bad}), backend="torch")
    with pytest.raises(NirError, match="reset 'sideways'"):
        graph_reset(_graph({"reset": "sideways"}))


def test_chip_neuron_kinds_point_at_each_chips_arithmetic():
    from trt_nm.chip import get_chip, list_chips
    from trt_nm.nir.nodes import CHIP_NEURON_KINDS, chip_neuron

    chips = sorted(k.chip for k in CHIP_NEURON_KINDS.values())
    assert chips == ["loihi2", "speck", "xylo"] and set(chips) <= set(list_chips())
    for name in chips:
        kind = chip_neuron(name)
        facts = kind.facts()
        assert facts["state_bits"] in (16, 24) and facts["weight_bits"] == 8
        assert callable(kind.step) and kind.name in kind.describe()
        # the chip registered under that name is the module the row names
        assert type(get_chip(name)).__module__ == kind.module
