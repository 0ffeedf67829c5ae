"""Checkpoints: written atomically (temp file, fsync, rename), read with ``weights_only=True``.

A checkpoint is a dict of tensors and plain data only::

    {"format": "trt_nm-checkpoint", "version": 1, "epoch": int, "model": state_dict,
     "model_spec": dict, "config": dict, "optimizer": ..., "scheduler": ...,
     "rng": {...}, "best_acc": float, "history": [dict, ...]}

Every file is hostile until checked: :func:`load_checkpoint` validates the model spec with
:func:`trt_nm.models.validate_spec` (the bounds of :mod:`trt_nm.limits`, the parameter count
before anything is allocated) and requires the stored weights to be exactly the tensors the
spec declares; the training config is validated by :class:`~trt_nm.config.TrainConfig`
(:func:`stored_config`) and the RNG state by :func:`check_rng` before use.
"""

from __future__ import annotations

import math
import os
import pickle
import random
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trt_nm.atomic import atomic_write_bytes
from trt_nm.config import TrainConfig
from trt_nm.errors import CheckpointError, ConfigError
from trt_nm.limits import MAX_EPOCHS, check_int
from trt_nm.models import SpikingModel, build_from_spec, declared_state_shapes, validate_spec

FORMAT = "trt_nm-checkpoint"
VERSION = 1


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Atomically write ``payload`` (plain data and tensors) as a trt_nm checkpoint."""
    data = {"format": FORMAT, "version": VERSION, **payload}
    return atomic_write_bytes(path, lambda fh: torch.save(data, fh))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and validate a checkpoint; every failure is a one-line :class:`CheckpointError`."""
    path, data = read_checkpoint_file(path, map_location)
    return validate_checkpoint(path, data)


