"""Dataset loaders on small files written in each dataset's real on-disk format.

The files are read by tonic's / torchvision's own dataset classes (download disabled),
i.e. the code path ``trt-nm train --dataset NAME --data-root DIR`` runs.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("tonic")
h5py = pytest.importorskip("h5py")
pytest.importorskip("torchvision")

from trt_nm.cli.main import main  # noqa: E402
from trt_nm.datasets import dataset_info, get_dataset, missing_files  # noqa: E402
from trt_nm.datasets.errors import DatasetFileError, MissingDatasetError  # noqa: E402
from trt_nm.errors import ConfigError, TrtNmError  # noqa: E402

# ------------------------------------------------------------------------ writers


def write_atis_bin(path: Path, x, y, t, p) -> None:
    """N-MNIST / N-Caltech101 binary: 5 bytes per event (x, y, p<<7 | t[22:16], t[15:8], t[7:0])."""
    x, y, t, p = (np.asarray(a, dtype=np.int64) for a in (x, y, t, p))
    raw = np.stack([x, y, (p << 7) | ((t >> 16) & 127), (t >> 8) & 255, t & 255], axis=1).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw.tobytes())


def random_events(rng, n, w, h, t_max):
    t = np.sort(rng.integers(0, t_max, n))
    return rng.integers(0, w, n), rng.integers(0, h, n), t, rng.integers(0, 2, n)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("TRT_NM_CACHE", str(d))
    return d


@pytest.fixture
def nmnist_root(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    for folder, per_class in (("Train", 3), ("Test", 1)):
        for c in range(10):
            for k in range(per_class):
                write_atis_bin(root / "NMNIST" / folder / str(c) / f"{k:05d}.bin", *random_events(rng, 300, 34, 34, 300_000))
    return root


# ------------------------------------------------------------------------ N-MNIST


def test_nmnist_frames_labels_and_exact_counts(nmnist_root, cache):
    ds = get_dataset("nmnist", str(nmnist_root), "train", T=5)
    assert len(ds) == 30 and ds.info.in_channels == 2
    labels = sorted({ds[i][1] for i in range(len(ds))})
    assert labels == list(range(10))
    x, y = ds[0]
    assert x.shape == (5, 2, 34, 34) and x.dtype == torch.float32
    # every event of the file lands in exactly one bin (tonic reads the binary exactly)
    from tonic.io import read_mnist_file

    ev = read_mnist_file(ds.paths[0], dtype=np.dtype([("x", int), ("y", int), ("t", int), ("p", int)]))
    # tonic's ToFrame bins are half-open: the event at the very last timestamp falls out
    body = ev[ev["t"] < ev["t"].max()]
    assert len(ev) == 300 and int(x.sum()) == len(body)
    assert int(x[:, 1].sum()) == int(body["p"].sum())
    assert int(x[:, :, body["y"][0], body["x"][0]].sum()) >= 1
    test = get_dataset("nmnist", str(nmnist_root), "test", T=5)
    assert len(test) == 10


def test_nmnist_cache_is_read_and_keyed_by_parameters(nmnist_root, cache):
    ds = get_dataset("nmnist", str(nmnist_root), "train", T=3)
    first = torch.stack([ds[i][0] for i in range(len(ds))])
    assert ds.cache.misses == len(ds) and ds.cache.hits == 0
    again = get_dataset("nmnist", str(nmnist_root), "train", T=3)
    second = torch.stack([again[i][0] for i in range(len(again))])
    assert again.cache.hits == len(again) and again.cache.misses == 0
    assert torch.equal(first, second)
    other = get_dataset("nmnist", str(nmnist_root), "train", T=4)  # a preprocessing change
    assert other[0][0].shape[0] == 4
    assert other.cache.misses == 1 and other.cache.dir != again.cache.dir
    # a changed source file changes the key as well
    write_atis_bin(Path(ds.paths[0]), [1, 2, 5], [3, 4, 6], [10, 20, 30], [0, 1, 1])
    changed = get_dataset("nmnist", str(nmnist_root), "train", T=3)
    assert changed.cache.dir != again.cache.dir
    assert int(changed[0][0].sum()) == 2  # 3 events, the last on tonic's open bin edge


def test_cache_from_older_version_is_rebuilt(nmnist_root, cache):
    ds = get_dataset("nmnist", str(nmnist_root), "train", T=2)
    ds[0]
    meta = ds.cache.dir / "meta.json"
    old = json.loads(meta.read_text())
    old["cache_version"] = 0
    meta.write_text(json.dumps(old))
    (ds.cache.dir / "0000001.npz").write_bytes(b"garbage")  # and a damaged entry
    again = get_dataset("nmnist", str(nmnist_root), "train", T=2)
    x0, _ = again[0]
    x1, _ = again[1]
    assert again.cache.misses == 2 and again.cache.hits == 0
    assert json.loads(meta.read_text())["cache_version"] != 0
    assert torch.equal(x0, ds[0][0])


@pytest.mark.parametrize("damage", ["truncate", "empty"])
def test_nmnist_corrupt_file_names_its_path(nmnist_root, cache, damage):
    ds = get_dataset("nmnist", str(nmnist_root), "train", T=2)
    bad = Path(ds.paths[3])
    bad.write_bytes(bad.read_bytes()[:-2] if damage == "truncate" else b"")
    ds = get_dataset("nmnist", str(nmnist_root), "train", T=2)
    with pytest.raises(DatasetFileError, match=str(bad)):
        ds[3]


def test_nmnist_missing_root_split_and_empty_dir(tmp_path, cache):
    with pytest.raises(ConfigError, match="data-root"):
        get_dataset("nmnist", None, "train", T=2)
    with pytest.raises(MissingDatasetError, match="does not exist"):
        get_dataset("nmnist", str(tmp_path / "nope"), "train", T=2)
    (tmp_path / "NMNIST" / "Train").mkdir(parents=True)  # an empty directory
    with pytest.raises(MissingDatasetError, match=r"train.zip.*NMNIST/Train/"):
        get_dataset("nmnist", str(tmp_path), "train", T=2)
    with pytest.raises(ConfigError, match="valid splits: train, test"):
        get_dataset("nmnist", str(tmp_path), "validation", T=2)
    with pytest.raises(ConfigError, match="T must be"):
        get_dataset("nmnist", str(tmp_path), "train", T=0)
    assert len(missing_files("nmnist", str(tmp_path))) == 2


def test_cli_train_on_nmnist_files(nmnist_root, cache, tmp_path, capsys):
    rc = main(["train", "--dataset", "nmnist", "--data-root", str(nmnist_root), "--epochs", "1",
               "--batch-size", "16", "-T", "2", "--max-steps", "2", "--out", str(tmp_path / "run"), "--quiet"])
    assert rc == 0
    assert "per-timestep test accuracy" in capsys.readouterr().out


def test_cli_missing_dataset_is_one_line_exit_2(tmp_path, cache, capsys):
    rc = main(["train", "--dataset", "nmnist", "--data-root", str(tmp_path), "--out", str(tmp_path / "r"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "NMNIST/Train" in err and "--download" in err


def test_cli_corrupt_file_is_one_line_with_path(nmnist_root, cache, tmp_path, capsys):
    bad = sorted((nmnist_root / "NMNIST" / "Test").rglob("*.bin"))[0]
    bad.write_bytes(b"\x01\x02\x03")
    rc = main(["train", "--dataset", "nmnist", "--data-root", str(nmnist_root), "--epochs", "1",
               "--batch-size", "16", "-T", "2", "--max-steps", "1", "--test-limit", "4",
               "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and str(bad) in err


# ------------------------------------------------------------------------ DVS128 Gesture


def test_dvsgesture_npy_layout(tmp_path, cache):
    rng = np.random.default_rng(1)
    root = tmp_path / "g"
    for folder in ("ibmGestureTrain", "ibmGestureTest"):
        for user, light in (("user01", "fluorescent"), ("user02", "led")):
            for label in (0, 4, 10):
                x, y, t, p = random_events(rng, 500, 128, 128, 6000)  # t in ms, as in tonic's files
                d = tmp_path / "g" / "DVSGesture" / folder / f"{user}_{light}"
                d.mkdir(parents=True, exist_ok=True)
                np.save(d / f"{label}.npy", np.stack([x, y, p, t], axis=1).astype(np.int64))
    ds = get_dataset("dvsgesture", str(root), "train", T=4)
    assert len(ds) == 6 and ds.info.num_classes == 11
    x, y = ds[0]
    assert x.shape == (4, 2, 128, 128) and int(x.sum()) in (499, 500)  # tonic: last-edge event
    assert sorted({ds[i][1] for i in range(6)}) == [0, 4, 10]
    bad = Path(ds.paths[1])
    bad.write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DatasetFileError, match=str(bad)):
        get_dataset("dvsgesture", str(root), "train", T=4)[1]


# ------------------------------------------------------------------------ N-Caltech101


def test_ncaltech101_48px_split_and_augment(tmp_path, cache):
    rng = np.random.default_rng(2)
    root = tmp_path / "nc"
    classes = ["Faces_easy", "airplanes", "BACKGROUND_Google"]
    for c in classes:
        for k in range(10):
            x, y, t, p = random_events(rng, 400, 200, 150, 300_000)
            write_atis_bin(root / "NCALTECH101" / "Caltech101" / c / f"image_{k:04d}.bin", x + 20, y + 10, t, p)
    tr = get_dataset("ncaltech101", str(root), "train", T=3)
    te = get_dataset("ncaltech101", str(root), "test", T=3)
    assert (len(tr), len(te)) == (27, 3)
    assert set(tr.indices).isdisjoint(te.indices)
    x, y = te[0]
    assert x.shape == (3, 2, 48, 48) and 0 <= y < 101
    assert sorted({te[i][1] for i in range(3)}) == [0, 1, 2]  # sorted folder names
    # 240x180 -> 48x48 bilinear keeps roughly the event mass (x25 fewer pixels)
    assert 400 / 25 * 0.5 < float(x.sum()) < 400 / 25 * 2
    assert tr.augment is not None and te.augment is None
    torch.manual_seed(0)
    a = torch.stack([tr[0][0] for _ in range(4)])
    assert not all(torch.equal(a[0], a[k]) for k in range(1, 4))  # random flip/shift
    assert get_dataset("ncaltech101", str(root), "train", T=3, augment=False).augment is None


# ------------------------------------------------------------------------ SHD


def write_shd(path: Path, n: int, rng) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        vf, vu = h5py.vlen_dtype(np.float32), h5py.vlen_dtype(np.uint16)
        times = f.create_dataset("spikes/times", (n,), dtype=vf)
        units = f.create_dataset("spikes/units", (n,), dtype=vu)
        for i in range(n):
            k = int(rng.integers(50, 200))
            times[i] = np.sort(rng.random(k).astype(np.float32))  # seconds
            units[i] = rng.integers(0, 700, k).astype(np.uint16)
        f.create_dataset("labels", data=rng.integers(0, 20, n).astype(np.uint16))
        f.create_dataset("extra/keys", data=np.array([f"word{i}".encode() for i in range(20)]))
        f.create_dataset("extra/speaker", data=rng.integers(0, 12, n).astype(np.uint16))


def test_shd_hdf5_layout(tmp_path, cache):
    rng = np.random.default_rng(3)
    root = tmp_path / "s"
    write_shd(root / "SHD" / "shd_train.h5", 12, rng)
    write_shd(root / "SHD" / "shd_test.h5", 4, rng)
    ds = get_dataset("shd", str(root), "train", T=7)
    assert len(ds) == 12 and dataset_info("shd").sample_shape(7) == (7, 1, 1, 700)
    x, y = ds[0]
    with h5py.File(root / "SHD" / "shd_train.h5", "r") as f:
        n_spikes = len(f["spikes/times"][0])
        assert y == int(f["labels"][0])
    assert x.shape == (7, 1, 1, 700) and 0 <= y < 20
    assert get_dataset("shd", str(root), "train", T=7, flat=True)[0][0].shape == (7, 700)
    assert n_spikes - 1 <= int(x.sum()) <= n_spikes  # tonic drops an event at the last edge at most
    again = get_dataset("shd", str(root), "train", T=7)
    assert torch.equal(again[0][0], x) and again.cache.hits == 1
    rc = main(["train", "--dataset", "shd", "--data-root", str(root), "--model", "mlp", "--epochs", "1",
               "-T", "7", "--out", str(tmp_path / "run"), "--quiet"])
    assert rc == 0  # the zoo's mlp takes SHD samples as they are
    (root / "SHD" / "shd_test.h5").write_bytes(b"not hdf5")
    with pytest.raises(DatasetFileError, match="shd_test.h5"):
        get_dataset("shd", str(root), "test", T=7)


# ------------------------------------------------------------------------ CIFAR-10/100


def write_cifar(root: Path, which: str, n: int, rng, monkeypatch) -> None:
    """CIFAR python batches; their md5 sums are registered (the loader checks them first)."""
    from trt_nm.datasets import vision

    if which == "cifar10":
        d = root / "cifar-10-batches-py"
        files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        label_key, meta = "labels", ("batches.meta", {"label_names": [f"c{i}" for i in range(10)]})
        classes = 10
    else:
        d = root / "cifar-100-python"
        files = ["train", "test"]
        label_key, meta = "fine_labels", ("meta", {"fine_label_names": [f"c{i}" for i in range(100)]})
        classes = 100
    d.mkdir(parents=True, exist_ok=True)
    for f in files:
        entry = {"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8), label_key: rng.integers(0, classes, n).tolist()}
        with open(d / f, "wb") as fh:
            pickle.dump(entry, fh)
    with open(d / meta[0], "wb") as fh:
        pickle.dump(meta[1], fh)
    for f in [*files, meta[0]]:
        monkeypatch.setitem(vision.CIFAR_MD5[which], f, vision.file_md5(d / f))


@pytest.mark.parametrize("which,classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_pickles_direct_coding_and_augmentation(tmp_path, which, classes, monkeypatch):
    rng = np.random.default_rng(4)
    write_cifar(tmp_path, which, 8, rng, monkeypatch)
    train = get_dataset(which, str(tmp_path), "train", T=3)
    test = get_dataset(which, str(tmp_path), "test", T=3)
    assert len(train) == (40 if which == "cifar10" else 8) and len(test) == 8
    x, y = test[0]
    assert x.shape == (3, 3, 32, 32) and 0 <= y < classes
    assert torch.equal(x[0], x[2])  # direct coding repeats the image
    assert torch.equal(test[0][0], x)  # no augmentation on the test split
    torch.manual_seed(0)
    views = [train[0][0] for _ in range(4)]
    assert not all(torch.equal(views[0], v) for v in views[1:])
    # Cutout zeroes (in normalised units: the mean) a square in every augmented view
    assert all(int((v[0] == 0).all(0).sum()) >= 16 for v in views)
    p = get_dataset(which, str(tmp_path), "test", T=3, encoding="poisson")[0][0]
    assert set(p.unique().tolist()) <= {0.0, 1.0}


def test_cifar_missing_and_corrupt(tmp_path, capsys, monkeypatch):
    with pytest.raises(MissingDatasetError, match="data_batch_1.*cifar-10-python.tar.gz"):
        get_dataset("cifar10", str(tmp_path), "train", T=2)
    write_cifar(tmp_path, "cifar10", 4, np.random.default_rng(5), monkeypatch)
    bad = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    bad.write_bytes(bad.read_bytes()[:100])
    with pytest.raises(DatasetFileError, match=str(bad)):
        get_dataset("cifar10", str(tmp_path), "train", T=2)
    rc = main(["datasets", "cifar100", "--data-root", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "cifar-100-python/train" in err and err.count("\n") == 1


# ------------------------------------------------------------------------ CIFAR10-DVS


def test_cifar10dvs_missing_files_and_reader(tmp_path, cache):
    with pytest.raises(MissingDatasetError, match=r"CIFAR10DVS.*figshare"):
        get_dataset("cifar10dvs", str(tmp_path), "train", T=10)
    d = tmp_path / "CIFAR10DVS" / "airplane"
    d.mkdir(parents=True)
    (d / "cifar10_airplane_0.aedat4").write_bytes(b"#!AER-DAT4.0\r\n")
    try:
        import aedat  # noqa: F401
    except ImportError:
        with pytest.raises(TrtNmError, match="pip install aedat"):
            get_dataset("cifar10dvs", str(tmp_path), "train", T=10)
    else:
        ds = get_dataset("cifar10dvs", str(tmp_path), "train", T=10)
        with pytest.raises(DatasetFileError, match="cifar10_airplane_0.aedat4"):
            ds[0]


def test_cifar_layout_matches_torchvision():
    from torchvision.datasets import CIFAR10, CIFAR100

    from trt_nm.datasets.vision import LAYOUT

    for name, cls in (("cifar10", CIFAR10), ("cifar100", CIFAR100)):
        folder, train, test, meta, url = LAYOUT[name]
        assert folder == cls.base_folder and url == cls.url and meta == cls.meta["filename"]
        assert list(train) == [f for f, _ in cls.train_list] and list(test) == [f for f, _ in cls.test_list]


AEDAT4_MAGIC = b"#!AER-DAT4.0\r\n"
AEDAT4_INFO = (
    '<dv version="2.0"><node name="outInfo"><node name="0">'
    '<attr key="typeIdentifier" type="string">EVTS</attr><node name="info">'
    '<attr key="sizeX" type="int">128</attr><attr key="sizeY" type="int">128</attr>'
    "</node></node></node></dv>"
)


def write_aedat4(path: Path, t, x, y, p, per_packet: int = 64) -> None:
    """AEDAT 4.0: magic, size-prefixed IOHeader flatbuffer (uncompressed, XML stream info),
    then (stream id, size, size-prefixed 'EVTS' EventPacket) packets of 16-byte Event structs."""
    flatbuffers = pytest.importorskip("flatbuffers")
    b = flatbuffers.Builder(256)
    info = b.CreateString(AEDAT4_INFO)
    b.StartObject(3)
    b.PrependUOffsetTRelativeSlot(2, info, 0)
    b.FinishSizePrefixed(b.EndObject(), b"IOHE")
    out = [AEDAT4_MAGIC, bytes(b.Output())]
    for s in range(0, len(t), per_packet):
        b = flatbuffers.Builder(1024)
        idx = range(s, min(s + per_packet, len(t)))
        b.StartVector(16, len(idx), 8)
        for k in reversed(idx):  # struct Event {int64 t; int16 x; int16 y; bool on;} (+3 pad)
            b.Prep(8, 16)
            b.Pad(3)
            b.PrependBool(bool(p[k]))
            b.PrependInt16(int(y[k]))
            b.PrependInt16(int(x[k]))
            b.PrependInt64(int(t[k]))
        vec = b.EndVector()
        b.StartObject(1)
        b.PrependUOffsetTRelativeSlot(0, vec, 0)
        b.FinishSizePrefixed(b.EndObject(), b"EVTS")
        payload = bytes(b.Output())
        out += [(0).to_bytes(4, "little"), len(payload).to_bytes(4, "little"), payload]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(out))


def test_cifar10dvs_aedat4_48px_90_10(tmp_path, cache):
    pytest.importorskip("aedat")
    rng = np.random.default_rng(6)
    root = tmp_path / "c"
    for c in ("airplane", "cat", "truck"):
        for k in range(10):
            x, y, t, p = random_events(rng, 300, 128, 128, 1_000_000)
            write_aedat4(root / "CIFAR10DVS" / c / f"cifar10_{c}_{k}.aedat4", t, x, y, p)
    tr = get_dataset("cifar10dvs", str(root), "train", T=10)
    te = get_dataset("cifar10dvs", str(root), "test", T=10)
    assert (len(tr), len(te)) == (27, 3) and set(tr.indices).isdisjoint(te.indices)
    x, y = te[0]
    assert x.shape == (10, 2, 48, 48) and x.dtype == torch.float32
    assert sorted({te[i][1] for i in range(3)}) == [0, 3, 9]  # tonic's class numbering
    # 128 -> 48 bilinear keeps the event mass up to the area ratio (300 events, one on the edge)
    assert 300 * (48 / 128) ** 2 * 0.5 < float(x.sum()) < 300 * (48 / 128) ** 2 * 2
    again = get_dataset("cifar10dvs", str(root), "test", T=10)
    assert torch.equal(again[0][0], x) and again.cache.hits == 1
    assert tr.augment is not None and te.augment is None
    bad = Path(tr.paths[int(tr.indices[0])])
    bad.write_bytes(bad.read_bytes()[:40])
    with pytest.raises(DatasetFileError, match=str(bad)):
        get_dataset("cifar10dvs", str(root), "train", T=10)[0]
