"""The paper's neuromorphic datasets through tonic: N-MNIST, DVS128 Gesture, CIFAR10-DVS,
N-Caltech101 and SHD.

Files are read by tonic's own dataset classes (same folders, same readers; SHD: see below)
with downloading disabled: each class is subclassed under the *same name* (tonic derives the folder
``<root>/<ClassName>`` from it) with ``download`` raising and ``_check_exists`` trusting our
own, more precise file check (tonic's demands the archive and a full file count).
``trt-nm datasets NAME --data-root DIR --download`` runs tonic's real downloader.

Preprocessing (as in the TRT paper where it has one):

- N-MNIST, DVS128 Gesture: ``T`` frames of ON/OFF counts with tonic's ``ToFrame`` at the
  sensor resolution (34x34, 128x128).
- CIFAR10-DVS, N-Caltech101: ``T`` frames (the paper uses T=10) resized to 48x48, a
  deterministic 90/10 train/test split per class (first 90% of each class's sorted files);
  training augmentation: random horizontal flip and a random shift of up to +-5 px.
- SHD: ``T`` time bins over the 700 input channels, samples ``[T, 1, 1, 700]`` (the zoo's
  ``[T, C, H, W]`` layout; ``flat=True`` gives ``[T, 700]``).

Frames are cached per sample (:class:`~.cache.SampleCache`), keyed by every preprocessing
parameter and a fingerprint (count, bytes, newest mtime) of the source files.

Every file is hostile until checked: a sample whose events lie off the sensor (x, y,
polarity, or a negative/non-finite timestamp) or whose label is outside the dataset's classes
is refused with one line naming the file, the field and the valid range. SHD's HDF5 files are
read by :class:`SHDFile`, not by tonic: it follows no external or soft links, reads no
external-storage or virtual datasets, loads no filter plugins and checks every declared size
before reading (it returns the events tonic's ``SHD`` would).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from trt_nm.datasets.augment import FlipShift
from trt_nm.datasets.cache import SampleCache
from trt_nm.datasets.errors import DatasetFileError, MissingDatasetError
from trt_nm.datasets.frames import CachedFrameDataset, check_fields, events_to_frames
from trt_nm.datasets.registry import DatasetInfo, register_dataset
from trt_nm.errors import ConfigError, MissingDependencyError, TrtNmError, require

PAPER_SIZE = (48, 48)  # CIFAR10-DVS / N-Caltech101 frames in the paper
NCALTECH_SENSOR = (240, 180, 2)  # largest N-Caltech101 recording (x < 240, y < 180)
ATIS_SENSOR = (304, 240, 2)  # the ATIS that recorded N-MNIST / N-Caltech101: any event lies in it
DVS128_SENSOR = (128, 128, 2)  # DVS128 Gesture, CIFAR10-DVS


def _no_download(self) -> None:  # replaces tonic's Dataset.download in the readers
    raise MissingDatasetError(f"{type(self).__name__} files missing under {self.location_on_system}")


def offline_class(name: str) -> type:
    """tonic's dataset class ``name``, with downloading disabled, under the same class name."""
    datasets = require("tonic.datasets", "data")
    base = getattr(datasets, name)
    return type(base.__name__, (base,), {"_check_exists": lambda self: True, "download": _no_download})


def _files(folder: Path, suffix: str) -> list[Path]:
    return sorted(folder.rglob(f"*{suffix}")) if folder.is_dir() else []


def _fingerprint(paths: list[Path]) -> dict[str, Any]:
    size, mtime = 0, 0
    for p in paths:
        st = p.stat()
        size += st.st_size
        mtime = max(mtime, st.st_mtime_ns)
    return {"n_files": len(paths), "bytes": size, "mtime_ns": mtime}


def _root(root: str | None, name: str) -> Path:
    if root is None:
        raise ConfigError(f"dataset {name!r} needs --data-root DIR (the folder holding its files)")
    p = Path(root).expanduser()
    if not p.is_dir():
        raise MissingDatasetError(f"data root {p} does not exist or is not a directory")
    return p


