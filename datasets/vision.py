"""CIFAR-10 and CIFAR-100 from torchvision's on-disk layout, with the paper's augmentation and
direct coding.

The files are the python-pickle batches of the official archives, in the folders
torchvision's ``CIFAR10``/``CIFAR100`` use. They are read here, not by torchvision (which
unpickles with the stock, unrestricted :mod:`pickle`): every file is hostile until checked.

1. **md5 first.** Each file's md5 is compared with :data:`CIFAR_MD5` (torchvision's own
   published per-file list, repeated here and checked against torchvision by the tests)
   *before* any byte of it is unpickled. A mismatch is refused with one line naming the file.
   Tests write small files in the real format and register their sums with
   ``monkeypatch.setitem(vision.CIFAR_MD5[name], filename, md5)``: the loader never accepts
   a file whose sum is not in that table.
2. **Restricted unpickler.** :class:`CifarUnpickler` resolves only the globals that real
   CIFAR pickles (python2 ``cPickle``; re-saved by python3/numpy) reference: numpy's array
   reconstructor (``numpy.core.multiarray._reconstruct`` / ``numpy._core.multiarray``, with
   ``numpy.ndarray`` as its argument), ``numpy.dtype`` for plain numeric types, numpy's
   protocol-5 ``_frombuffer`` and ``_codecs.encode`` (latin-1 only; how python3 protocol 2
   writes bytes). Each is a wrapper that validates its arguments; every other global
   (``os.system``, ``builtins.eval``, ...) is refused without being imported or called.
3. **Contents validated.** A batch is a dict with ``data`` uint8 ``[N, 3072]`` and ``N``
   integer labels in ``[0, num_classes)`` (``labels``; ``fine_labels`` for CIFAR-100); the
   meta file lists ``num_classes`` class names.

``trt-nm datasets cifar10 --data-root DIR --download`` runs torchvision's downloader (which
verifies the archive's md5).

Samples: images normalised with the CIFAR mean/std; the train split is augmented per sample
(random crop with 4 px padding, horizontal flip, Cutout 16x16) and then repeated over T
(direct coding, the paper's choice) or Poisson-coded from the unnormalised pixel values.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from trt_nm.datasets.augment import CropFlipCutout
from trt_nm.datasets.errors import DatasetFileError, MissingDatasetError
from trt_nm.datasets.registry import DatasetInfo, register_dataset
from trt_nm.errors import ConfigError, require

ENCODINGS = ("direct", "poisson")
STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
NUM_CLASSES = {"cifar10": 10, "cifar100": 100}

#: torchvision's own layout (base_folder, train files, test files, meta file, url), repeated
#: here so that checking for files does not import torchvision
LAYOUT = {
    "cifar10": ("cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",), "batches.meta",
                "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"),
    "cifar100": ("cifar-100-python", ("train",), ("test",), "meta",
                 "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"),
}

#: md5 of every file of the official archives (torchvision's ``train_list``/``test_list``/
#: ``meta``), checked before a file is unpickled. Tests that write their own files in the
#: real format register the sums of those files here (``monkeypatch.setitem``).
CIFAR_MD5: dict[str, dict[str, str]] = {
    "cifar10": {
        "data_batch_1": "c99cafc152244af753f735de768cd75f",
        "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
        "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
        "data_batch_4": "634d18415352ddfa80567beed471001a",
        "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
        "test_batch": "40351d587109b95175f43aff81a1287e",
        "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
    },
    "cifar100": {
        "train": "16019d7e3df5f24257cddd939b257f8d",
        "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
        "meta": "7973b15100ade9c7d40fb424638fde48",
    },
}

#: label and class-name keys of the batches and the meta file
LABEL_KEY = {"cifar10": "labels", "cifar100": "fine_labels"}
NAMES_KEY = {"cifar10": "label_names", "cifar100": "fine_label_names"}
PIXELS = 3 * 32 * 32
#: no CIFAR file is larger (the biggest, CIFAR-100 ``train``, has 155 MB); bigger ones are
#: refused before they are read into memory
MAX_FILE_BYTES = 512 * 2**20
#: numeric dtypes an array inside a CIFAR pickle may have (real files: 'u1' only)
SAFE_DTYPES = frozenset({"b1", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f4", "f8"})


# ------------------------------------------------------------------- restricted unpickling


class RefusedPickle(pickle.UnpicklingError):
    """A pickle asks for something a CIFAR file never holds (a global, an odd array)."""


class _NDArrayType:
    """Stands in for ``numpy.ndarray`` inside a pickle: only the reconstructor accepts it."""


def _reconstruct(subtype: Any, shape: Any, typecode: Any) -> np.ndarray:
    # numpy pickles an array as _reconstruct(ndarray, (0,), b'b') followed by __setstate__
    if subtype is not _NDArrayType or tuple(shape) != (0,) or typecode not in (b"b", "b"):
        raise RefusedPickle("unexpected arguments to numpy's array reconstructor")
    return np.empty(0, dtype=np.int8)


def _dtype(spec: Any, align: Any = False, copy: Any = False) -> np.dtype:
    if not isinstance(spec, str) or spec not in SAFE_DTYPES:
        raise RefusedPickle(f"array type {spec!r} is not a plain numeric type")
    return np.dtype(spec, align=False, copy=True)  # a copy: BUILD may set its byte order only


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    # numpy >= 1.16 with pickle protocol 5 (in-band buffers)
    if not isinstance(buf, (bytes, bytearray)) or not isinstance(dtype, np.dtype) or dtype.str[1:] not in SAFE_DTYPES:
        raise RefusedPickle("unexpected arguments to numpy's _frombuffer")
    if not isinstance(shape, tuple) or not all(type(s) is int and s >= 0 for s in shape) or order not in ("C", "F"):
        raise RefusedPickle("unexpected array shape or order in numpy's _frombuffer")
    if int(np.prod(shape, dtype=np.int64)) * dtype.itemsize != len(buf):
        raise RefusedPickle(f"array of shape {shape} does not match its {len(buf)} data bytes")
    return np.frombuffer(bytes(buf), dtype=dtype).reshape(shape, order=order)


def _encode(text: Any, encoding: Any = "utf-8") -> bytes:
    # python3's protocol <= 2 writes bytes as _codecs.encode(str, 'latin1')
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise RefusedPickle("unexpected arguments to _codecs.encode")
    return text.encode("latin1")


#: the only globals a CIFAR pickle may reference, each mapped to a validating wrapper
ALLOWED_GLOBALS: dict[tuple[str, str], Callable[..., Any] | type] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): _NDArrayType,
    ("numpy", "dtype"): _dtype,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("_codecs", "encode"): _encode,
}


class CifarUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS` (never imports anything)."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise RefusedPickle(f"refused global {module}.{name} (CIFAR files hold only dicts, lists, "
                                         "strings, numbers and numpy arrays)") from None


def restricted_load(raw: bytes) -> Any:
    """Unpickle ``raw`` with :class:`CifarUnpickler` (python2 strings decoded as latin-1)."""
    return CifarUnpickler(io.BytesIO(raw), encoding="latin1").load()


# ------------------------------------------------------------------- reading the files


def file_md5(path: Path) -> str:
    """Hex md5 of a file (read in 1 MiB chunks)."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_verified(name: str, path: Path) -> bytes:
    """The bytes of ``path`` once their md5 matches :data:`CIFAR_MD5` (else one-line error).

    The sum is taken over the very bytes that are later unpickled (no second read).
    """
    expected = CIFAR_MD5[name].get(path.name)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise DatasetFileError(f"{path}: {size} bytes, more than any {name} file ({MAX_FILE_BYTES} at most); refusing to read it")
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    digest = hashlib.md5(raw, usedforsecurity=False).hexdigest()
    if digest != expected:
        raise DatasetFileError(
            f"{path}: md5 {digest} is not the published {expected} of the official {name} file "
            f"(damaged, or not from {LAYOUT[name][4]}); refusing to unpickle it"
        )
    return raw


