"""Hostile dataset files: every file is refused with one line (or, for our own caches, rebuilt)
unless it checks out; nothing in a file is ever executed or followed.

Files are written in the real on-disk formats (CIFAR python pickles, N-MNIST/N-Caltech101
ATIS binary, DVS Gesture ``.npy``, SHD HDF5, the trt_nm ``.npz`` caches) and then damaged.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("tonic")
h5py = pytest.importorskip("h5py")

from trt_nm.cli.main import main  # noqa: E402
from trt_nm.datasets import cache as cache_mod  # noqa: E402
from trt_nm.datasets import (  # noqa: E402
    get_dataset,
    vision,
)
from trt_nm.datasets import neuromorphic as neuro  # noqa: E402
from trt_nm.datasets import nmnist5k as nm  # noqa: E402
from trt_nm.datasets import shd as shd_module  # noqa: E402
from trt_nm.datasets.errors import DatasetFileError  # noqa: E402
from trt_nm.datasets.frames import check_events  # noqa: E402
from trt_nm.datasets.mnist5k import load_mnist5k_arrays  # noqa: E402
from trt_nm.datasets.saccade import EVENT_DTYPE, SaccadeConfig, saccade_events  # noqa: E402


def one_line(exc: BaseException) -> str:
    msg = str(exc)
    assert "\n" not in msg and msg, msg
    return msg


# ======================================================================== CIFAR pickles


class Payload:
    """Unpickling this runs ``command`` in a shell (what a hostile CIFAR file does)."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class EvalPayload:
    def __init__(self, expr: str):
        self.expr = expr

    def __reduce__(self):
        return (eval, (self.expr,))


def cifar_entry(which: str, n: int, rng, **override) -> dict:
    classes = vision.NUM_CLASSES[which]
    entry = {
        "batch_label": "training batch 1 of 5",
        vision.LABEL_KEY[which]: rng.integers(0, classes, n).tolist(),
        "data": rng.integers(0, 256, (n, 3072)).astype(np.uint8),
        "filenames": [f"img_{i}.png" for i in range(n)],
    }
    if which == "cifar100":
        entry["coarse_labels"] = rng.integers(0, 20, n).tolist()
    entry.update(override)
    return entry


def meta_entry(which: str) -> dict:
    return {vision.NAMES_KEY[which]: [f"class{i}" for i in range(vision.NUM_CLASSES[which])]}


# --- a python2 cPickle writer (protocol 2, py2 ``str`` as BINSTRING), as the official files are


def _py2(obj) -> bytes:
    if isinstance(obj, bool):
        return b"\x88" if obj else b"\x89"
    if isinstance(obj, int):
        return b"J" + struct.pack("<i", obj)
    if obj is None:
        return b"N"
    if isinstance(obj, (str, bytes)):
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        return b"T" + struct.pack("<I", len(raw)) + raw
    if isinstance(obj, tuple):
        return b"(" + b"".join(_py2(v) for v in obj) + b"t"
    if isinstance(obj, list):
        return b"](" + b"".join(_py2(v) for v in obj) + b"e"
    if isinstance(obj, dict):
        return b"}(" + b"".join(_py2(k) + _py2(v) for k, v in obj.items()) + b"u"
    if isinstance(obj, np.ndarray):  # numpy 1.x under python 2: _reconstruct + __setstate__
        dtype = (b"cnumpy\ndtype\n" + _py2((obj.dtype.str[1:], False, True)) + b"R"
                 + _py2((3, "|", None, None, None, -1, -1, 0)) + b"b")
        return (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + _py2((0,)) + _py2("b") + b"\x87R"
                + b"(" + _py2(1) + _py2(tuple(obj.shape)) + dtype + _py2(False) + _py2(obj.tobytes()) + b"tb")
    raise TypeError(type(obj))


def py2_pickle(obj) -> bytes:
    return b"\x80\x02" + _py2(obj) + b"."


def dump(obj, protocol) -> bytes:
    return py2_pickle(obj) if protocol == "py2" else pickle.dumps(obj, protocol=protocol)


@pytest.fixture
def cifar(tmp_path, monkeypatch):
    """``write(which, {file: bytes or obj}, protocol, trust=True)``: a CIFAR folder whose files'
    md5 are registered in :data:`vision.CIFAR_MD5` (as tests must: the loader checks sums first)."""

    def write(which: str, override: dict | None = None, protocol=4, n: int = 4, trust: bool = True) -> Path:
        folder, train, test, meta, _ = vision.LAYOUT[which]
        d = tmp_path / folder
        d.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        contents = {f: cifar_entry(which, n, rng) for f in (*train, *test)}
        contents[meta] = meta_entry(which)
        contents.update(override or {})
        for f, obj in contents.items():
            (d / f).write_bytes(obj if isinstance(obj, bytes) else dump(obj, protocol))
            if trust:
                monkeypatch.setitem(vision.CIFAR_MD5[which], f, vision.file_md5(d / f))
        return d

    return write


def test_md5_table_is_torchvisions():
    tv = pytest.importorskip("torchvision.datasets")
    for name, cls in (("cifar10", tv.CIFAR10), ("cifar100", tv.CIFAR100)):
        expected = {f: m for f, m in (*cls.train_list, *cls.test_list)} | {cls.meta["filename"]: cls.meta["md5"]}
        assert vision.CIFAR_MD5[name] == expected