@dataclass(frozen=True)
class Recipe:
    """How one tonic dataset is found, checked, read and preprocessed."""

    name: str
    tonic_class: str
    #: split -> (folder relative to <root>/<ClassName>, file suffix, what to put there, url)
    layout: dict[str, tuple[str, str, str, str]]
    min_bytes_multiple: int = 1  # N-MNIST/N-Caltech101 events are 5 bytes each
    #: (W, H) every event of an ATIS binary file (N-MNIST, N-Caltech101) must lie in
    atis_range: tuple[int, int] | None = None

    def folder(self, root: Path, split: str) -> Path:
        return root / self.tonic_class / self.layout[split][0]

    def check(self, root: str | None, splits: tuple[str, ...] | None = None) -> list[str]:
        """One problem per missing split (empty list: all files in place)."""
        if root is None:
            return ["no --data-root given"]
        problems = []
        for split in splits or tuple(self.layout):
            folder, suffix, what, url = self.layout[split]
            where = Path(root).expanduser() / self.tonic_class / folder
            if not _files(where, suffix):
                get = f" (download {url})" if url else ""
                problems.append(f"{what} at {where}/{get}")
        return problems

    def missing_error(self, root: str | None, split: str) -> MissingDatasetError:
        problems = self.check(root, (split,))
        return MissingDatasetError(
            f"{self.name} {split} files not found: put {problems[0]}, "
            f"or run: trt-nm datasets {self.name} --data-root {root} --download"
        )

    def validate_file(self, path: str) -> None:
        """Cheap check before tonic reads a file: empty or truncated files name their path."""
        try:
            size = os.path.getsize(path)
        except OSError as exc:
            raise DatasetFileError(f"{path}: cannot read ({exc.strerror})") from None
        if size == 0:
            raise DatasetFileError(f"{path}: empty event file")
        if size % self.min_bytes_multiple:
            raise DatasetFileError(f"{path}: truncated event file ({size} bytes is not a whole number of {self.min_bytes_multiple}-byte events)")
        if self.atis_range is not None:
            check_atis_file(path, self.atis_range)


#: the y value an ATIS binary uses to mark a timestamp overflow record (not an event)
ATIS_OVERFLOW_Y = 240


def check_atis_file(path: str, atis_range: tuple[int, int]) -> None:
    """Refuse an ATIS binary (5 bytes per event: x, y, p|t...) with an event off the sensor.

    The raw bytes are checked, before tonic shifts or casts anything: ``x`` in ``[0, W)`` and
    ``y`` in ``[0, H)`` for every record that is not a timestamp-overflow marker (y = 240).
    """
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise DatasetFileError(f"{path}: cannot read ({exc.strerror})") from None
    x, y = raw[0::5], raw[1::5]
    events = y != ATIS_OVERFLOW_Y
    problem = check_fields({"x": x[events], "y": y[events]}, (*atis_range, 2))
    if problem is not None:
        raise DatasetFileError(f"{path}: {problem}")


class _Validated:
    """Indexable wrapper: validate the sample's file, then read it with the tonic dataset."""

    def __init__(self, ds: Any, validate: Callable[[str], None] | None):
        self.ds = ds
        self.validate = validate

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, j: int) -> Any:
        if self.validate is not None:
            self.validate(self.ds.data[j])
        return self.ds[j]


def _construct(recipe: Recipe, root: Path, where: Path | None = None, **kw: Any) -> Any:
    cls = offline_class(recipe.tonic_class)
    try:
        return cls(str(root), **kw)
    except (TrtNmError, ImportError):
        raise
    except Exception as exc:  # a stray folder, an unreadable HDF5 file, ...
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise DatasetFileError(f"{where or root / recipe.tonic_class}: cannot index the dataset ({type(exc).__name__}: {first})") from None


def split_90_10(labels: list[int], split: str) -> np.ndarray:
    """Indices of the paper's 90/10 split: the first 90% of each class (file order) train."""
    labels_a = np.asarray(labels)
    out = []
    for c in np.unique(labels_a):
        idx = np.flatnonzero(labels_a == c)
        k = int(round(0.9 * len(idx)))
        if len(idx) > 1:
            k = min(max(k, 1), len(idx) - 1)  # both splits get each class with >= 2 files
        out.append(idx[:k] if split == "train" else idx[k:])
    return np.sort(np.concatenate(out)) if out else np.zeros(0, dtype=np.int64)


