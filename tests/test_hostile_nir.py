"""Hostile input to the NIR commands (issue "Hostile input", items 5, 6a, 7, 8, 11, 14, 15, 17,
18c, 24): every bad file, value or path ends with ONE line on stderr and exit code 2, no
traceback, before any expensive work. Every file here is small and written by the test."""

from __future__ import annotations

import pickle
import struct
import sys
import time
import warnings

import h5py
import nir
import numpy as np
import pytest
import torch
from conftest import run_cli

import trt_nm
from trt_nm.cli.main import main
from trt_nm.errors import ConfigError, NirError
from trt_nm.training.checkpoint import save_checkpoint


def _graph(w=None, meta=None, tau=2e-4, extra=None, edges=None):
    w = np.ones((3, 4)) if w is None else w
    nodes = {
        "input": nir.Input(input_type={"input": np.array([4])}),
        "fc": nir.Affine(weight=w, bias=np.zeros(w.shape[0])),
        "lif": nir.LIF(tau=np.full(3, tau), r=np.full(3, 2.0), v_leak=np.zeros(3), v_threshold=np.ones(3)),
        "output": nir.Output(output_type={"output": np.array([3])}),
    }
    nodes.update(extra or {})
    edges = edges or [("input", "fc"), ("fc", "lif"), ("lif", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False,
                        metadata={"dt": 1e-4} if meta is None else meta)


def _write(path, graph=None):
    nir.write(path, _graph() if graph is None else graph)
    return path


def _replace(path, name, make):
    """Rewrite dataset ``name`` of a written NIR file with ``make(group, key)``."""
    with h5py.File(path, "a") as f:
        group, key = f[name.rsplit("/", 1)[0]], name.rsplit("/", 1)[1]
        del group[key]
        make(group, key)
    return path


def one_line_error(capsys, argv, code=2) -> str:
    """Run the CLI in-process; exit ``code``, exactly one stderr line, no warning emitted."""
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(argv) == code, argv
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and err.endswith("\n") and "Traceback" not in err, err
    noisy = [w for w in caught if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning))]
    assert not noisy, [str(w.message) for w in noisy]
    return lines[0]


# --------------------------------------------------------------------------- 5, 6a: the HDF5 tree


def _external_storage(tmp):
    def make(g, k):  # the bias is read from /etc/passwd (or any file) by libhdf5 itself
        g.create_dataset(k, shape=(3,), dtype="u1", external=[("/etc/passwd", 0, 3)])
    return make


def _external_link(tmp):
    other = _write(tmp / "other.nir", _graph(w=np.full((3, 4), 7.0)))

    def make(g, k):
        g[k] = h5py.ExternalLink(str(other), "node/nodes/fc/weight")
    return make


def _soft_link(tmp):
    def make(g, k):
        g.create_dataset("elsewhere", data=np.ones((3, 4)))
        g[k] = h5py.SoftLink(g.name + "/elsewhere")
    return make


def _virtual(tmp):
    other = _write(tmp / "other.nir")

    def make(g, k):
        layout = h5py.VirtualLayout(shape=(3, 4), dtype=np.float64)
        layout[:] = h5py.VirtualSource(str(other), "node/nodes/fc/weight", shape=(3, 4))
        g.create_virtual_dataset(k, layout)
    return make


def _plugin(tmp):
    def make(g, k):  # a filter id only a plugin library provides (optional: h5py can write it)
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_chunk((3, 4))
        dcpl.set_filter(32004, h5py.h5z.FLAG_OPTIONAL, ())
        h5py.h5d.create(g.id, k.encode(), h5py.h5t.IEEE_F64LE, h5py.h5s.create_simple((3, 4)), dcpl=dcpl)
    return make


def _cycle(tmp):
    def make(g, k):  # a hard link back to the node's own group: a walker that follows it loops
        g.create_dataset(k, data=np.ones((3, 4)))
        g["loop"] = g
    return make


def _declared_huge(tmp):
    def make(g, k):  # 2**38 float32 in a few kB: chunked, compressed, never written
        g.create_dataset(k, shape=(4, 2**36), dtype="f4", chunks=(1, 2**16), compression="gzip")
    return make


