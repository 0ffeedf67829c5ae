"""Hardware-aware training: ``trt-nm train --target NAME`` trains in the chip's semantics.

The model is the chip's own (:meth:`~trt_nm.chip.base.Chip.build`: its neuron, readout, decays,
delays and weight/threshold grids through straight-through quantizers) from the first step; the
loss is the unchanged TRT loss (or any registered loss) on the model's per-step outputs. After
every epoch the model is put on the chip's integer grids (:meth:`Chip.integerize`) and run in
the chip's exact arithmetic (:meth:`Chip.simulate`): the accuracy printed and stored is what the
chip computes, not the float model's.

``log.csv`` holds one row per epoch (loss, chip-exact val accuracy, seconds).
Checkpoint (atomic, ``weights_only`` loadable, :func:`load_chip_checkpoint`): ``kind = "chip"``,
the chip name, its build arguments, the task, the state dict, the per-epoch history and the
final chip accuracy on the val and test splits.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from trt_nm.atomic import atomic_write_text
from trt_nm.chip.base import Chip, ChipTask
from trt_nm.chip.registry import get_chip
from trt_nm.datasets import dataset_info, get_dataset
from trt_nm.errors import CheckpointError, ConfigError
from trt_nm.limits import check_int
from trt_nm.losses import Loss
from trt_nm.training.checkpoint import read_checkpoint_file, save_checkpoint, validate_checkpoint

#: ``kind`` entry of a chip checkpoint (zoo checkpoints have none)
CHIP_KIND = "chip"


@dataclass(frozen=True)
class ChipTrainConfig:
    """One hardware-aware training run.

    Attributes:
        target: chip name (:func:`trt_nm.chip.list_chips`).
        task: dataset, T, classes and hidden widths (default: the chip's own task).
        epochs, batch_size, lr, seed: optimisation (Adam, cosine schedule); ``epochs``
            defaults to the task's.
        loss, loss_kwargs: a registered loss and its hyperparameters (default: TRT's).
        train_limit, test_limit: use only the first N samples of those splits.
        out_dir: run directory (``last.pt``, ``log.csv``).
    """

    target: str
    task: ChipTask
    epochs: int = 3
    batch_size: int = 64
    lr: float = 2e-3
    seed: int = 0
    loss: str = "trt"
    loss_kwargs: dict[str, float] = field(default_factory=dict)
    train_limit: int | None = None
    test_limit: int | None = None
    out_dir: str = "runs/chip"


@dataclass
class ChipSplit:
    """One split, encoded: ``x int16 [N, T', *chip_in_shape]`` (sample-major), ``y int64 [N]``."""

    x: torch.Tensor
    y: torch.Tensor

    def batches(self, batch_size: int, generator: torch.Generator | None = None):
        """``(x float [T', B, ...], y [B])`` batches (shuffled when a generator is given)."""
        n = len(self.y)
        order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size]
            yield self.x[idx].transpose(0, 1).float(), self.y[idx]

    def time_major(self, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(x int64 [T', N, ...], y [N])`` as numpy, the first ``limit`` samples."""
        x, y = self.x[:limit], self.y[:limit]
        return x.transpose(0, 1).to(torch.int64).numpy(), y.numpy()


def load_split(chip: Chip, task: ChipTask, split: str, limit: int | None = None) -> ChipSplit:
    """Split ``split`` of the task's dataset, its classes kept and relabelled, encoded for the chip."""
    ds = get_dataset(task.dataset, split=split, T=task.T)
    keep = None if task.classes is None else {c: i for i, c in enumerate(task.classes)}
    xs: list[torch.Tensor] = []
    ys: list[torch.Tensor] = []
    n = 0
    for x, y in DataLoader(ds, batch_size=256, shuffle=False):
        if keep is not None:
            m = torch.tensor([int(v) in keep for v in y], dtype=torch.bool)
            x, y = x[m], torch.tensor([keep[int(v)] for v in y[m]], dtype=torch.int64)
        if len(y) == 0:
            continue
        e = chip.encode(x.transpose(0, 1).float())
        if e.abs().max() > torch.iinfo(torch.int16).max:
            raise ConfigError(f"{chip.name}: encoded inputs exceed int16")
        xs.append(e.transpose(0, 1).to(torch.int16))
        ys.append(y.to(torch.int64))
        n += len(y)
        if limit is not None and n >= limit:
            break
    if not ys:
        raise ConfigError(f"{task.dataset} split {split!r} has no samples of classes {task.classes}")
    split_x, split_y = torch.cat(xs)[:limit], torch.cat(ys)[:limit]
    return ChipSplit(split_x, split_y)


def task_classes(task: ChipTask) -> int:
    """How many classes the task's model outputs."""
    return len(task.classes) if task.classes is not None else dataset_info(task.dataset).num_classes


def chip_accuracy(chip: Chip, model: torch.nn.Module, split: ChipSplit,
                  limit: int | None = None) -> float:
    """Accuracy (%) of the model as the chip computes it: integerized, exact simulation."""
    x, y = split.time_major(limit)
    net = chip.integerize(model)
    pred = chip.predict(chip.simulate(net, x)["out"])
    return 100.0 * float((pred == y).mean())


def train_chip(cfg: ChipTrainConfig, log: Any = print) -> dict[str, Any]:
    """Train, save ``out_dir/last.pt``, return its payload (with ``val_acc``/``test_acc``)."""
    chip = get_chip(cfg.target)
    task = cfg.task
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    train = load_split(chip, task, "train", cfg.train_limit)
    val = load_split(chip, task, "val")
    test = load_split(chip, task, "test", cfg.test_limit)
    in_shape = tuple(int(s) for s in train.x.shape[2:])
    n_classes = task_classes(task)
    build = {"in_shape": list(in_shape), "n_classes": n_classes, "hidden": list(task.hidden),
             "seed": cfg.seed}
    model = chip.build(in_shape, n_classes, tuple(task.hidden), seed=cfg.seed)
    problems = chip.check_model(model, in_shape)
    if problems:
        raise ConfigError(f"model does not fit {chip.name}: " + "; ".join(problems))
    loss_fn = Loss(cfg.loss, **cfg.loss_kwargs)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    steps = cfg.epochs * math.ceil(len(train.y) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps))
    gen = torch.Generator().manual_seed(cfg.seed)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    history: list[dict[str, float]] = []
    log(f"{chip.name}: {task.dataset} T={task.T} classes={n_classes} in={list(in_shape)} "
        f"hidden={list(task.hidden)}; {len(train.y)} train / {len(val.y)} val / {len(test.y)} test")
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        total, batches = 0.0, 0
        for x, y in train.batches(cfg.batch_size, gen):
            out = model(x)
            loss = loss_fn(out, y, model.named_parameters())
            if not torch.isfinite(loss):
                raise ConfigError(f"{chip.name}: the loss became non-finite in epoch {epoch}; lower --lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
            batches += 1
        model.eval()
        with torch.no_grad():
            val_acc = chip_accuracy(chip, model, val)
        row = {"epoch": epoch, "loss": total / max(1, batches), "val_chip_acc": val_acc,
               "seconds": time.perf_counter() - t0}
        history.append(row)
        _write_log(out_dir / "log.csv", history)
        log(f"epoch {epoch}: loss {row['loss']:.4f}, val accuracy on {chip.name} (exact) "
            f"{val_acc:.2f}% ({row['seconds']:.1f} s)")
    with torch.no_grad():
        test_acc = chip_accuracy(chip, model, test)
    payload = {
        "kind": CHIP_KIND,
        "chip": chip.name,
        "build": build,
        "task": asdict(task),
        "train": {k: v for k, v in asdict(cfg).items() if k not in ("task", "target")},
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "history": history,
        "val_acc": history[-1]["val_chip_acc"] if history else chip_accuracy(chip, model, val),
        "test_acc": test_acc,
    }
    path = save_checkpoint(out_dir / "last.pt", payload)
    log(f"test accuracy on {chip.name} (exact integer simulation): {test_acc:.2f}%; checkpoint {path}")
    return payload


def _write_log(path: Path, rows: list[dict[str, float]]) -> None:
    """``log.csv`` (epoch, loss, val_chip_acc, seconds), rewritten atomically each epoch."""
    lines = [",".join(rows[0])] + [",".join(f"{v:.6g}" if isinstance(v, float) else str(v)
                                            for v in r.values()) for r in rows]
    atomic_write_text(path, "\n".join(lines) + "\n")


def _task_from(data: Any, where: str) -> ChipTask:
    if not isinstance(data, dict):
        raise CheckpointError(f"{where}: task is not a mapping")
    try:
        classes = data.get("classes")
        task = ChipTask(
            dataset=str(data["dataset"]),
            T=check_int(data["T"], "T", 1, 10_000, where=where),
            classes=None if classes is None else tuple(check_int(c, "class", 0, 1000, where=where) for c in classes),
            hidden=tuple(check_int(h, "hidden width", 1, 100_000, where=where) for h in data.get("hidden", ())),
            why=str(data.get("why", "")),
            epochs=check_int(data.get("epochs", 3), "epochs", 1, 10_000, where=where),
            batch_size=check_int(data.get("batch_size", 64), "batch size", 1, 1 << 20, where=where),
        )
        dataset_info(task.dataset)
    except (KeyError, TypeError, ConfigError) as exc:
        raise CheckpointError(f"{where}: invalid task ({' '.join(str(exc).split())})") from None
    return task


def is_chip_checkpoint(data: dict[str, Any]) -> bool:
    """True for a checkpoint written by :func:`train_chip`."""
    return data.get("kind") == CHIP_KIND


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Any trt_nm checkpoint, read once with ``weights_only=True``: a chip checkpoint validated
    here, a zoo checkpoint by :func:`trt_nm.training.checkpoint.validate_checkpoint`."""
    p, data = read_checkpoint_file(path)
    if is_chip_checkpoint(data):
        return load_chip_checkpoint(p, data)
    return validate_checkpoint(p, data)


def load_chip_checkpoint(path: Path, data: dict[str, Any]) -> dict[str, Any]:
    """Validate a chip checkpoint's fields (names, sizes, the state dict against a fresh build);
    ``data`` comes from :func:`read_checkpoint_file` (format and version already checked)."""
    where = str(path)
    try:
        chip = get_chip(str(data.get("chip")))
    except ConfigError as exc:
        raise CheckpointError(f"{where}: {exc}") from None
    task = _task_from(data.get("task"), where)
    b = data.get("build")
    if not isinstance(b, dict):
        raise CheckpointError(f"{where}: no build arguments")
    try:
        in_shape = tuple(check_int(s, "input size", 1, 1 << 20, where=where) for s in b["in_shape"])
        n_classes = check_int(b["n_classes"], "classes", 1, 10_000, where=where)
        hidden = tuple(check_int(h, "hidden width", 1, 100_000, where=where) for h in b["hidden"])
        seed = check_int(b.get("seed", 0), "seed", 0, 2**32 - 1, where=where)
    except (KeyError, TypeError, ConfigError) as exc:
        raise CheckpointError(f"{where}: invalid build arguments ({' '.join(str(exc).split())})") from None
    if int(np.prod(in_shape)) > 1 << 22:
        raise CheckpointError(f"{where}: input shape {list(in_shape)} is too large")
    model = chip.build(in_shape, n_classes, hidden, seed=seed)
    state = data.get("model")
    expected = model.state_dict()
    if not isinstance(state, dict) or set(state) != set(expected):
        raise CheckpointError(f"{where}: weights do not fit the {chip.name} model the checkpoint declares")
    for k, t in expected.items():
        v = state[k]
        if not isinstance(v, torch.Tensor) or v.layout != torch.strided or v.shape != t.shape:
            raise CheckpointError(f"{where}: weight {k} does not have shape {list(t.shape)}")
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise CheckpointError(f"{where}: weight {k} holds NaN or inf")
    model.load_state_dict(state)
    model.eval()
    out = dict(data)
    out.update(chip_obj=chip, task_obj=task, model_obj=model)
    return out


def default_config(target: str, **overrides: Any) -> ChipTrainConfig:
    """The chip's default run (its embedded task) with ``overrides`` (``T``/``hidden`` change the
    task; anything else the run)."""
    chip = get_chip(target)
    task = chip.task
    if overrides.get("T") is not None:
        task = replace(task, T=int(overrides["T"]))
    if overrides.get("hidden") is not None:
        task = replace(task, hidden=tuple(overrides["hidden"]))
    kw = {k: v for k, v in overrides.items() if k not in ("T", "hidden") and v is not None}
    kw.setdefault("epochs", task.epochs)
    kw.setdefault("batch_size", task.batch_size)
    return ChipTrainConfig(target=chip.name, task=task, **kw)