@pytest.mark.parametrize("protocol", ["py2", 2, 4, 5])
@pytest.mark.parametrize("which", ["cifar10", "cifar100"])
def test_real_format_pickles_load_exactly(cifar, tmp_path, which, protocol):
    entry = cifar_entry(which, 4, np.random.default_rng(9))
    cifar(which, {vision.LAYOUT[which][2][0]: entry}, protocol=protocol)
    ds = get_dataset(which, str(tmp_path), "test", T=2)
    assert len(ds) == 4 and ds.classes[1] == "class1"
    assert torch.equal(ds.data, torch.from_numpy(entry["data"].reshape(4, 3, 32, 32)))
    assert ds.targets.tolist() == entry[vision.LABEL_KEY[which]]


def test_md5_mismatch_is_refused_before_unpickling(cifar, tmp_path, monkeypatch):
    marker = tmp_path / "MARKER"
    d = cifar("cifar10")
    (d / "data_batch_2").write_bytes(pickle.dumps(Payload(f"touch {marker}")))  # sum not registered
    calls = []
    monkeypatch.setattr(vision, "restricted_load", lambda raw: calls.append(raw))
    with pytest.raises(DatasetFileError) as err:
        get_dataset("cifar10", str(tmp_path), "train", T=2)
    msg = one_line(err.value)
    assert str(d / "data_batch_2") in msg and "md5" in msg and vision.CIFAR_MD5["cifar10"]["data_batch_2"] in msg
    assert calls == [] and not marker.exists()


def test_official_sums_refuse_files_not_registered(tmp_path):
    """Without a test registering sums, only the official files load."""
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    for f in vision.CIFAR_MD5["cifar10"]:
        (d / f).write_bytes(pickle.dumps(cifar_entry("cifar10", 2, np.random.default_rng(1))))
    with pytest.raises(DatasetFileError, match=r"data_batch_1: md5 .* c99cafc152244af753f735de768cd75f"):
        get_dataset("cifar10", str(tmp_path), "train", T=2)


def _nested(payload):
    rng = np.random.default_rng(2)
    return cifar_entry("cifar10", 4, rng, labels=[0, 1, payload, 3])


@pytest.mark.parametrize(
    "make,global_name",
    [
        (lambda m: Payload(f"touch {m}"), "posix.system"),
        (lambda m: _nested(Payload(f"touch {m}")), "posix.system"),
        (lambda m: {"data": Payload(f"touch {m}")}, "posix.system"),
        (lambda m: EvalPayload(f"open({str(m)!r}, 'w')"), "builtins.eval"),
        (lambda m: b"\x80\x02c__builtin__\neval\nT" + struct.pack("<I", len(f"open({str(m)!r}, 'w')"))
         + f"open({str(m)!r}, 'w')".encode() + b"\x85R.", "__builtin__.eval"),
        (lambda m: b"\x80\x02csubprocess\nPopen\nN\x85R.", "subprocess.Popen"),
        (lambda m: b"\x80\x02cnumpy\nload\nN\x85R.", "numpy.load"),
        (lambda m: b"\x80\x02cpickle\nloads\nN\x85R.", "pickle.loads"),
        (lambda m: b"\x80\x02ccopy_reg\n_reconstructor\nN\x85R.", "copy_reg._reconstructor"),
    ],
)
def test_code_in_a_pickle_never_runs_even_with_a_matching_md5(cifar, tmp_path, make, global_name):
    marker = tmp_path / "MARKER"
    d = cifar("cifar10", {"data_batch_3": make(marker)})
    with pytest.raises(DatasetFileError) as err:
        get_dataset("cifar10", str(tmp_path), "train", T=2)
    msg = one_line(err.value)
    assert str(d / "data_batch_3") in msg and f"refused global {global_name}" in msg
    assert not marker.exists()