def _affine_2m(tmp):
    def make(g, k):  # the issue's file: 2,000,000 x 784 declared, never written (~1 MB)
        g.create_dataset(k, shape=(2_000_000, 784), dtype="f4", chunks=(1000, 784), compression="gzip")
    return make


TREE_CASES = {
    "external storage": ("node/nodes/fc/bias", _external_storage, "keeps its data in external files"),
    "external link": ("node/nodes/fc/weight", _external_link, "'node/nodes/fc/weight' is an external link"),
    "soft link": ("node/nodes/fc/weight", _soft_link, "is a soft link"),
    "virtual dataset": ("node/nodes/fc/weight", _virtual, "is a virtual dataset"),
    "plugin filter": ("node/nodes/fc/weight", _plugin, "uses HDF5 filter 32004, not a built-in one"),
    "hard-link cycle": ("node/nodes/fc/weight", _cycle, "linked 2 times"),
    "declared huge": ("node/nodes/fc/weight", _declared_huge, "GiB"),
    "affine 2000000x784": ("node/nodes/fc/weight", _affine_2m, "GiB|output features"),
}


@pytest.mark.parametrize("case", list(TREE_CASES))
def test_nir_reads_only_its_own_bounded_data(tmp_path, capsys, case):
    name, make, needle = TREE_CASES[case]
    path = _replace(_write(tmp_path / "bad.nir"), name, make(tmp_path))
    t0 = time.perf_counter()
    with pytest.raises(NirError, match=needle):
        trt_nm.read_nir(path)
    assert time.perf_counter() - t0 < 5  # refused from the declared structure, nothing read
    for argv in (["inspect", str(path)], ["simulate", str(path), "--limit", "4"]):
        err = one_line_error(capsys, argv)
        assert str(path) in err, err
    with pytest.raises(NirError, match=needle):
        trt_nm.from_nir(path, backend="torch")


def test_good_file_still_reads(tmp_path, capsys):
    path = _write(tmp_path / "good.nir")
    assert main(["inspect", str(path)]) == 0
    assert "valid NIR graph" in capsys.readouterr().out


# --------------------------------------------------------------------------- 7, 8: T


@pytest.mark.parametrize("T", [b"four", np.array([4, 5]), 2.7, 0, -3, 10**9])
def test_metadata_T_is_checked_like_the_command_line(tmp_path, capsys, T):
    path = _write(tmp_path / "t.nir", _graph(meta={"dt": 1e-4, "T": T}))
    with pytest.raises(NirError, match=r"T \(graph metadata\) must be"):
        trt_nm.read_nir(path)
    for argv in (["inspect", str(path)], ["simulate", str(path)], ["report", str(path), "--out", str(tmp_path / "r")]):
        assert "T (graph metadata) must be" in one_line_error(capsys, argv)


@pytest.mark.parametrize("argv", [
    ["simulate", "{nir}", "-T", "1000000"], ["simulate", "{nir}", "-T", "0"], ["simulate", "{nir}", "-T", "2.5"],
    ["report", "{nir}", "-T", "100001", "--out", "{tmp}/r"], ["export", "{ck}", "--format", "onnx", "-T", "100001", "--out", "{tmp}/m.onnx"],
])
def test_command_line_T_bounded(tmp_path, capsys, ck, argv):
    nir_path = _write(tmp_path / "g.nir")
    argv = [a.format(nir=nir_path, tmp=tmp_path, ck=ck) for a in argv]
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "T must be" in err[0], err


def test_api_T_bounded(tmp_path):
    from test_nir_helpers import make_model

    from trt_nm.sim import simulate

    with pytest.raises(ConfigError, match="T must be"):
        trt_nm.to_onnx(make_model("mlp"), tmp_path / "m.onnx", T=10**6)
    with pytest.raises(ConfigError, match=r"T \(the input's time dimension\) must be in \[1, 100000\]"):
        simulate(_graph(), torch.zeros(100_001, 1, 4))  # T from the input itself


def test_onnx_export_does_not_grow_with_T(tmp_path, capsys, ck):
    """-T 100000 (the largest allowed) used to trace 100,000 steps for 116 s, then bad_alloc."""
    out = tmp_path / "m.onnx"
    t0 = time.perf_counter()
    assert main(["export", str(ck), "--format", "onnx", "-T", "100000", "--out", str(out)]) == 0
    assert time.perf_counter() - t0 < 30 and out.stat().st_size < 2**20
    assert "T=100000" in capsys.readouterr().out