def _unpickle(path: Path, raw: bytes) -> dict[str, Any]:
    try:
        entry = restricted_load(raw)
    except RefusedPickle as exc:
        raise DatasetFileError(f"{path}: not a CIFAR batch file: {str(exc).splitlines()[0][:200]}") from None
    except Exception as exc:  # truncated or damaged pickles raise many types
        first = (str(exc).splitlines() or [""])[0][:120]
        raise DatasetFileError(f"{path}: corrupt or truncated CIFAR batch file ({type(exc).__name__}: {first})") from None
    if not isinstance(entry, dict):
        raise DatasetFileError(f"{path}: not a CIFAR batch file (holds a {type(entry).__name__}, expected a dict)")
    # python2 files read with encoding='latin1' have str keys; python3 re-saves may have bytes
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in entry.items()}


def _labels(path: Path, key: str, value: Any, n: int, classes: int) -> np.ndarray:
    if isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind in "iu":
        labels = value.astype(np.int64)
    elif isinstance(value, list) and all(type(v) is int for v in value):
        if value and not -(2**63) <= min(value) <= max(value) < 2**63:
            raise DatasetFileError(f"{path}: '{key}' holds a label outside [0, {classes})")
        labels = np.asarray(value, dtype=np.int64).reshape(-1)
    else:
        raise DatasetFileError(f"{path}: '{key}' must be a list of integer labels, got {type(value).__name__}")
    if len(labels) != n:
        raise DatasetFileError(f"{path}: {len(labels)} labels in '{key}' for {n} images in 'data'")
    bad = np.flatnonzero((labels < 0) | (labels >= classes))
    if len(bad):
        raise DatasetFileError(f"{path}: '{key}' holds label {labels[bad[0]]} at image {bad[0]}, outside [0, {classes})")
    return labels