def _frame_params(recipe: Recipe, root: Path, split: str, T: int, extra: dict[str, Any], files: list[Path]) -> dict[str, Any]:
    return {
        "dataset": recipe.name,
        "root": str(root.resolve()),
        "split": split,
        "T": T,
        "to_frame": "tonic.ToFrame(n_time_bins)",
        **extra,
        **_fingerprint(files),
    }


# ---------------------------------------------------------------------------- N-MNIST
NMNIST_RECIPE = Recipe(
    name="nmnist",
    tonic_class="NMNIST",
    layout={
        "train": ("Train", ".bin", "the Train/ folder of train.zip (subfolders 0..9 of .bin files)",
                  "https://data.mendeley.com/public-files/datasets/468j46mzdv/files/39c25547-014b-4137-a934-9d29fa53c7a0/file_downloaded"),
        "test": ("Test", ".bin", "the Test/ folder of test.zip (subfolders 0..9 of .bin files)",
                 "https://data.mendeley.com/public-files/datasets/468j46mzdv/files/05a4d654-7e03-4c15-bdfa-9bb2bcbea494/file_downloaded"),
    },
    min_bytes_multiple=5,
    atis_range=(34, 34),
)


def _tonic_download(class_name: str, splits: tuple[dict[str, Any], ...], root: str) -> None:
    datasets = require("tonic.datasets", "data")
    Path(root).expanduser().mkdir(parents=True, exist_ok=True)
    for kw in splits:
        getattr(datasets, class_name)(str(Path(root).expanduser()), **kw)


@register_dataset(
    DatasetInfo(
        name="nmnist", num_classes=10, in_channels=2, input_size=(34, 34), kind="event",
        sensor_size=(34, 34, 2), sizes={"train": 60000, "test": 10000},
        description="N-MNIST (Orchard 2015): MNIST recorded by an ATIS on 3 saccades; T ToFrame bins",
        source="tonic.datasets.NMNIST", urls=tuple(v[3] for v in NMNIST_RECIPE.layout.values()),
        layout="<root>/NMNIST/Train/<0..9>/*.bin and <root>/NMNIST/Test/<0..9>/*.bin",
    ),
    check=NMNIST_RECIPE.check,
    download=partial(_tonic_download, "NMNIST", ({"train": True}, {"train": False})),
)
def load_nmnist(root: str | None = None, split: str = "train", T: int = 4, *, cache_dir: str | None = None) -> CachedFrameDataset:
    """N-MNIST ``[T, 2, 34, 34]`` event-count frames (all three saccades), labels 0..9."""
    return _binned_tonic_dataset(
        NMNIST_RECIPE, root, split, T, ".bin", (34, 34, 2), NMNIST_RECIPE.validate_file, cache_dir, 10
    )


def _binned_tonic_dataset(
    recipe: Recipe,
    root: str | None,
    split: str,
    T: int,
    ext: str,
    sensor_size: tuple[int, int, int],
    validate: Any,
    cache_dir: str | None,
    num_classes: int,
) -> CachedFrameDataset:
    """A tonic dataset (train/test folders of ``ext`` files) binned into T ToFrame frames, cached.

    Events must lie on the ``sensor_size`` sensor and labels in ``[0, num_classes)``.
    """
    r = _root(root, recipe.name)
    files = _files(recipe.folder(r, split), ext)
    if not files:
        raise recipe.missing_error(root, split)
    ds = _construct(recipe, r, train=split == "train")
    params = _frame_params(recipe, r, split, T, {"sensor_size": sensor_size}, files)
    w, h, p = sensor_size
    return CachedFrameDataset(
        _Validated(ds, validate),
        lambda ev: events_to_frames(ev, sensor_size, T),
        SampleCache(recipe.name, params, cache_dir),
        paths=ds.data,
        num_classes=num_classes,
        sensor_range=sensor_size,
        frame_shape=(T, p, h, w),
    )


# ---------------------------------------------------------------------------- DVS128 Gesture
GESTURE_RECIPE = Recipe(
    name="dvsgesture",
    tonic_class="DVSGesture",
    layout={
        "train": ("ibmGestureTrain", ".npy", "the ibmGestureTrain/ folder of ibmGestureTrain.tar.gz (userNN_lighting/<label>.npy)",
                  "https://figshare.com/ndownloader/files/38022171"),
        "test": ("ibmGestureTest", ".npy", "the ibmGestureTest/ folder of ibmGestureTest.tar.gz (userNN_lighting/<label>.npy)",
                 "https://figshare.com/ndownloader/files/38020584"),
    },
)