# --------------------------------------------------------------------------- 11: outputs


@pytest.fixture
def ck(tmp_path):
    from test_nir_helpers import make_model

    model = make_model("mlp")
    path = tmp_path / "ck.pt"
    save_checkpoint(path, {"epoch": 1, "model": model.state_dict(), "model_spec": model.spec, "config": {}})
    return path


def _unwritable(tmp_path, kind):
    if kind == "under a file":
        (tmp_path / "afile").write_text("x")
        return str(tmp_path / "afile" / "sub"), "lies under a file"
    if kind == "/proc":
        return "/proc/trt_nm_test/x", "not writable"
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    return str(ro / "x"), "not writable"


def _no_work(*args, **kwargs):
    raise AssertionError("the work started before the output path was checked")


@pytest.mark.parametrize("kind", ["under a file", "/proc", "read-only directory"])
@pytest.mark.parametrize("command", ["export-onnx", "export-step", "export-nir", "export-target", "report", "simulate-json"])
def test_unwritable_output_is_refused_before_the_work(tmp_path, capsys, monkeypatch, ck, kind, command):
    import os

    if kind == "read-only directory" and os.geteuid() == 0:
        pytest.skip("root writes into read-only directories")
    out, needle = _unwritable(tmp_path, kind)
    nir_path = _write(tmp_path / "g.nir")
    monkeypatch.setattr("trt_nm.cli.export.load_model", _no_work)
    monkeypatch.setattr("trt_nm.cli.report.report_from_args", _no_work)
    monkeypatch.setattr("trt_nm.cli.simulate.report_from_args", _no_work)
    argv = {
        "export-onnx": ["export", str(ck), "--format", "onnx", "--out", out],
        "export-step": ["export", str(ck), "--format", "onnx", "--step", "--out", out],
        "export-nir": ["export", str(ck), "--out", out],
        "export-target": ["export", str(ck), "--target", "speck", "--out", out],
        "report": ["report", str(nir_path), "--out", out],
        "simulate-json": ["simulate", str(nir_path), "--json", out],
    }[command]
    err = one_line_error(capsys, argv)
    assert needle in err and out.split("/")[-2] in err, err


def test_check_writable_helper(tmp_path):
    from trt_nm.atomic import check_writable

    assert check_writable(tmp_path / "new" / "deeper" / "f.onnx") == tmp_path / "new" / "deeper" / "f.onnx"
    assert not (tmp_path / "new").exists()  # the check creates nothing it leaves behind
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError, match="is a directory"):
        check_writable(tmp_path)
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="directory is a file"):
        check_writable(tmp_path / "f", directory=True)


# --------------------------------------------------------------------------- 14: warnings


def _stride0(path):
    g = nir.NIRGraph(
        nodes={"input": nir.Input(input_type={"input": np.array([1, 4, 4])}),
               "c": nir.Conv2d(input_shape=(4, 4), weight=np.ones((2, 1, 3, 3)), stride=1, padding=0,
                               dilation=1, groups=1, bias=np.zeros(2)),
               "output": nir.Output(output_type={"output": np.array([2, 2, 2])})},
        edges=[("input", "c"), ("c", "output")], type_check=False, metadata={"dt": 1e-4})
    nir.write(path, g)
    return _replace(path, "node/nodes/c/stride", lambda grp, k: grp.create_dataset(k, data=np.zeros(2, np.int64)))


def test_library_warnings_become_the_one_error_line(tmp_path, capsys):
    stride0 = _stride0(tmp_path / "stride0.nir")
    err = one_line_error(capsys, ["inspect", str(stride0)])
    assert "stride must be in [1, 4096], got 0" in err
    raw = tmp_path / "raw.nir"
    raw.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    for argv in (["inspect", str(raw)], ["simulate", str(raw)], ["report", str(raw), "--out", str(tmp_path / "r")]):
        one_line_error(capsys, argv)
    # in memory: the same check (nir never sees the file)
    g = _graph(extra={"c": nir.Conv2d(input_shape=None, weight=np.ones((2, 1, 3, 3)), stride=0, padding=0,
                                      dilation=1, groups=1, bias=np.zeros(2))})
    with pytest.raises(NirError, match="stride"):
        trt_nm.nir.validate.validate_graph(g)