def test_cli_train_on_a_hostile_cifar_folder_is_one_line(cifar, tmp_path, capsys):
    marker = tmp_path / "MARKER"
    cifar("cifar10", {"data_batch_1": Payload(f"touch {marker}")})
    rc = main(["train", "--dataset", "cifar10", "--data-root", str(tmp_path), "--epochs", "1", "-T", "2",
               "--max-steps", "1", "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "data_batch_1" in err and "refused global posix.system" in err and not marker.exists()


def _np_pickle(arr) -> object:
    return cifar_entry("cifar10", 4, np.random.default_rng(3), data=arr)


@pytest.mark.parametrize(
    "override,needle",
    [
        ({"data_batch_2": _np_pickle(np.zeros((4, 3072), np.float32))}, "'data' must be a uint8 array"),
        ({"data_batch_2": _np_pickle(np.zeros((4, 1000), np.uint8))}, "got shape (4, 1000)"),
        ({"data_batch_2": _np_pickle(np.zeros((4, 32, 32, 3), np.uint8))}, "got shape (4, 32, 32, 3)"),
        ({"data_batch_2": _np_pickle([[0] * 3072] * 4)}, "'data' must be a uint8 array"),
        ({"data_batch_2": _np_pickle(np.array([None] * 4, dtype=object))}, "not a plain numeric type"),
        ({"data_batch_2": _np_pickle(np.zeros(4, dtype=[("a", "u1")]))}, "not a plain numeric type"),
        ({"data_batch_2": cifar_entry("cifar10", 4, np.random.default_rng(3), labels=[0, 1, 2])}, "3 labels in 'labels' for 4 images"),
        ({"data_batch_2": cifar_entry("cifar10", 4, np.random.default_rng(3), labels=[0, 1, 10, 2])}, "label 10 at image 2, outside [0, 10)"),
        ({"data_batch_2": cifar_entry("cifar10", 4, np.random.default_rng(3), labels=[0, -1, 1, 2])}, "label -1 at image 1"),
        ({"data_batch_2": cifar_entry("cifar10", 4, np.random.default_rng(3), labels=[0, 2**70, 1, 2])}, "outside [0, 10)"),
        ({"data_batch_2": cifar_entry("cifar10", 4, np.random.default_rng(3), labels=[0, True, 1, 2])}, "list of integer labels"),
        ({"data_batch_2": cifar_entry("cifar10", 4, np.random.default_rng(3), labels=["0", "1", "2", "3"])}, "list of integer labels"),
        ({"data_batch_2": cifar_entry("cifar10", 4, np.random.default_rng(3), labels=np.zeros(4, np.float32))}, "list of integer labels"),
        ({"data_batch_2": {"data": np.zeros((4, 3072), np.uint8)}}, "needs 'data' and 'labels'"),
        ({"data_batch_2": [1, 2, 3]}, "holds a list, expected a dict"),
        ({"data_batch_2": b""}, "corrupt or truncated"),
        ({"data_batch_2": pickle.dumps(cifar_entry("cifar10", 4, np.random.default_rng(3)))[:500]}, "corrupt or truncated"),
        ({"data_batch_2": b"\x80\x02Pid\n."}, "persistent"),
        ({"batches.meta": {"label_names": ["a"] * 9}}, "'label_names' must list 10 class names"),
        ({"batches.meta": {"names": []}}, "'label_names' must list 10"),
    ],
)
def test_cifar_contents_are_validated(cifar, tmp_path, override, needle):
    d = cifar("cifar10", override)
    with pytest.raises(DatasetFileError) as err:
        get_dataset("cifar10", str(tmp_path), "train", T=2)
    msg = one_line(err.value)
    assert str(d / next(iter(override))) in msg and needle in msg


def test_cifar_file_bigger_than_any_real_one_is_not_read(cifar, tmp_path, monkeypatch):
    d = cifar("cifar10")
    monkeypatch.setattr(vision, "MAX_FILE_BYTES", 1000)
    with pytest.raises(DatasetFileError) as err:
        get_dataset("cifar10", str(tmp_path), "test", T=2)
    msg = one_line(err.value)
    assert str(d / "test_batch") in msg and "more than any cifar10 file (1000 at most)" in msg


def test_cifar100_labels_are_checked_against_100_classes(cifar, tmp_path):
    rng = np.random.default_rng(4)
    ok = cifar_entry("cifar100", 4, rng, fine_labels=[0, 99, 50, 7])
    cifar("cifar100", {"test": ok})
    assert get_dataset("cifar100", str(tmp_path), "test", T=2).targets.tolist() == [0, 99, 50, 7]
    cifar("cifar100", {"test": cifar_entry("cifar100", 4, rng, fine_labels=[0, 100, 50, 7])})
    with pytest.raises(DatasetFileError, match=r"label 100 at image 1, outside \[0, 100\)"):
        get_dataset("cifar100", str(tmp_path), "test", T=2)


def test_restricted_unpickler_allows_only_the_listed_globals():
    assert set(vision.ALLOWED_GLOBALS) == {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"), ("_codecs", "encode"),
    }
    with pytest.raises(pickle.UnpicklingError, match="refused global"):
        vision.restricted_load(b"\x80\x02cos\nsystem\n.")
    # numpy.ndarray itself is a placeholder: calling it (to allocate) is not possible
    with pytest.raises(TypeError):
        vision.restricted_load(b"\x80\x02cnumpy\nndarray\nJ\x00\xe4\x0bT\x85R.")
    with pytest.raises(pickle.UnpicklingError, match="encode"):
        vision.restricted_load(b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x04\x00\x00\x00zlib\x86R.")
    # the wrappers check their arguments
    with pytest.raises(pickle.UnpicklingError, match="does not match its 3 data bytes"):
        vision._frombuffer(b"abc", np.dtype("u1"), (4,), "C")
    with pytest.raises(pickle.UnpicklingError, match="not a plain numeric type"):
        vision._dtype("O")
    with pytest.raises(pickle.UnpicklingError, match="reconstructor"):
        vision._reconstruct(vision._NDArrayType, (10**12,), b"b")
    for protocol in (2, 4, 5):
        arr = vision.restricted_load(pickle.dumps(np.arange(6, dtype=np.int64).reshape(2, 3), protocol=protocol))
        assert arr.dtype == np.int64 and arr.tolist() == [[0, 1, 2], [3, 4, 5]]


# ======================================================================== event sensors


def write_atis_bin(path: Path, x, y, t, p) -> None:
    """N-MNIST / N-Caltech101: 5 bytes per event (x, y, p<<7 | t[22:16], t[15:8], t[7:0])."""
    x, y, t, p = (np.asarray(a, dtype=np.int64) for a in (x, y, t, p))
    raw = np.stack([x, y, (p << 7) | ((t >> 16) & 127), (t >> 8) & 255, t & 255], axis=1).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw.tobytes())


def events(rng, n, w, h, t_max=300_000):
    return rng.integers(0, w, n), rng.integers(0, h, n), np.sort(rng.integers(0, t_max, n)), rng.integers(0, 2, n)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRT_NM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def nmnist_root(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "nmnist"
    for c in range(10):
        write_atis_bin(root / "NMNIST" / "Train" / str(c) / "00000.bin", *events(rng, 200, 34, 34))
    return root


@pytest.mark.parametrize("field,value,rng_text", [("x", 200, "[0, 34)"), ("y", 100, "[0, 34)"), ("x", 34, "[0, 34)")])
def test_nmnist_event_off_the_sensor(nmnist_root, cache, field, value, rng_text):
    ds = get_dataset("nmnist", str(nmnist_root), "train", T=2)
    bad = Path(ds.paths[4])
    x, y, t, p = events(np.random.default_rng(1), 50, 34, 34)
    (x if field == "x" else y)[7] = value
    write_atis_bin(bad, x, y, t, p)
    with pytest.raises(DatasetFileError) as err:
        get_dataset("nmnist", str(nmnist_root), "train", T=2)[4]
    msg = one_line(err.value)
    assert str(bad) in msg and f"field {field!r} holds {value}" in msg and rng_text in msg


def test_nmnist_timestamp_overflow_records_are_not_events(nmnist_root, cache):
    """ATIS files mark a timestamp overflow with y = 240 (x arbitrary): not an event off the sensor."""
    ds = get_dataset("nmnist", str(nmnist_root), "train", T=2)
    x, y, t, p = events(np.random.default_rng(7), 50, 34, 34, 8000)
    x[10], y[10] = 255, 240
    write_atis_bin(Path(ds.paths[2]), x, y, t, p)
    frames, label = get_dataset("nmnist", str(nmnist_root), "train", T=2)[2]
    assert label == 2 and int(frames.sum()) in (48, 49)  # 49 events, one maybe on the last bin edge


def write_gesture(root: Path, arrays: dict[str, np.ndarray]) -> Path:
    d = root / "DVSGesture" / "ibmGestureTrain" / "user01_fluorescent"
    d.mkdir(parents=True, exist_ok=True)
    for name, arr in arrays.items():
        np.save(d / name, arr)
    return d


def gesture_events(rng, n=300, **col):
    x, y, t, p = events(rng, n, 128, 128, 6000)  # t in ms, as tonic's files
    cols = {"x": x, "y": y, "p": p, "t": t}
    for k, (i, v) in col.items():
        cols[k][i] = v
    return np.stack([cols["x"], cols["y"], cols["p"], cols["t"]], axis=1).astype(np.int64)


@pytest.mark.parametrize(
    "col,needle",
    [
        ({"x": (3, 100000)}, "field 'x' holds 100000 at event 3, outside the sensor's x range [0, 128)"),
        ({"y": (5, -7)}, "field 'y' holds -7 at event 5, outside the sensor's y range [0, 128)"),
        ({"p": (0, 3)}, "field 'p' holds 3 at event 0, outside polarities [0, 2)"),
        ({"t": (0, -5)}, "field 't' holds -5 at event 0, outside timestamps [0, inf)"),
    ],
)
def test_dvsgesture_event_off_the_sensor(tmp_path, cache, col, needle):
    rng = np.random.default_rng(2)
    d = write_gesture(tmp_path / "g", {"0.npy": gesture_events(rng), "4.npy": gesture_events(rng, **col)})
    ds = get_dataset("dvsgesture", str(tmp_path / "g"), "train", T=2)
    assert ds[0][0].shape == (2, 2, 128, 128)
    with pytest.raises(DatasetFileError) as err:
        ds[1]
    msg = one_line(err.value)
    assert str(d / "4.npy") in msg and needle in msg


@pytest.mark.parametrize(
    "arr,needle",
    [
        (np.array([["a", "b", "c", "d"]]), "expected numeric"),
        (np.zeros((5, 3), np.int64), "[N, 4]"),
        (np.array([[1, 2, 3, 4]], dtype=object), "corrupt or truncated .npy"),
    ],
)
def test_dvsgesture_npy_contents(tmp_path, cache, arr, needle):
    d = write_gesture(tmp_path / "g", {"0.npy": arr})
    with pytest.raises(DatasetFileError) as err:
        get_dataset("dvsgesture", str(tmp_path / "g"), "train", T=2)[0]
    msg = one_line(err.value)
    assert str(d / "0.npy") in msg and needle in msg


def test_dvsgesture_label_outside_11_classes(tmp_path, cache):
    d = write_gesture(tmp_path / "g", {"11.npy": gesture_events(np.random.default_rng(3))})
    with pytest.raises(DatasetFileError) as err:
        get_dataset("dvsgesture", str(tmp_path / "g"), "train", T=2)[0]
    msg = one_line(err.value)
    assert str(d / "11.npy") in msg and "label 11 outside [0, 11)" in msg


def only_failure(ds) -> DatasetFileError | None:
    """The one DatasetFileError reading all samples of ``ds`` raises (None if none does)."""
    errors = []
    for i in range(len(ds)):
        try:
            ds[i]
        except DatasetFileError as exc:
            errors.append(exc)
    assert len(errors) <= 1
    return errors[0] if errors else None


def test_ncaltech101_event_off_the_atis(tmp_path, cache):
    rng = np.random.default_rng(4)
    root = tmp_path / "nc"
    for c in ("airplanes", "Faces_easy"):
        for k in range(2):
            write_atis_bin(root / "NCALTECH101" / "Caltech101" / c / f"image_{k:04d}.bin", *events(rng, 100, 240, 180))
    x, y, t, p = events(rng, 100, 240, 180)
    y[9] = 250  # the ATIS has 240 rows (240 itself marks a timestamp overflow)
    bad = root / "NCALTECH101" / "Caltech101" / "airplanes" / "image_0000.bin"
    write_atis_bin(bad, x, y, t, p)
    ds = get_dataset("ncaltech101", str(root), "train", T=2)
    msg = one_line(only_failure(ds))
    assert str(bad) in msg and "field 'y' holds 250" in msg and "[0, 240)" in msg


def test_cifar10dvs_event_off_the_sensor(tmp_path, cache):
    pytest.importorskip("aedat")
    writers = pytest.importorskip("test_datasets_formats")  # the suite's AEDAT 4.0 writer
    rng = np.random.default_rng(5)
    root = tmp_path / "c"
    for k in range(2):
        x, y, t, p = events(rng, 100, 128, 128, 1_000_000)
        if k == 0:
            x[2] = 30000
        writers.write_aedat4(root / "CIFAR10DVS" / "cat" / f"cifar10_cat_{k}.aedat4", t, x, y, p)
    msg = one_line(only_failure(get_dataset("cifar10dvs", str(root), "train", T=2)) or only_failure(
        get_dataset("cifar10dvs", str(root), "test", T=2)))
    assert "cifar10_cat_0.aedat4" in msg and "field 'x' holds 30000" in msg and "[0, 128)" in msg


@pytest.mark.parametrize(
    "dtype,changes,needle",
    [
        (EVENT_DTYPE, {"x": 40}, "field 'x' holds 40"),
        (EVENT_DTYPE, {"p": -1}, "field 'p' holds -1"),
        (np.dtype([("x", float), ("y", int), ("t", float), ("p", int)]), {"t": np.nan}, "field 't' holds nan"),
        (np.dtype([("x", int), ("t", int)]), {}, "lack the field(s) p"),
        (np.dtype([("x", "U3"), ("y", int), ("t", int), ("p", int)]), {}, "field 'x' has type <U3"),
    ],
)
def test_check_events(dtype, changes, needle):
    ev = np.zeros(5, dtype=dtype)
    for k, v in changes.items():
        ev[k][2] = v
    assert needle in check_events(ev, (34, 34, 2))
    assert check_events(np.zeros(5, dtype=EVENT_DTYPE), (34, 34, 2)) is None


# ======================================================================== SHD HDF5


def _vlen(f, name, n, dtype, make):
    ds = f.create_dataset(name, (n,), dtype=h5py.vlen_dtype(dtype))
    for i in range(n):
        ds[i] = make(i)


def write_shd(path: Path, n: int = 6, labels=None, sample2=None, replace: dict | None = None) -> Path:
    """The SHD layout: ``spikes/times`` (vlen float32 seconds), ``spikes/units`` (vlen uint16),
    ``labels`` (uint16), ``extra/``. ``sample2 = (times, units)`` replaces sample 2's spikes;
    ``replace = {name: make(f, name)}`` creates that object some other way."""
    rng = np.random.default_rng(6)
    spikes = [(np.sort(rng.random(40)).astype(np.float32), rng.integers(0, 700, 40).astype(np.uint16)) for _ in range(n)]
    if sample2 is not None:
        spikes[2] = sample2
    replace = replace or {}
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for name, col, dtype in (("spikes/times", 0, np.float32), ("spikes/units", 1, np.uint16)):
            if name not in replace:
                _vlen(f, name, n, dtype, lambda i, c=col: spikes[i][c])
        if "labels" not in replace:
            f.create_dataset("labels", data=np.asarray(labels if labels is not None else rng.integers(0, 20, n), dtype=np.uint16))
        for name, make in replace.items():
            make(f, name)
        f.create_dataset("extra/keys", data=np.array([f"word{i}".encode() for i in range(20)]))
        f.create_dataset("extra/speaker", data=rng.integers(0, 12, n).astype(np.uint16))
    return path


@pytest.fixture
def shd(tmp_path):
    return tmp_path / "s", tmp_path / "s" / "SHD" / "shd_train.h5"


def test_shd_label_outside_20_classes(shd, cache):
    root, path = shd
    write_shd(path, labels=[0, 1, 50, 3, 4, 5])
    with pytest.raises(DatasetFileError) as err:
        get_dataset("shd", str(root), "train", T=3)
    msg = one_line(err.value)
    assert str(path) in msg and "'labels' holds 50 at sample 2" in msg and "[0, 20)" in msg


@pytest.mark.parametrize(
    "times,units,needle",
    [
        ([0.1, 0.2, 0.3], [1, 5000, 3], "'spikes/units' holds 5000 at spike 1, outside the 700 channels [0, 700)"),
        ([0.1, 0.2, 0.3], [1, 700, 3], "'spikes/units' holds 700 at spike 1"),
        ([0.1, np.nan, 0.3], [1, 2, 3], "'spikes/times' holds nan at spike 1, outside times (s) [0.0, inf)"),
        ([0.1, np.inf, 0.3], [1, 2, 3], "'spikes/times' holds inf at spike 1"),
        ([-0.5, 0.2, 0.3], [1, 2, 3], "'spikes/times' holds -0.5 at spike 0"),
        ([0.1, 0.2, 0.3], [1, 2], "3 spike times but 2 spike units"),
    ],
)
def test_shd_spikes_off_the_sensor(shd, cache, times, units, needle):
    root, path = shd
    write_shd(path, sample2=(np.array(times, np.float32), np.array(units, np.uint16)))
    ds = get_dataset("shd", str(root), "train", T=3)
    assert ds[1][0].shape == (3, 1, 1, 700)
    with pytest.raises(DatasetFileError) as err:
        ds[2]
    msg = one_line(err.value)
    assert f"{path} (sample 2)" in msg and needle in msg


def _external_link(target: Path):
    def make(f, name):
        write_shd(target)
        f[name] = h5py.ExternalLink(str(target), "/" + name)
    return make


def _soft_link(f, name):
    f.create_dataset("elsewhere", data=np.zeros(6, np.uint16))
    f[name] = h5py.SoftLink("/elsewhere")


def _external_storage(raw: Path):
    def make(f, name):
        raw.write_bytes(np.arange(6, dtype="<u2").tobytes())
        f.create_dataset(name, shape=(6,), dtype="<u2", external=[(str(raw), 0, 12)])
    return make


def _virtual(target: Path):
    def make(f, name):
        write_shd(target)
        layout = h5py.VirtualLayout(shape=(6,), dtype=np.uint16)
        layout[:] = h5py.VirtualSource(str(target), "labels", shape=(6,))
        f.create_virtual_dataset(name, layout)
    return make


def _huge(f, name):  # declares 2 million samples in a few kB (chunked, compressed, never written)
    f.create_dataset(name, shape=(2_000_000,), dtype=np.uint16, chunks=(4096,), compression="gzip")


def _plugin_filter(f, name):  # an (optional) filter id that only a plugin library provides
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_chunk((6,))
    dcpl.set_filter(32004, h5py.h5z.FLAG_OPTIONAL, ())
    h5py.h5d.create(f.id, name.encode(), h5py.h5t.STD_U16LE, h5py.h5s.create_simple((6,)), dcpl=dcpl)


def _spikes_external(target: Path):
    def make(f, name):
        write_shd(target)
        f["spikes"] = h5py.ExternalLink(str(target), "/spikes")
    return make


def _data(arr):
    return lambda f, name: f.create_dataset(name, data=arr)


def _nothing(f, name):
    pass


@pytest.mark.parametrize(
    "case,needle",
    [
        ("external link", "'spikes/times' is an external link; only data stored in this file is read"),
        ("external group", "'spikes' is an external link"),
        ("soft link", "'labels' is a soft link"),
        ("external storage", "'labels' keeps its data in external files"),
        ("virtual dataset", "'labels' is a virtual dataset"),
        ("declared too big", "'labels' declares 2000000 samples, more than the 1000000 allowed"),
        ("plugin filter", "'labels' uses HDF5 filter 32004, not a built-in one"),
        ("float labels", "'labels' must be a 1-D integer array"),
        ("2-D labels", "'labels' must be a 1-D integer array"),
        ("5 labels, 6 samples", "'spikes/times' holds 6 samples, 'labels' 5"),
        ("labels a group", "'labels' is not an HDF5 dataset"),
        ("no units", "no 'spikes/units'"),
        ("fixed-size times", "'spikes/times' must be a 1-D array of variable-length float arrays"),
        ("string units", "'spikes/units' must be a 1-D array of variable-length integer arrays"),
    ],
)
def test_shd_hdf5_is_read_only_from_the_file_itself(shd, tmp_path, cache, case, needle):
    root, path = shd
    other = tmp_path / "other.h5"
    replace = {
        "external link": {"spikes/times": _external_link(other)},
        "external group": {"spikes/times": _nothing, "spikes/units": _spikes_external(other)},
        "soft link": {"labels": _soft_link},
        "external storage": {"labels": _external_storage(tmp_path / "labels.raw")},
        "virtual dataset": {"labels": _virtual(other)},
        "declared too big": {"labels": _huge},
        "plugin filter": {"labels": _plugin_filter},
        "float labels": {"labels": _data(np.zeros(6, np.float32))},
        "2-D labels": {"labels": _data(np.zeros((6, 1), np.uint16))},
        "5 labels, 6 samples": {"labels": _data(np.zeros(5, np.uint16))},
        "labels a group": {"labels": lambda f, name: f.create_group(name)},
        "no units": {"spikes/units": _nothing},
        "fixed-size times": {"spikes/times": _data(np.zeros((6, 4), np.float32))},
        "string units": {"spikes/units": lambda f, name: _vlen(f, name, 6, str, lambda i: "abc")},
    }[case]
    write_shd(path, replace=replace)
    with pytest.raises(DatasetFileError) as err:
        get_dataset("shd", str(root), "train", T=3)
    msg = one_line(err.value)
    assert str(path) in msg and needle in msg


def test_shd_not_hdf5_or_empty(shd, cache):
    root, path = shd
    path.parent.mkdir(parents=True)
    for raw in (b"", b"\x89HDF\r\n\x1a\n" + b"\0" * 20):
        path.write_bytes(raw)
        with pytest.raises(DatasetFileError, match=f"{path}: not an SHD HDF5 file"):
            get_dataset("shd", str(root), "train", T=3)


def test_shd_reader_matches_tonic(shd, cache):
    root, path = shd
    write_shd(path)
    tonic_shd = neuro.offline_class("SHD")(str(root), train=True)
    ours = shd_module.SHDFile(path)
    assert len(ours) == len(tonic_shd) == 6
    for j in range(6):
        (a, la), (b, lb) = ours[j], tonic_shd[j]
        assert a.dtype == b.dtype and np.array_equal(a, b) and la == int(lb)


def test_cli_train_on_shd_with_a_bad_label_is_one_line(shd, cache, capsys, tmp_path):
    root, path = shd
    write_shd(path, labels=[0, 1, 2, 3, 4, 20])
    rc = main(["train", "--dataset", "shd", "--data-root", str(root), "--model", "mlp", "--epochs", "1",
               "-T", "3", "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "shd_train.h5" in err and "'labels' holds 20 at sample 5" in err


# ======================================================================== caches


@pytest.fixture
def small_nmnist5k(monkeypatch, tmp_path):
    images, labels = load_mnist5k_arrays()
    images, labels = images[:24], labels[:24]
    monkeypatch.setattr(nm, "load_mnist5k_arrays", lambda: (images, labels))
    splits = {"train": np.arange(0, 16), "val": np.arange(16, 20), "test": np.arange(20, 24)}
    monkeypatch.setattr(nm, "split_indices", lambda lab, split: splits[split])
    monkeypatch.setenv("TRT_NM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _meta(path: Path) -> np.ndarray:
    with np.load(path, allow_pickle=False) as z:
        return z["__meta__"]


FRAMES_TAMPER = {
    "label 99": lambda a: {**a, "labels": np.where(np.arange(len(a["labels"])) == 3, 99, a["labels"])},
    "label -1": lambda a: {**a, "labels": np.where(np.arange(len(a["labels"])) == 0, -1, a["labels"])},
    "string frames": lambda a: {**a, "frames": np.array(["frame"] * len(a["labels"]))},
    "50 labels, 1000 frames": lambda a: {"frames": np.zeros((1000, *a["frames"].shape[1:]), np.uint8),
                                         "labels": np.zeros(50, np.int64), "index": np.arange(1000)},
    "float labels": lambda a: {**a, "labels": a["labels"].astype(np.float64)},
    "wrong T": lambda a: {**a, "frames": a["frames"][:, :1]},
    "index past the digits": lambda a: {**a, "index": a["index"] + 10**6},
    "repeated index": lambda a: {**a, "index": np.zeros_like(a["index"])},
    "no index": lambda a: {k: v for k, v in a.items() if k != "index"},
}


@pytest.mark.parametrize("tamper", list(FRAMES_TAMPER))
def test_nmnist5k_frames_cache_with_bad_contents_is_rebuilt(small_nmnist5k, tamper):
    ds = get_dataset("nmnist5k", None, "val", T=2)
    path = next(small_nmnist5k.glob("nmnist5k-frames-*.npz"))
    good = {k: v for k, v in cache_mod.load_npz(path).items() if k != "__meta__"}
    cache_mod.atomic_save_npz(path, {**FRAMES_TAMPER[tamper](good), "__meta__": _meta(path)})
    assert nm.check_frames_cache(cache_mod.load_npz(path), 2) is not None
    again = get_dataset("nmnist5k", None, "val", T=2)
    assert not again.cache_hit and torch.equal(again.frames, ds.frames) and torch.equal(again.labels, ds.labels)
    assert get_dataset("nmnist5k", None, "val", T=2).cache_hit  # and the rebuilt file is good


EVENTS_TAMPER = {
    "label 99": lambda a: {**a, "labels": np.full_like(a["labels"], 99)},
    "x off the sensor": lambda a: {**a, "x": np.full_like(a["x"], 200)},
    "p = 2": lambda a: {**a, "p": np.full_like(a["p"], 2)},
    "offsets decrease": lambda a: {**a, "offsets": a["offsets"][::-1].copy()},
    "offsets past the events": lambda a: {**a, "offsets": a["offsets"] + 5},
    "one label short": lambda a: {**a, "labels": a["labels"][:-1]},
    "string t": lambda a: {**a, "t": np.array(["t"] * len(a["t"]))},
    "2-D x": lambda a: {**a, "x": a["x"].reshape(1, -1)},
}


@pytest.mark.parametrize("tamper", list(EVENTS_TAMPER))
def test_nmnist5k_events_cache_with_bad_contents_is_rebuilt(small_nmnist5k, tamper):
    cfg = SaccadeConfig()
    good, hit = nm.nmnist5k_events(cfg)
    assert not hit
    path = next(small_nmnist5k.glob("nmnist5k-events-*.npz"))
    cache_mod.atomic_save_npz(path, {**EVENTS_TAMPER[tamper](good), "__meta__": _meta(path)})
    again, hit = nm.nmnist5k_events(cfg)
    assert not hit and all(np.array_equal(again[k], good[k]) for k in good)
    assert nm.nmnist5k_events(cfg)[1]


def test_nmnist5k_stale_index_into_fewer_events_is_one_line(small_nmnist5k, monkeypatch):
    ds = get_dataset("nmnist5k", None, "test", T=2)
    ds._index = ds._index + 100  # as if the frames cache pointed past the 24 digits generated
    with pytest.raises(DatasetFileError, match="refers to digit 120, but the events cover 24"):
        ds.events(0)


SAMPLE_TAMPER = {
    "label 99": lambda a: {**a, "label": np.int64(99)},
    "label -1": lambda a: {**a, "label": np.int64(-1)},
    "string frames": lambda a: {**a, "frames": np.array(["x"] * 4)},
    "50 labels": lambda a: {**a, "label": np.zeros(50, np.int64)},
    "float label": lambda a: {**a, "label": np.float64(1.0)},
    "frames of another T": lambda a: {**a, "frames": np.zeros((7, 2, 34, 34), np.uint16)},
    "negative counts": lambda a: {**a, "frames": -np.ones(a["frames"].shape, np.float32)},
    "nan counts": lambda a: {**a, "frames": np.full(a["frames"].shape, np.nan, np.float32)},
    "no label": lambda a: {"frames": a["frames"]},
}


@pytest.mark.parametrize("tamper", list(SAMPLE_TAMPER))
def test_sample_cache_with_bad_contents_is_recomputed(nmnist_root, cache, tamper):
    ds = get_dataset("nmnist", str(nmnist_root), "train", T=2)
    x0, y0 = ds[3]
    path = ds.cache.path(3)
    cache_mod.atomic_save_npz(path, SAMPLE_TAMPER[tamper](cache_mod.load_npz(path)))
    again = get_dataset("nmnist", str(nmnist_root), "train", T=2)
    x1, y1 = again[3]
    assert (again.cache.hits, again.cache.misses) == (0, 1)
    assert torch.equal(x0, x1) and y0 == y1
    assert cache_mod.load_npz(path)["label"] == y0  # replaced by the recomputed entry


def _npy_member(header_shape, data: bytes, dtype="<u1") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": header_shape})
    return buf.getvalue() + data


def _zip(path: Path, members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, raw in members.items():
            zf.writestr(name, raw)
    return path


@pytest.mark.parametrize(
    "make",
    [
        # a compressed member declaring 10^12 bytes (would allocate before reading)
        lambda p: _zip(p, {"a.npy": _npy_member((10**12,), b"\0" * 1000)}, zipfile.ZIP_DEFLATED),
        # a stored member whose header declares more than it holds
        lambda p: _zip(p, {"a.npy": _npy_member((10**10,), b"\0" * 100)}),
        # object arrays need pickle: refused (np.load with allow_pickle=False never unpickles)
        lambda p: np.savez(p, a=np.array([Payload(f"touch {p.parent / 'MARKER'}")], dtype=object)),
        lambda p: _zip(p, {"a.txt": b"hello"}),
        lambda p: p.write_bytes(b"PK\x03\x04 not a zip"),
        lambda p: p.write_bytes(b""),
    ],
)
def test_load_npz_refuses_what_it_did_not_write(tmp_path, make):
    path = tmp_path / "x.npz"
    make(path)
    assert cache_mod.load_npz(path) is None
    assert not (tmp_path / "MARKER").exists()
    calls = []
    out, _, hit = cache_mod.cached_arrays("x", {}, lambda: calls.append(1) or {"a": np.arange(3)}, tmp_path)
    assert calls == [1] and not hit


def test_load_npz_reads_what_atomic_save_writes(tmp_path):
    arrays = {"a": np.arange(5, dtype=np.int64), "b": np.zeros((2, 3), np.uint16), "s": np.array("meta"), "e": np.zeros(0)}
    cache_mod.atomic_save_npz(tmp_path / "x.npz", arrays)
    back = cache_mod.load_npz(tmp_path / "x.npz")
    assert set(back) == set(arrays) and all(np.array_equal(back[k], arrays[k]) for k in arrays)
    assert cache_mod.load_npz(tmp_path / "x.npz", validate=lambda a: "no") is None


def test_unwritable_cache_is_one_line(tmp_path, monkeypatch):
    def fail(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(cache_mod, "atomic_write_bytes", fail)
    with pytest.raises(cache_mod.TrtNmError, match=r"cannot write cache file .*x-.*\.npz: Permission denied"):
        cache_mod.cached_arrays("x", {}, lambda: {"a": np.arange(3)}, tmp_path)


# ======================================================================== progress


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_saccade_progress_bar_on_a_terminal_only(monkeypatch, capsys):
    images = load_mnist5k_arrays()[0][:6]
    saccade_events(images, chunk=2)
    assert capsys.readouterr().err == ""  # stderr is not a terminal: quiet
    saccade_events(images, chunk=2, progress=True)
    assert "saccade events" in capsys.readouterr().err
    tty = TTY()
    monkeypatch.setattr(sys, "stderr", tty)
    saccade_events(images, chunk=2)
    assert "saccade events" in tty.getvalue() and "/6" in tty.getvalue()
    quiet = TTY()
    monkeypatch.setattr(sys, "stderr", quiet)
    saccade_events(images, chunk=2, progress=False)
    assert quiet.getvalue() == ""


def test_nmnist5k_generation_shows_progress_on_a_terminal(small_nmnist5k, monkeypatch, capsys):
    get_dataset("nmnist5k", None, "val", T=2)
    assert capsys.readouterr().err == ""
    tty = TTY()
    monkeypatch.setattr(sys, "stderr", tty)
    get_dataset("nmnist5k", None, "test", T=3, threshold=0.4)  # new events and new frames
    out = tty.getvalue()
    assert "saccade events" in out and "nmnist5k test frames" in out
    quiet = TTY()
    monkeypatch.setattr(sys, "stderr", quiet)
    get_dataset("nmnist5k", None, "test", T=3, threshold=0.4)  # cached: nothing to show
    assert quiet.getvalue() == ""
