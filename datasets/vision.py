"""CIFAR-10 and CIFAR-100 through torchvision, with the paper's augmentation and direct coding.

The python-pickle batches are read by torchvision's own ``CIFAR10``/``CIFAR100`` classes with
downloading disabled. Their md5 checks are replaced by a presence check (a subclass with the
checksums set to None): corrupt files are still caught, because unpickling them fails, and
the error names the file. ``trt-nm datasets cifar10 --data-root DIR --download`` runs
torchvision's downloader (which verifies the archive's md5).

Samples: images normalised with the CIFAR mean/std; the train split is augmented per sample
(random crop with 4 px padding, horizontal flip, Cutout 16x16) and then repeated over T
(direct coding, the paper's choice) or Poisson-coded from the unnormalised pixel values.
"""

from __future__ import annotations

import pickle
from pathlib import Path

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


def _torchvision_class(name: str) -> type:
    tv = require("torchvision.datasets", "data")
    base = getattr(tv, {"cifar10": "CIFAR10", "cifar100": "CIFAR100"}[name])
    return type(
        base.__name__,
        (base,),
        {
            "train_list": [[f, None] for f, _ in base.train_list],
            "test_list": [[f, None] for f, _ in base.test_list],
            "meta": {**base.meta, "md5": None},
        },
    )


#: torchvision's own layout (base_folder, train files, test files, meta file, url), repeated
#: here so that checking for files does not import torchvision
LAYOUT = {
    "cifar10": ("cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",), "batches.meta",
                "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"),
    "cifar100": ("cifar-100-python", ("train",), ("test",), "meta",
                 "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"),
}


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
    cls = _torchvision_class(name)
    try:
        ds = cls(str(Path(root).expanduser()), train=split == "train", download=False)
    except Exception as exc:  # unpickling a damaged file raises many types
        folder, files, _ = _expected(name, split)
        bad = _first_bad_pickle([Path(root).expanduser() / folder / f for f in files])
        where = bad or str(Path(root).expanduser() / folder)
        raise DatasetFileError(f"{where}: corrupt or truncated CIFAR batch file ({type(exc).__name__})") from None
    if ds.data.ndim != 4 or ds.data.shape[1:] != (32, 32, 3) or len(ds.data) != len(ds.targets):
        raise DatasetFileError(f"{Path(root).expanduser() / _expected(name, split)[0]}: unexpected CIFAR layout {ds.data.shape}")
    mean, std = STATS[name]
    aug = CropFlipCutout() if split == "train" and augment else None
    return DirectCoded(ds.data, list(ds.targets), T, mean, std, aug, encoding)


def _first_bad_pickle(paths: list[Path]) -> str | None:
    for p in paths:
        try:
            with open(p, "rb") as fh:
                entry = pickle.load(fh, encoding="latin1")
            if not isinstance(entry, dict):
                return str(p)
        except Exception:
            return str(p)
    return None


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