def test_stride0_subprocess_prints_one_line(tmp_path):
    path = _stride0(tmp_path / "stride0.nir")
    r = run_cli("inspect", str(path))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr


def test_a_runtime_warning_while_reading_is_an_error(tmp_path, monkeypatch):
    """A numpy floating-point warning raised while nir decodes a file means a bad file."""
    import nir as nir_mod

    path = _write(tmp_path / "g.nir")
    real = nir_mod.read

    def noisy(*a, **k):
        warnings.warn("overflow encountered in cast", RuntimeWarning, stacklevel=1)
        return real(*a, **k)

    monkeypatch.setattr(nir_mod, "read", noisy)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(NirError, match="RuntimeWarning while reading: overflow encountered in cast"):
            trt_nm.read_nir(path)
    assert not caught


# --------------------------------------------------------------------------- 15: weights


def _flip_top_exponent_bit(x: float) -> float:
    (bits,) = struct.unpack("<I", struct.pack("<f", x))
    return struct.unpack("<f", struct.pack("<I", bits ^ (1 << 30)))[0]


def test_flip_helper_is_the_issues_flip():
    assert _flip_top_exponent_bit(-2.3e-5) == pytest.approx(-7.8e33, rel=0.05)


@pytest.mark.parametrize("fmt", ["nir", "onnx"])
def test_bit_flipped_weight_is_refused_unless_allowed(tmp_path, capsys, fmt):
    from test_nir_helpers import make_model

    model = make_model("mlp")
    w = next(p for n, p in model.named_parameters() if p.dim() == 2)
    with torch.no_grad():
        w.view(-1)[7] = _flip_top_exponent_bit(-2.3e-5)  # the issue's weight, after its flip
    ck = tmp_path / "flipped.pt"
    save_checkpoint(ck, {"epoch": 1, "model": model.state_dict(), "model_spec": model.spec, "config": {}})
    out = tmp_path / f"m.{fmt}"
    err = one_line_error(capsys, ["export", str(ck), "--format", fmt, "--out", str(out)])
    assert "absurd weight magnitude" in err and "--allow-outlier-weights" in err and not out.exists()
    assert main(["export", str(ck), "--format", fmt, "--out", str(out), "--allow-outlier-weights"]) == 0
    assert out.exists()
    if fmt == "nir":
        capsys.readouterr()
        assert main(["inspect", str(out)]) == 0
        assert "note: absurd weight magnitude" in capsys.readouterr().out


@pytest.mark.parametrize("arch", ["mlp", "cnn-small", "resnet19"])
def test_real_layers_are_not_outliers(arch):
    """No false alarm on zoo models, fresh (random init) or with calibrated BatchNorm folded."""
    from test_nir_helpers import SIZES, make_model

    from trt_nm.nir.validate import weight_outliers

    for model in (make_model(arch, exact=False), trt_nm.build_model(arch, input_size=SIZES[arch], T=4).eval()):
        assert weight_outliers(trt_nm.to_nir(model)) == []


# --------------------------------------------------------------------------- 17: inspect == simulate


def _two_outputs():
    g = _graph(extra={"output2": nir.Output(output_type={"output": np.array([3])})},
               edges=[("input", "fc"), ("fc", "lif"), ("lif", "output"), ("lif", "output2")])
    return g


RUNNABLE_CASES = {
    "tau 0": (_graph(tau=0.0), "tau must be > 0"),
    "tau < 0": (_graph(tau=-1e-4), "tau must be > 0"),
    "dt 0": (_graph(meta={"dt": 0.0}), "'dt' must be a positive"),
    "dt -1": (_graph(meta={"dt": -1.0}), "'dt' must be a positive"),
    "dt 'abc'": (_graph(meta={"dt": "abc"}), "'dt' must be a number"),
    "dt missing": (_graph(meta={}), "no metadata 'dt'"),
    "T 0": (_graph(meta={"dt": 1e-4, "T": 0}), "T (graph metadata) must be in"),
    "two Inputs": (_graph(extra={"input2": nir.Input(input_type={"input": np.array([4])})},
                          edges=[("input", "fc"), ("input2", "fc"), ("fc", "lif"), ("lif", "output")]),
                   "exactly one Input and one Output"),
    "two Outputs": (_two_outputs(), "exactly one Input and one Output"),
}


