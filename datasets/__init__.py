"""Dataset registry (installed as ``trt_nm.datasets``).

``get_dataset(name, root, split, T, ...)`` returns a ``torch.utils.data.Dataset`` of
time-major samples ``[T, C, H, W]`` (``[T, F]`` for audio-like data) with integer labels;
``dataset_info(name)`` gives the metadata (classes, channels, sensor size) without loading.
"""

from __future__ import annotations

from trt_nm.datasets.registry import (
    DatasetInfo,
    dataset_info,
    download_dataset,
    get_dataset,
    list_datasets,
    missing_files,
    register_dataset,
)

# importing the recipe modules registers them
from trt_nm.datasets import mnist5k  # noqa: E402,F401  isort: skip
from trt_nm.datasets import nmnist5k  # noqa: E402,F401  isort: skip
from trt_nm.datasets import neuromorphic  # noqa: E402,F401  isort: skip
from trt_nm.datasets import shd  # noqa: E402,F401  isort: skip
from trt_nm.datasets import vision  # noqa: E402,F401  isort: skip

__all__ = [
    "DatasetInfo",
    "dataset_info",
    "download_dataset",
    "get_dataset",
    "list_datasets",
    "missing_files",
    "register_dataset",
]
