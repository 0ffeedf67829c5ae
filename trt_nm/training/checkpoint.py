"""Checkpoints: written atomically (temp file, fsync, rename), read with ``weights_only=True``.

A checkpoint is a dict of tensors and plain data only::

    {"format": "trt_nm-checkpoint", "version": 1, "epoch": int, "model": state_dict,
     "model_spec": dict, "config": dict, "optimizer": ..., "scheduler": ...,
     "rng": {...}, "best_acc": float, "history": [dict, ...]}
"""

from __future__ import annotations

import os
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trt_nm.atomic import atomic_write_bytes
from trt_nm.errors import CheckpointError
from trt_nm.models import SpikingModel, build_from_spec

FORMAT = "trt_nm-checkpoint"
VERSION = 1


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Atomically write ``payload`` (plain data and tensors) as a trt_nm checkpoint."""
    data = {"format": FORMAT, "version": VERSION, **payload}
    return atomic_write_bytes(path, lambda fh: torch.save(data, fh))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and validate a checkpoint; every failure is a one-line :class:`CheckpointError`."""
    path = Path(path)
    if path.is_dir():
        path = path / "last.pt"
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint is not a file: {path}")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"{path}: not a trt_nm checkpoint (not a torch file, or holds objects other than tensors)"
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "Weights only load failed" in reason:
            raise CheckpointError(
                f"{path}: not a trt_nm checkpoint (not a torch file, or holds arbitrary objects)"
            ) from None
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt: {reason[:160]})") from None
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a trt_nm checkpoint")
    if data.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {data.get('version')} is not supported (expected {VERSION})")
    for key in ("model", "model_spec"):
        if key not in data:
            raise CheckpointError(f"{path}: checkpoint has no {key!r} entry")
    return data


def capture_rng() -> dict[str, Any]:
    """All RNG states as tensors/plain data (loadable with ``weights_only=True``)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gauss": float(np_state[4]),
        },
        "python": {"version": py_state[0], "state": list(py_state[1]), "gauss": py_state[2]},
    }


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


def load_model(path: str | os.PathLike, backend: str | None = None, map_location: str = "cpu") -> SpikingModel:
    """Rebuild the model stored in a checkpoint (optionally on another backend), weights loaded."""
    data = load_checkpoint(path, map_location=map_location)
    model = build_from_spec(data["model_spec"], backend=backend)
    try:
        model.load_state_dict(data["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the stored architecture ({str(exc).splitlines()[0]})") from None
    return model