@pytest.mark.parametrize("case", list(RUNNABLE_CASES))
def test_inspect_refuses_what_simulate_refuses(tmp_path, capsys, case):
    graph, needle = RUNNABLE_CASES[case]
    path = _write(tmp_path / "g.nir", graph)
    a = one_line_error(capsys, ["inspect", str(path)])
    b = one_line_error(capsys, ["simulate", str(path)])
    assert needle in a and a == b, (a, b)


def test_inspect_takes_dt_like_simulate(tmp_path, capsys):
    path = _write(tmp_path / "g.nir", _graph(meta={}))
    assert main(["inspect", str(path), "--dt", "1e-4"]) == 0
    assert "valid NIR graph" in capsys.readouterr().out
    for bad in ("0", "abc", "nan"):
        with pytest.raises(SystemExit):
            main(["inspect", str(path), "--dt", bad])
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--dt" in err[0]


# --------------------------------------------------------------------------- 18c: orphan options


@pytest.mark.parametrize("extra,needle", [
    (["--convert", "X"], "--convert applies only with --target"),
    (["--check"], "--check applies only with --target"),
    (["--quantize", "8"], "--quantize applies only with --target"),
    (["--format", "nir", "-T", "5"], "-T applies only to --format onnx"),
    (["--format", "nir", "--spikes"], "--spikes applies only to --format onnx"),
    (["--step"], "--step applies only to --format onnx"),
    (["--format", "onnx", "--step", "-T", "4"], "-T does not apply to --step"),
])
def test_export_refuses_ignored_options(tmp_path, capsys, monkeypatch, ck, extra, needle):
    monkeypatch.setattr("trt_nm.cli.export.load_model", _no_work)
    err = one_line_error(capsys, ["export", str(ck), "--out", str(tmp_path / "m.x"), *extra])
    assert needle in err, err


# --------------------------------------------------------------------------- 24: Norse


@pytest.fixture
def norse_file(tmp_path):
    norse = pytest.importorskip("norse.torch")
    torch.manual_seed(0)
    net = norse.SequentialState(torch.nn.Linear(20, 10), norse.LIFBoxCell())
    graph = norse.to_nir(net, torch.randn(1, 20))
    assert list(graph.nodes["input"].input_type["input"]) == [1, 20]  # what Norse 1.1 writes
    path = tmp_path / "norse.nir"
    nir.write(path, graph, compression=None)  # Norse's 0-d arrays cannot be gzip-compressed
    return path, graph


def test_norse_export_with_batch_dimension_is_accepted(norse_file, capsys):
    path, graph = norse_file
    g = trt_nm.read_nir(path)
    assert list(g.nodes["input"].input_type["input"]) == [20]
    assert "batch dimension" in g.metadata["trt_nm_note"]
    capsys.readouterr()
    assert main(["inspect", str(path), "--dt", "1e-6"]) == 0
    out, err = capsys.readouterr()
    assert "note: dropped a leading batch dimension of 1" in out and err == ""
    x = torch.rand(5, 3, 20) * 4
    net = trt_nm.from_nir(path, backend="torch", dt=1e-6)
    assert net(x).shape == (5, 3, 10)
    assert trt_nm.from_nir(graph, backend="torch", dt=1e-6)(x).shape == (5, 3, 10)  # in memory too
    res = trt_nm.simulate(g, x, dt=1e-6)
    assert torch.equal(res.logits, net(x).detach())


@pytest.mark.parametrize("shape", [[2, 20], [1, 21], [1, 1, 20]])
def test_real_batch_mismatches_are_still_refused(norse_file, capsys, shape):
    path, _ = norse_file
    _replace(path, "node/nodes/input/shape", lambda g, k: g.create_dataset(k, data=np.array(shape)))
    with pytest.raises(NirError, match="mismatched shapes"):
        trt_nm.read_nir(path)
    assert "mismatched shapes" in one_line_error(capsys, ["inspect", str(path), "--dt", "1e-6"])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
