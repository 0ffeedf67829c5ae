"""Hostile NIR files: each gives a one-line NirError (CLI: exit 2, no traceback)."""

from __future__ import annotations

import nir
import numpy as np
import pytest
from conftest import run_cli

import trt_nm
from trt_nm.cli.main import main
from trt_nm.errors import NirError


def _graph(w=None, edges=None, extra=None):
    w = np.ones((3, 4)) if w is None else w
    nodes = {
        "input": nir.Input(input_type={"input": np.array([4])}),
        "fc": nir.Affine(weight=w, bias=np.zeros(w.shape[0])),
        "lif": nir.LIF(tau=np.full(3, 2e-4), r=np.full(3, 2.0), v_leak=np.zeros(3),
                       v_threshold=np.ones(3)),
        "output": nir.Output(output_type={"output": np.array([3])}),
    }
    nodes.update(extra or {})
    edges = edges or [("input", "fc"), ("fc", "lif"), ("lif", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def _write(graph, path):
    nir.write(path, graph)
    return path


def _bad_files(tmp: pytest.TempPathFactory):
    good = _write(_graph(), tmp / "good.nir")
    trunc = tmp / "trunc.nir"
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    text = tmp / "text.nir"
    text.write_text("not hdf5\n")
    unknown = _write(_graph(), tmp / "unknown.nir")
    import h5py

    with h5py.File(unknown, "a") as f:
        del f["node/nodes/fc/type"]
        f["node/nodes/fc"].create_dataset("type", data="Wormhole", dtype=h5py.string_dtype())
    missing = _write(_graph(edges=[("input", "fc"), ("fc", "lif"), ("lif", "ghost"), ("lif", "output")]), tmp / "missing.nir")
    cyc = _write(_graph(extra={"s": nir.Scale(scale=np.ones(3))},
                        edges=[("input", "fc"), ("fc", "lif"), ("lif", "output"), ("s", "s")]), tmp / "cycle.nir")
    shapes = _write(_graph(w=np.ones((3, 5))), tmp / "shapes.nir")
    nan = _write(_graph(w=np.full((3, 4), np.nan)), tmp / "nan.nir")
    return {"truncated": (trunc, "truncated"), "not hdf5": (text, "not HDF5"),
            "unknown type": (unknown, "unknown NIR node type 'Wormhole'"),
            "missing node": (missing, "missing node 'ghost'"),
            "stateless cycle": (cyc, "cycle with no stateful node"),
            "shapes": (shapes, "mismatched shapes"), "nan": (nan, "NaN")}


def test_hostile_files_give_one_line_errors(tmp_path, capsys):
    for label, (path, needle) in _bad_files(tmp_path).items():
        with pytest.raises(NirError, match=needle) as info:
            trt_nm.read_nir(path)
        assert "\n" not in str(info.value), label
        with pytest.raises(NirError):
            trt_nm.from_nir(path, backend="torch")
        capsys.readouterr()
        assert main(["inspect", str(path)]) == 2, label
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("trt-nm: error:") and needle in err, (label, err)


def test_inspect_subprocess_no_traceback(tmp_path):
    path, _ = _bad_files(tmp_path)["truncated"]
    r = run_cli("inspect", str(path))
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.count("\n") == 1


def test_in_memory_graph_errors():
    with pytest.raises(NirError, match="mismatched shapes"):
        trt_nm.from_nir(_graph(w=np.ones((3, 5))), backend="torch")
    rec = _graph(extra={"w": nir.Linear(weight=np.eye(3))},
                 edges=[("input", "fc"), ("fc", "lif"), ("lif", "w"), ("w", "lif"), ("lif", "output")])
    with pytest.raises(NirError, match="recurrent"):
        trt_nm.from_nir(rec, backend="torch")
    with pytest.raises(NirError, match="not found"):
        trt_nm.read_nir("/nonexistent/x.nir")


def _lif_graph(metadata):
    n = 3
    return nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([n])),
               "lif": nir.LIF(tau=np.full(n, 2e-4), r=np.full(n, 2.0), v_leak=np.zeros(n), v_threshold=np.ones(n)),
               "output": nir.Output(output_type=np.array([n]))},
        edges=[("input", "lif"), ("lif", "output")],
        metadata=metadata,
    )


def test_dt_is_never_guessed(tmp_path, capsys):
    """from_nir, the simulator and the target checks take dt from the argument or the metadata
    and refuse a graph with neurons that has neither; a bad dt is a one-line error."""
    from trt_nm.exporters.layers import analyze_graph
    from trt_nm.sim.engine import SimulationError, Simulator

    g = _lif_graph({})
    with pytest.raises(NirError, match="no metadata 'dt'"):
        trt_nm.from_nir(g, backend="torch")
    with pytest.raises(SimulationError, match="dt"):
        Simulator(g)
    with pytest.raises(NirError, match="no metadata 'dt'"):
        analyze_graph(g)
    assert trt_nm.from_nir(g, backend="torch", dt=1e-4).dt == 1e-4
    assert Simulator(g, dt=1e-4).dt == 1e-4
    assert analyze_graph(g, dt=1e-4).layers["lif"].beta == pytest.approx(0.5)
    assert trt_nm.from_nir(_lif_graph({"dt": 2e-4}), backend="torch").dt == 2e-4
    for bad in (0.0, -1.0, float("nan"), "fast"):
        with pytest.raises(trt_nm.TrtNmError, match="dt"):
            trt_nm.from_nir(_lif_graph({"dt": bad}), backend="torch")
        with pytest.raises(trt_nm.TrtNmError, match="dt"):
            Simulator(_lif_graph({"dt": bad}))
    # a graph without neurons needs no dt
    dense = nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([2])),
                                "fc": nir.Affine(weight=np.eye(2), bias=np.zeros(2)),
                                "output": nir.Output(output_type=np.array([2]))},
                         edges=[("input", "fc"), ("fc", "output")])
    assert trt_nm.from_nir(dense, backend="torch").dt is None
    path = tmp_path / "nodt.nir"
    trt_nm.write_nir(g, path)
    assert main(["simulate", str(path), "--dataset", "mnist5k"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dt" in err[0]