def _validate_npy(path: str) -> None:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DatasetFileError(f"{path}: corrupt or truncated .npy event file ({str(exc)[:120]})") from None
    if arr.ndim != 2 or arr.shape[1] != 4 or arr.shape[0] == 0:
        raise DatasetFileError(f"{path}: expected a non-empty [N, 4] (x, y, p, t ms) event array, got shape {arr.shape}")
    if arr.dtype.kind not in "iuf" or arr.dtype.fields is not None:
        raise DatasetFileError(f"{path}: expected numeric (x, y, p, t ms) events, got dtype {arr.dtype}")
    # the file's own values, before tonic casts them to int16 / bool
    problem = check_fields({"x": arr[:, 0], "y": arr[:, 1], "p": arr[:, 2], "t": arr[:, 3]}, DVS128_SENSOR)
    if problem is not None:
        raise DatasetFileError(f"{path}: {problem}")


@register_dataset(
    DatasetInfo(
        name="dvsgesture", num_classes=11, in_channels=2, input_size=(128, 128), kind="event",
        sensor_size=(128, 128, 2), sizes={"train": 1077, "test": 264},
        description="DVS128 Gesture (Amir 2017), 11 gestures; T ToFrame bins at 128x128",
        source="tonic.datasets.DVSGesture", urls=tuple(v[3] for v in GESTURE_RECIPE.layout.values()),
        layout="<root>/DVSGesture/ibmGestureTrain/userNN_<lighting>/<label>.npy (and ibmGestureTest/)",
    ),
    check=GESTURE_RECIPE.check,
    download=partial(_tonic_download, "DVSGesture", ({"train": True}, {"train": False})),
)
def load_dvsgesture(root: str | None = None, split: str = "train", T: int = 4, *, cache_dir: str | None = None) -> CachedFrameDataset:
    """DVS128 Gesture ``[T, 2, 128, 128]`` event-count frames, labels 0..10."""
    return _binned_tonic_dataset(
        GESTURE_RECIPE, root, split, T, ".npy", DVS128_SENSOR, _validate_npy, cache_dir, 11
    )


# ---------------------------------------------------------------------------- CIFAR10-DVS
CIFAR10DVS_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10DVS_RECIPE = Recipe(
    name="cifar10dvs",
    tonic_class="CIFAR10DVS",
    layout={
        s: ("", ".aedat4", "the class folders airplane/ .. truck/ of .aedat4 files (inside CIFAR10DVS.zip's per-class zips)",
            "https://figshare.com/ndownloader/files/38023437")
        for s in ("train", "test")
    },
)


def _dvs48_augment(split: str, augment: bool) -> FlipShift | None:
    return FlipShift(max_shift=5) if split == "train" and augment else None


@register_dataset(
    DatasetInfo(
        name="cifar10dvs", num_classes=10, in_channels=2, input_size=PAPER_SIZE, kind="event",
        sensor_size=(128, 128, 2), sizes={"train": 9000, "test": 1000},
        description="CIFAR10-DVS (Li 2017): T frames resized to 48x48, 90/10 split, flip + 5px shift",
        source="tonic.datasets.CIFAR10DVS (needs the 'aedat' package)", urls=("https://figshare.com/ndownloader/files/38023437",),
        layout="<root>/CIFAR10DVS/<airplane..truck>/*.aedat4",
    ),
    check=lambda root: CIFAR10DVS_RECIPE.check(root, ("train",)),
    download=partial(_tonic_download, "CIFAR10DVS", ({},)),
)
def load_cifar10dvs(
    root: str | None = None, split: str = "train", T: int = 10, *, augment: bool = True, cache_dir: str | None = None
) -> CachedFrameDataset:
    """CIFAR10-DVS ``[T, 2, 48, 48]`` frames (the paper: T=10), labels 0..9.

    The train split is augmented with a random flip and a shift of up to +-5 px.
    """
    r = _root(root, "cifar10dvs")
    files = _files(CIFAR10DVS_RECIPE.folder(r, split), ".aedat4")
    if not files:
        raise CIFAR10DVS_RECIPE.missing_error(root, split)
    try:
        import aedat  # noqa: F401  tonic.io.read_aedat4 imports it lazily
    except ImportError:
        raise MissingDependencyError("reading CIFAR10-DVS .aedat4 files needs the 'aedat' package: pip install aedat") from None
    ds = _construct(CIFAR10DVS_RECIPE, r)
    idx = split_90_10(ds.targets, split)
    params = _frame_params(CIFAR10DVS_RECIPE, r, "all", T, {"sensor_size": (128, 128, 2), "size": PAPER_SIZE}, files)
    return CachedFrameDataset(
        _Validated(ds, None),
        lambda ev: events_to_frames(ev, (128, 128, 2), T, PAPER_SIZE),
        SampleCache("cifar10dvs", params, cache_dir),
        paths=ds.data,
        augment=_dvs48_augment(split, augment),
        indices=idx,
        num_classes=10,
        sensor_range=DVS128_SENSOR,
        frame_shape=(T, 2, *PAPER_SIZE),
    )