def read_checkpoint_file(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> tuple[Path, dict[str, Any]]:
    """``(path, data)`` of a trt_nm checkpoint file (a run directory means its ``last.pt``),
    loaded with ``weights_only=True`` and checked for format and version only; every failure is
    a one-line :class:`CheckpointError`. :func:`validate_checkpoint` checks a zoo model's fields,
    :func:`trt_nm.chip.train.load_chip_checkpoint` a chip model's."""
    path = Path(path)
    if path.is_dir():
        path = path / "last.pt"
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint is not a file: {path}")
    try:
        # warnings raised while a file is deserialised (sparse-tensor validation, TypedStorage
        # deprecation) describe the file or the library, not anything the user can act on: they
        # are caught here, locally (never a global filter), so a bad file ends in ONE line
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
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
    return path, data


def validate_checkpoint(path: Path, data: dict[str, Any]) -> dict[str, Any]:
    """A zoo checkpoint's model spec, epoch and weights checked (see :func:`load_checkpoint`)."""
    if data.get("kind") == "chip":  # written by `trt-nm train --target` (trt_nm.chip.train)
        chip = data.get("chip") if isinstance(data.get("chip"), str) else "CHIP"
        raise CheckpointError(
            f"{path}: a checkpoint of `trt-nm train --target {chip[:40]}` (a chip's own model): use "
            f"`trt-nm deploy {path} --target {chip[:40]}` or `trt-nm simulate {path}`"
        )
    for key in ("model", "model_spec"):
        if key not in data:
            raise CheckpointError(f"{path}: checkpoint has no {key!r} entry")
    try:
        # the same validators and bounds as the command line (trt_nm.limits): nothing is built
        # or allocated for a spec until it passes
        data["model_spec"] = validate_spec(data["model_spec"], where="model spec")
        if "epoch" in data:
            data["epoch"] = check_int(data["epoch"], "epoch", 0, MAX_EPOCHS, where="checkpoint")
        shapes = declared_state_shapes(data["model_spec"])
    except ConfigError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    _check_weights(path, data["model"], shapes)
    return data


def _check_weights(path: Path, state: Any, shapes: dict[str, torch.Size]) -> None:
    """The stored weights are exactly the tensors the spec declares (names and shapes), dense
    and numeric: a spec cannot make a loader allocate what the file does not hold."""
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise CheckpointError(f"{path}: the 'model' entry is not a state dict")
    missing = [k for k in shapes if k not in state]
    extra = [k for k in state if k not in shapes]
    if missing or extra:
        what = f"missing {missing[0]}" if missing else f"unexpected {extra[0]}"
        n = len(missing) + len(extra)
        raise CheckpointError(
            f"{path}: weights do not fit the stored architecture ({what}"
            + (f" and {n - 1} more differences)" if n > 1 else ")")
        )
    for k, shape in shapes.items():
        t = state[k]
        if not isinstance(t, torch.Tensor) or t.layout != torch.strided or t.is_quantized or t.is_complex():
            raise CheckpointError(f"{path}: weight {k} is not a dense real tensor")
        if t.shape != shape:
            raise CheckpointError(
                f"{path}: weights do not fit the stored architecture ({k} has shape {list(t.shape)}, "
                f"the model spec declares {list(shape)})"
            )


def stored_config(data: dict[str, Any], path: str | os.PathLike) -> TrainConfig | None:
    """The checkpoint's training config validated like command-line values (None when it holds
    none); a bad one is a one-line :class:`CheckpointError`."""
    if data.get("config") is None:
        return None
    try:
        return TrainConfig.from_dict(data["config"])
    except (ConfigError, TypeError) as exc:
        raise CheckpointError(f"{path}: invalid training config ({' '.join(str(exc).split())})") from None


def nonfinite_weight(state: dict[str, torch.Tensor]) -> str | None:
    """The name of the first floating-point tensor of ``state`` holding NaN or inf (None: all finite)."""
    for k, t in state.items():
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return k
    return None


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


def _rng_tensor(t: Any, what: str, dtype: torch.dtype, numel: int) -> torch.Tensor:
    if (
        not isinstance(t, torch.Tensor) or t.layout != torch.strided or t.is_quantized
        or t.dtype != dtype or t.dim() != 1 or t.numel() != numel
    ):
        raise ConfigError(f"{what} is not a {numel}-element {dtype} tensor")
    return t.cpu()


def _int(v: Any, what: str, low: int, high: int) -> int:
    return check_int(v, what, low, high)


def check_rng(state: Any) -> dict[str, Any]:
    """Validate a stored RNG state (:func:`capture_rng`'s layout) completely, before any of it
    is applied; returns it as plain CPU values. Failures are ConfigErrors naming the part."""
    if not isinstance(state, dict):
        raise ConfigError(f"rng state must be a mapping, got {type(state).__name__}")
    torch_state = _rng_tensor(state.get("torch"), "rng torch state", torch.uint8, torch.get_rng_state().numel())
    cuda = state.get("cuda") or []
    if not isinstance(cuda, (list, tuple)) or len(cuda) > 1024:
        raise ConfigError("rng cuda state must be a list of tensors")
    cuda_states = []
    for t in cuda:
        size = t.numel() if isinstance(t, torch.Tensor) and t.numel() <= 2**20 else -1
        cuda_states.append(_rng_tensor(t, "rng cuda state", torch.uint8, size))
    n = state.get("numpy")
    if not isinstance(n, dict):
        raise ConfigError("rng numpy state must be a mapping")
    keys = _rng_tensor(n.get("keys"), "rng numpy keys", torch.int64, 624)
    if bool((keys < 0).any()) or bool((keys >= 2**32).any()):
        raise ConfigError("rng numpy keys must lie in [0, 2**32)")
    gauss = n.get("cached_gauss")
    if isinstance(gauss, bool) or not isinstance(gauss, (int, float)) or not math.isfinite(gauss):
        raise ConfigError("rng numpy cached_gauss must be a finite number")
    numpy_state = {
        "keys": keys,
        "pos": _int(n.get("pos"), "rng numpy pos", 0, 624),
        "has_gauss": _int(n.get("has_gauss"), "rng numpy has_gauss", 0, 1),
        "cached_gauss": float(gauss),
    }
    p = state.get("python")
    if not isinstance(p, dict):
        raise ConfigError("rng python state must be a mapping")
    words = p.get("state")
    if not isinstance(words, (list, tuple)) or len(words) != 625:
        raise ConfigError("rng python state must be 625 integers")
    words = [_int(w, "rng python state word", 0, 2**32 - 1) for w in words]
    if words[-1] > 624:
        raise ConfigError("rng python state position must be <= 624")
    pg = p.get("gauss")
    if pg is not None and (isinstance(pg, bool) or not isinstance(pg, (int, float)) or not math.isfinite(pg)):
        raise ConfigError("rng python gauss must be None or a finite number")
    python_state = {"version": _int(p.get("version"), "rng python version", 3, 3), "state": words, "gauss": pg}
    return {"torch": torch_state, "cuda": cuda_states, "numpy": numpy_state, "python": python_state}


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng` (the state is validated by :func:`check_rng` first)."""
    state = check_rng(state)
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        try:
            torch.cuda.set_rng_state_all(state["cuda"])
        except RuntimeError as exc:
            raise ConfigError(f"rng cuda state does not fit this machine's GPUs ({str(exc).splitlines()[0][:120]})") from None
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


def load_model(path: str | os.PathLike, backend: str | None = None, map_location: str = "cpu") -> SpikingModel:
    """Rebuild the model stored in a checkpoint (optionally on another backend), weights loaded."""
    return model_from_checkpoint(load_checkpoint(path, map_location=map_location), path, backend=backend)


def model_from_checkpoint(data: dict[str, Any], path: str | os.PathLike, backend: str | None = None) -> SpikingModel:
    """The model of checkpoint ``data`` (as :func:`load_checkpoint` returned it), weights loaded."""
    model = build_from_spec(data["model_spec"], backend=backend)
    try:
        model.load_state_dict(data["model"])
    except (RuntimeError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: weights do not fit the stored architecture ({str(exc).splitlines()[0]})") from None
    return model
