"""``trt-nm datasets``: list the registered datasets, check their files, download them.

``trt-nm datasets [--data-root DIR] [-T T]`` prints one row per dataset (classes, sample
shape, split sizes, whether its files are present under DIR). ``trt-nm datasets NAME
--data-root DIR`` says exactly which files are missing and where they go;
``--download`` runs the dataset's own downloader (tonic or torchvision).
"""

from __future__ import annotations

import argparse

from trt_nm.cli import common
from trt_nm.datasets import dataset_info, download_dataset, list_datasets, missing_files
from trt_nm.datasets.errors import MissingDatasetError
from trt_nm.errors import ConfigError


def _status(name: str, root: str | None) -> str:
    if dataset_info(name).embedded:
        return "embedded"
    if root is None:
        return "needs --data-root"
    return "present" if not missing_files(name, root) else "missing"


def _shape(shape: tuple[int, ...]) -> str:
    return "[" + ",".join(str(s) for s in shape) + "]"


def run(args: argparse.Namespace) -> int:
    """``trt-nm datasets [NAME]``: list, describe, check or download datasets."""
    if args.name is None:
        if args.download:
            raise ConfigError("--download needs a dataset NAME (see trt-nm datasets)")
        rows = [("name", "kind", "classes", f"sample (T={args.T})", "train/test", "files", "description")]
        for name in list_datasets():
            info = dataset_info(name)
            sizes = "/".join(str(info.sizes.get(s, "?")) for s in ("train", "test"))
            rows.append((name, info.kind, str(info.num_classes), _shape(info.sample_shape(args.T)), sizes,
                         _status(name, args.data_root), info.description))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
        return 0

    info = dataset_info(args.name)
    if args.download:
        if info.embedded:
            print(f"{info.name} is embedded: nothing to download")
            return 0
        if args.data_root is None:
            raise ConfigError("--download needs --data-root DIR (where to put the files)")
        download_dataset(info.name, args.data_root)
    print(f"{info.name}: {info.description}")
    print(f"  kind {info.kind}, {info.num_classes} classes, sample {_shape(info.sample_shape(args.T))} for T={args.T}")
    if info.sensor_size:
        print(f"  sensor (W, H, P) {info.sensor_size}")
    if info.sizes:
        print("  sizes " + ", ".join(f"{k} {v}" for k, v in info.sizes.items()))
    if info.source:
        print(f"  source {info.source}")
    if info.embedded:
        print("  files: embedded, nothing to download")
        return 0
    if info.layout:
        print(f"  layout {info.layout}")
    for url in info.urls:
        print(f"  url {url}")
    if args.data_root is None:
        print("  files: give --data-root DIR to check them")
        return 0
    missing = missing_files(info.name, args.data_root)
    if not missing:
        print(f"  files: present under {args.data_root}")
        return 0
    raise MissingDatasetError(
        f"{info.name} files missing under {args.data_root}: put {'; '.join(missing)} "
        f"(or run: trt-nm datasets {info.name} --data-root {args.data_root} --download)"
    )


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``datasets`` subcommand."""
    p = sub.add_parser("datasets", help="list datasets, check their files, download them")
    p.add_argument("name", nargs="?", default=None, help="a dataset to describe, check or download")
    p.add_argument("--data-root", default=None, help="directory holding (or receiving) the dataset files")
    p.add_argument("--download", action="store_true", help="fetch NAME with the dataset's own downloader")
    p.add_argument("-T", "--T", dest="T", type=common.timesteps, default=4, help="timesteps for the shapes shown")
    p.set_defaults(func=run)