# ---------------------------------------------------------------------------- N-Caltech101
NCALTECH_RECIPE = Recipe(
    name="ncaltech101",
    tonic_class="NCALTECH101",
    layout={
        s: ("Caltech101", ".bin", "the Caltech101/ folder of Caltech101.zip (one folder of .bin files per class)",
            "https://data.mendeley.com/public-files/datasets/cy6cvx3ryv/files/36b5c52a-b49d-4853-addb-a836a8883e49/file_downloaded")
        for s in ("train", "test")
    },
    min_bytes_multiple=5,
    atis_range=ATIS_SENSOR[:2],
)


@register_dataset(
    DatasetInfo(
        name="ncaltech101", num_classes=101, in_channels=2, input_size=PAPER_SIZE, kind="event",
        sensor_size=NCALTECH_SENSOR, sizes={"train": 7838, "test": 871},
        description="N-Caltech101 (Orchard 2015): T frames resized to 48x48, 90/10 split, flip + 5px shift",
        source="tonic.datasets.NCALTECH101", urls=(NCALTECH_RECIPE.layout["train"][3],),
        layout="<root>/NCALTECH101/Caltech101/<class>/*.bin",
    ),
    check=lambda root: NCALTECH_RECIPE.check(root, ("train",)),
    download=partial(_tonic_download, "NCALTECH101", ({},)),
)
def load_ncaltech101(
    root: str | None = None, split: str = "train", T: int = 10, *, augment: bool = True, cache_dir: str | None = None
) -> CachedFrameDataset:
    """N-Caltech101 ``[T, 2, 48, 48]`` frames (sensor 240x180 resized), labels 0..100 by
    sorted class-folder name; the train split is augmented with flip and +-5 px shift."""
    r = _root(root, "ncaltech101")
    files = _files(NCALTECH_RECIPE.folder(r, split), ".bin")
    if not files:
        raise NCALTECH_RECIPE.missing_error(root, split)
    ds = _construct(NCALTECH_RECIPE, r)
    classes = sorted(p.name for p in NCALTECH_RECIPE.folder(r, split).iterdir() if p.is_dir())
    if len(classes) > 101:
        raise DatasetFileError(f"{NCALTECH_RECIPE.folder(r, split)}: {len(classes)} class folders, expected at most 101")
    to_int = {c: i for i, c in enumerate(classes)}
    labels = [to_int[c] for c in ds.targets]
    idx = split_90_10(labels, split)
    params = _frame_params(NCALTECH_RECIPE, r, "all", T, {"sensor_size": NCALTECH_SENSOR, "size": PAPER_SIZE, "classes": classes}, files)
    return CachedFrameDataset(
        _Validated(ds, NCALTECH_RECIPE.validate_file),
        lambda ev: events_to_frames(ev, NCALTECH_SENSOR, T, PAPER_SIZE),
        SampleCache("ncaltech101", params, cache_dir),
        paths=ds.data,
        label_map=to_int.__getitem__,
        augment=_dvs48_augment(split, augment),
        indices=idx,
        num_classes=101,
        sensor_range=ATIS_SENSOR,
        frame_shape=(T, 2, *PAPER_SIZE),
    )
