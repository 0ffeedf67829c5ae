"""Dataset registry, the nmnist5k event generator, the cache, augmentations, ``trt-nm datasets``."""

from __future__ import annotations

import urllib.error

import numpy as np
import pytest
import torch

from trt_nm.cli.main import main
from trt_nm.datasets import cache as cache_mod
from trt_nm.datasets import dataset_info, get_dataset, list_datasets, missing_files
from trt_nm.datasets import nmnist5k as nm
from trt_nm.datasets.augment import CropFlipCutout, FlipShift, shift2d
from trt_nm.datasets.mnist5k import load_mnist5k_arrays
from trt_nm.datasets.saccade import EVENT_DTYPE, SaccadeConfig, saccade_events, to_structured
from trt_nm.errors import ConfigError

ALL = {"mnist5k", "nmnist5k", "nmnist", "dvsgesture", "cifar10dvs", "ncaltech101", "shd", "cifar10", "cifar100"}


def test_registry_names_and_metadata():
    assert ALL <= set(list_datasets())
    for name in ALL:
        info = dataset_info(name)
        assert info.num_classes >= 10 and info.in_channels >= 1 and info.kind in ("static", "event", "audio")
        assert set(info.sizes) >= {"train", "test"}
        if not info.embedded:
            assert info.urls and info.layout and info.source
    assert dataset_info("nmnist5k").sample_shape(6) == (6, 2, 34, 34)
    assert dataset_info("cifar10dvs").sample_shape(10) == (10, 2, 48, 48)
    assert dataset_info("shd").sample_shape(3) == (3, 1, 1, 700)
    assert dataset_info("nmnist5k").sensor_size == (34, 34, 2)
    with pytest.raises(ConfigError, match="valid datasets: .*nmnist5k"):
        dataset_info("nmnist6k")
    assert missing_files("nmnist5k", None) == [] and missing_files("nmnist", None)


# ------------------------------------------------------------------------ saccade events


@pytest.fixture(scope="module")
def digits():
    images, labels = load_mnist5k_arrays()
    return images[:40], labels[:40]


def test_saccade_events_are_n_mnist_like_and_deterministic(digits):
    images, _ = digits
    a = saccade_events(images, SaccadeConfig(seed=3), chunk=16)
    b = saccade_events(images, SaccadeConfig(seed=3), chunk=7)  # chunking does not matter
    c = saccade_events(images, SaccadeConfig(seed=4))
    for k in ("x", "y", "t", "p", "offsets"):
        assert np.array_equal(a[k], b[k])
    assert np.array_equal(a["x"], c["x"]) is False or not np.array_equal(a["t"], c["t"])
    counts = np.diff(a["offsets"])
    assert len(counts) == 40 and counts.min() > 500  # N-MNIST has a few thousand per digit
    assert a["x"].max() < 34 and a["y"].max() < 34 and a["t"].max() < 300_000
    for i in range(3):
        ev = to_structured(a, i)
        assert ev.dtype == EVENT_DTYPE and np.all(np.diff(ev["t"]) >= 0)
        # the eye returns to its start: every pixel's ON and OFF events cancel exactly
        on = np.zeros((34, 34), int)
        np.add.at(on, (ev["y"], ev["x"]), np.where(ev["p"] == 1, 1, -1))
        assert not on.any() and 0 < ev["p"].mean() < 1
        # all three saccades produce events
        assert all(((ev["t"] >= s * 100_000) & (ev["t"] < (s + 1) * 100_000)).sum() > 100 for s in range(3))


def test_saccade_blank_image_and_threshold(digits):
    images, _ = digits
    blank = saccade_events(np.zeros((2, 28, 28), np.uint8))
    assert blank["offsets"].tolist() == [0, 0, 0] and len(blank["t"]) == 0
    fine = saccade_events(images[:4], SaccadeConfig(threshold=0.25))
    coarse = saccade_events(images[:4], SaccadeConfig(threshold=1.0))
    assert len(fine["t"]) > 2 * len(coarse["t"]) > 0
    with pytest.raises(ConfigError):
        SaccadeConfig(threshold=0)
    with pytest.raises(ConfigError, match="do not fit"):
        saccade_events(np.zeros((1, 40, 40)))