def read_batch(name: str, path: Path, raw: bytes | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One batch file: ``(uint8 images [N, 32, 32, 3] (HWC, as torchvision), int64 labels [N])``.

    ``raw`` is the file's content from :func:`read_verified` (read and verified here when
    None); it is unpickled with :class:`CifarUnpickler` and its contents validated. Any
    problem: :class:`DatasetFileError` naming the file.
    """
    entry = _unpickle(path, read_verified(name, path) if raw is None else raw)
    key = LABEL_KEY[name]
    if "data" not in entry or key not in entry:
        raise DatasetFileError(f"{path}: not a {name} batch file (needs 'data' and '{key}', has {sorted(map(str, entry))[:6]})")
    data = entry["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.dtype.fields is not None:
        got = f"{data.dtype} array" if isinstance(data, np.ndarray) else type(data).__name__
        raise DatasetFileError(f"{path}: 'data' must be a uint8 array [N, {PIXELS}], got {got}")
    if data.ndim != 2 or data.shape[1] != PIXELS:
        raise DatasetFileError(f"{path}: 'data' must be [N, {PIXELS}] (3x32x32 pixels per row), got shape {data.shape}")
    labels = _labels(path, key, entry[key], len(data), NUM_CLASSES[name])
    images = np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, labels


def read_meta(name: str, path: Path, raw: bytes | None = None) -> list[str]:
    """Class names (``num_classes`` strings) of the meta file (``raw`` as in :func:`read_batch`)."""
    entry = _unpickle(path, read_verified(name, path) if raw is None else raw)
    key, classes = NAMES_KEY[name], NUM_CLASSES[name]
    names = entry.get(key)
    if not isinstance(names, list) or len(names) != classes or not all(isinstance(s, (str, bytes)) for s in names):
        raise DatasetFileError(f"{path}: '{key}' must list {classes} class names")
    return [s.decode("latin1") if isinstance(s, bytes) else s for s in names]


# ------------------------------------------------------------------- datasets


def _expected(name: str, split: str) -> tuple[str, list[str], str]:
    folder, train, test, meta, url = LAYOUT[name]
    return folder, [*(train if split == "train" else test), meta], url


def check_cifar(name: str, root: str | None, splits: tuple[str, ...] = ("train", "test")) -> list[str]:
    """Missing files of CIFAR-10/100 under ``root`` (one entry per missing file)."""
    if root is None:
        return ["no --data-root given"]
    out = []
    for s in splits:
        folder, files, url = _expected(name, s)
        for f in files:
            p = Path(root).expanduser() / folder / f
            if not p.is_file() and str(p) not in out:
                out.append(str(p))
    return out


class DirectCoded(Dataset):
    """uint8 images ``[N, H, W, C]`` -> ``([T, C, H, W] float32, label)``.

    ``direct`` repeats the normalised (and, for training, augmented) image T times;
    ``poisson`` draws Bernoulli spikes with the augmented pixel value in [0, 1] as probability.
    """

    def __init__(self, data: np.ndarray, targets: list[int], T: int, mean, std, augment: CropFlipCutout | None, encoding: str):
        if encoding not in ENCODINGS:
            raise ConfigError(f"unknown encoding {encoding!r}; valid encodings: {', '.join(ENCODINGS)}")
        self.data = torch.from_numpy(np.ascontiguousarray(data)).permute(0, 3, 1, 2)  # [N, C, H, W] uint8
        self.targets = torch.as_tensor(targets, dtype=torch.int64)
        self.T = T
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)
        self.augment = augment
        self.encoding = encoding

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = self.data[i].float().div_(255.0)
        if self.encoding == "direct":
            img = (img - self.mean) / self.std
            if self.augment is not None:
                img = self.augment(img)
            x = img.unsqueeze(0).expand(self.T, *img.shape)
        else:
            if self.augment is not None:
                img = self.augment(img)
            x = (torch.rand(self.T, *img.shape) < img).float()
        return x, int(self.targets[i])


def _load(name: str, root: str | None, split: str, T: int, encoding: str, augment: bool) -> DirectCoded:
    if root is None:
        raise ConfigError(f"dataset {name!r} needs --data-root DIR (the folder holding {_expected(name, split)[0]}/)")
    if not Path(root).expanduser().is_dir():
        raise MissingDatasetError(f"data root {root} does not exist or is not a directory")
    missing = check_cifar(name, root, (split,))
    if missing:
        folder, _, url = _expected(name, split)
        raise MissingDatasetError(
            f"{name} {split} files not found: {', '.join(missing)} (extract {url} into {Path(root).expanduser()}/, "
            f"or run: trt-nm datasets {name} --data-root {root} --download)"
        )
    folder, files, _ = _expected(name, split)
    paths = [Path(root).expanduser() / folder / f for f in files]
    raws = [read_verified(name, p) for p in paths]  # every sum before any unpickling
    classes = read_meta(name, paths[-1], raws[-1])
    parts = [read_batch(name, p, r) for p, r in zip(paths[:-1], raws[:-1])]
    del raws
    data = np.concatenate([d for d, _ in parts])
    targets = np.concatenate([t for _, t in parts])
    mean, std = STATS[name]
    aug = CropFlipCutout() if split == "train" and augment else None
    ds = DirectCoded(data, targets.tolist(), T, mean, std, aug, encoding)
    ds.classes = classes  # type: ignore[attr-defined]
    return ds


def _download(name: str, root: str) -> None:
    tv = require("torchvision.datasets", "data")
    cls = getattr(tv, {"cifar10": "CIFAR10", "cifar100": "CIFAR100"}[name])
    Path(root).expanduser().mkdir(parents=True, exist_ok=True)
    for train in (True, False):
        cls(str(Path(root).expanduser()), train=train, download=True)


def _register(name: str, classes: int, desc: str) -> None:
    folder, url = LAYOUT[name][0], LAYOUT[name][4]
    info = DatasetInfo(
        name=name, num_classes=classes, in_channels=3, input_size=(32, 32), kind="static",
        sizes={"train": 50000, "test": 10000}, description=desc,
        source=f"torchvision.datasets.{name.upper()}", urls=(url,), layout=f"<root>/{folder}/ (the extracted archive)",
    )

    @register_dataset(info, check=lambda root: check_cifar(name, root), download=lambda root: _download(name, root))
    def load(root: str | None = None, split: str = "train", T: int = 4, *, encoding: str = "direct", augment: bool = True) -> DirectCoded:
        return _load(name, root, split, T, encoding, augment)

    load.__doc__ = f"{name}: ``[T, 3, 32, 32]`` direct-coded images; train split augmented (crop 4, flip, Cutout 16)."


_register("cifar10", 10, "CIFAR-10 via torchvision: crop+flip+Cutout16, direct coding over T")
_register("cifar100", 100, "CIFAR-100 via torchvision: crop+flip+Cutout16, direct coding over T")