def test_tonic_transforms_apply_to_generated_events(digits):
    tt = pytest.importorskip("tonic.transforms")
    ev = to_structured(saccade_events(digits[0][:1]), 0)
    frames = tt.ToFrame(sensor_size=(34, 34, 2), n_time_bins=5)(ev)
    assert frames.shape == (5, 2, 34, 34) and frames.sum() >= len(ev) - 1
    assert len(tt.Denoise(filter_time=10_000)(ev)) <= len(ev)
    down = tt.Downsample(spatial_factor=0.5)(ev)
    assert down["x"].max() < 17


# ------------------------------------------------------------------------ nmnist5k (small)


@pytest.fixture
def small_nmnist5k(monkeypatch, digits, tmp_path):
    """nmnist5k over 40 digits (the full 5,000 take ~10 s: measured in docs/datasets.md)."""
    images, labels = digits
    monkeypatch.setattr(nm, "load_mnist5k_arrays", lambda: (images, labels))
    splits = {"train": np.arange(0, 30), "val": np.arange(30, 34), "test": np.arange(34, 40)}
    monkeypatch.setattr(nm, "split_indices", lambda lab, split: splits[split])
    monkeypatch.setenv("TRT_NM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_nmnist5k_frames_labels_and_cache(small_nmnist5k, digits):
    ds = get_dataset("nmnist5k", None, "train", T=3)
    assert len(ds) == 30 and not ds.cache_hit
    x, y = ds[0]
    assert x.shape == (3, 2, 34, 34) and x.dtype == torch.float32
    assert y == int(digits[1][0])
    ev = ds.events(0)
    assert float(x.sum()) == len(ev[ev["t"] < ev["t"].max()])  # tonic's ToFrame counts
    again = get_dataset("nmnist5k", None, "train", T=3)
    assert again.cache_hit and torch.equal(again[0][0], x)
    assert not get_dataset("nmnist5k", None, "train", T=4).cache_hit  # T is in the key
    other = get_dataset("nmnist5k", None, "train", T=3, threshold=0.4)
    assert not other.cache_hit and float(other[0][0].sum()) > float(x.sum())
    test = get_dataset("nmnist5k", None, "test", T=3)
    assert len(test) == 6 and test[0][1] == int(digits[1][34])
    with pytest.raises(ConfigError, match="valid splits"):
        get_dataset("nmnist5k", None, "dev", T=3)
    with pytest.raises(ConfigError, match="T must be"):
        get_dataset("nmnist5k", None, "train", T=0)


def test_nmnist5k_corrupt_or_old_cache_is_rebuilt(small_nmnist5k):
    ds = get_dataset("nmnist5k", None, "val", T=2)
    files = sorted(small_nmnist5k.glob("nmnist5k-*.npz"))
    assert len(files) == 2  # events + frames
    for f in files:
        f.write_bytes(f.read_bytes()[:1000])  # truncated
    again = get_dataset("nmnist5k", None, "val", T=2)
    assert not again.cache_hit and torch.equal(again.frames, ds.frames)
    assert get_dataset("nmnist5k", None, "val", T=2).cache_hit


def test_cached_arrays_version_and_params(tmp_path, monkeypatch):
    calls = []

    def build():
        calls.append(1)
        return {"a": np.arange(3)}

    out, path, hit = cache_mod.cached_arrays("x", {"p": 1}, build, tmp_path)
    assert not hit and out["a"].tolist() == [0, 1, 2] and path.exists()
    assert cache_mod.cached_arrays("x", {"p": 1}, build, tmp_path)[2] is True
    assert cache_mod.cached_arrays("x", {"p": 2}, build, tmp_path)[2] is False
    monkeypatch.setattr(cache_mod, "CACHE_VERSION", cache_mod.CACHE_VERSION + 1)
    assert cache_mod.cached_arrays("x", {"p": 1}, build, tmp_path)[2] is False
    assert len(calls) == 3
    # a file at the right path whose recorded meta differs (written by older code) is rebuilt
    key, _ = cache_mod.cache_key({"p": 1})
    cache_mod.atomic_save_npz(tmp_path / f"x-{key}.npz", {"a": np.zeros(1), "__meta__": np.array("old")})
    assert cache_mod.cached_arrays("x", {"p": 1}, build, tmp_path)[2] is False
    assert not list(tmp_path.glob("*.tmp"))


def test_cache_dir_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("TRT_NM_CACHE", str(tmp_path / "env"))
    assert cache_mod.cache_root() == tmp_path / "env"
    assert cache_mod.cache_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("TRT_NM_CACHE")
    assert cache_mod.cache_root().name == "trt_nm"


# ------------------------------------------------------------------------ augmentation


def test_shift_and_flipshift():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    s = shift2d(x, 1, -2)
    assert s[0, 0, 1, 0] == x[0, 0, 0, 2] and s[0, 0, 0].abs().sum() == 0 and s[..., 2:].abs().sum() == 0
    torch.manual_seed(0)
    frames = torch.rand(3, 2, 48, 48)
    outs = [FlipShift(max_shift=5)(frames) for _ in range(6)]
    assert all(o.shape == frames.shape for o in outs)
    assert any(not torch.equal(o, frames) for o in outs)
    for o in outs:  # one transform for all T frames: the frames keep their pairwise relation
        assert torch.allclose(o[1] - o[0], FlipShift(0, 0.0)(o[1] - o[0]))
    assert torch.equal(FlipShift(max_shift=0, p_flip=0.0)(frames), frames)


def test_crop_flip_cutout():
    torch.manual_seed(1)
    img = torch.ones(3, 32, 32)
    out = CropFlipCutout(padding=0, cutout=16, p_flip=0.0)(img)
    zeros = int((out[0] == 0).sum())
    assert 64 <= zeros <= 256 and bool((out == 0).all(0).eq(out[0] == 0).all())
    assert torch.equal(CropFlipCutout(padding=0, cutout=0, p_flip=0.0)(img), img)


# ------------------------------------------------------------------------ mnist5k still works


def test_mnist5k_unchanged():
    ds = get_dataset("mnist5k", None, "test", T=2)
    x, y = ds[0]
    assert len(ds) == 1000 and x.shape == (2, 1, 28, 28) and 0 <= y < 10


# ------------------------------------------------------------------------ CLI


def test_cli_datasets_table(capsys, tmp_path):
    assert main(["datasets", "--data-root", str(tmp_path), "-T", "10"]) == 0
    out = capsys.readouterr().out
    for name in ALL:
        assert name in out
    assert "[10,2,48,48]" in out and "[10,1,1,700]" in out and "embedded" in out and "missing" in out
    assert main(["datasets", "nmnist5k"]) == 0
    assert "embedded" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["datasets", "nmnist"], None),
        (["datasets", "shd", "--data-root", "{root}"], "shd_train.h5"),
        (["datasets", "--download"], "needs a dataset NAME"),
        (["datasets", "nmnist", "--download"], "needs --data-root"),
        (["datasets", "nmnist7"], "valid datasets"),
    ],
)
def test_cli_datasets_errors_are_one_line(argv, needle, capsys, tmp_path):
    rc = main([a.replace("{root}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err
    if needle is None:
        assert rc == 0 and err == ""
    else:
        assert rc == 2 and err.count("\n") == 1 and needle in err and "Traceback" not in err


def test_cli_download_calls_the_datasets_downloader(monkeypatch, tmp_path, capsys):
    from trt_nm.datasets import registry

    seen = []
    monkeypatch.setitem(registry._DOWNLOADERS, "shd", lambda root: seen.append(root))
    rc = main(["datasets", "shd", "--data-root", str(tmp_path), "--download"])
    assert seen == [str(tmp_path)] and rc == 2  # the fake downloader fetched nothing
    capsys.readouterr()

    def offline(root):
        raise urllib.error.URLError("no network")

    monkeypatch.setitem(registry._DOWNLOADERS, "shd", offline)
    rc = main(["datasets", "shd", "--data-root", str(tmp_path), "--download"])
    err = capsys.readouterr().err
    assert rc == 2 and "download of shd" in err and err.count("\n") == 1
