"""The trainer: TRT (or TET/SDT/CE) training with Adam + cosine, AMP, compile, resumable.

Each epoch writes ``last.pt`` (and ``best.pt`` when test accuracy improves) atomically,
rewrites ``log.csv`` from the run history, and logs to TensorBoard when it is installed.
Shuffling uses a permutation seeded by ``(seed, epoch)`` and all RNG states are checkpointed,
so ``--resume`` continues exactly where the last completed epoch ended.

Under ``torchrun`` (environment ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``) the trainer runs
data-parallel (see :mod:`trt_nm.training.distributed`): DistributedDataParallel with BatchNorm
statistics synchronised over ranks, ``batch_size`` as the global batch split evenly over
the ranks, evaluation sharded and summed, and logging/checkpoints on rank 0 only.
"""

from __future__ import annotations

import copy
import csv
import io
import math
import random
import sys
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from trt_nm.analysis.fisher import FisherRecorder
from trt_nm.atomic import atomic_write_bytes
from trt_nm.config import TrainConfig
from trt_nm.datasets import dataset_info, get_dataset
from trt_nm.errors import CheckpointError, ConfigError, TrainingDiverged, TrtNmError
from trt_nm.limits import check_float
from trt_nm.losses import Loss
from trt_nm.metrics.accuracy import correct_final, correct_per_timestep
from trt_nm.models import SpikingModel, build_model
from trt_nm.training import distributed
from trt_nm.training.callbacks import Callback
from trt_nm.training.checkpoint import (
    capture_rng,
    check_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
    stored_config,
)
from trt_nm.training.qat import QATCallback
from trt_nm.training.rundir import check_run_dir, prepare_run_dir


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto``; a missing GPU is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but no CUDA GPU is available")
    return dev


def autocast_dtype(amp: str) -> torch.dtype | None:
    """``"none"`` / ``"bf16"`` / ``"fp16"`` -> the autocast dtype (None: full precision)."""
    return {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def to_time_major(x: torch.Tensor) -> torch.Tensor:
    """DataLoader batches are ``[B, T, ...]``; models take ``[T, B, ...]``."""
    return x.transpose(0, 1)


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    loader: DataLoader,
    device: torch.device,
    amp: str = "none",
) -> dict[str, Any]:
    """Per-timestep accuracy (in %) of the running-mean prediction on ``loader``.

    Returns ``{"acc_per_t": [T floats], "acc": acc at T, "n": samples, "correct": [T ints]}``.
    """
    model.eval()
    correct: torch.Tensor | None = None
    n = 0
    dtype = autocast_dtype(amp)
    for x, y in loader:
        x = to_time_major(x.to(device, non_blocking=True))
        y = y.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            out = model(x)
        c = correct_per_timestep(out, y).cpu()
        correct = c if correct is None else correct + c
        n += y.numel()
    if correct is None or n == 0:
        raise ConfigError("evaluation split is empty")
    acc = (correct.double() * 100.0 / n).tolist()
    return {"acc_per_t": acc, "acc": acc[-1], "n": n, "correct": correct.tolist()}


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns."""

    out_dir: Path
    best_acc: float
    final_acc_per_t: list[float]
    history: list[dict[str, Any]] = field(default_factory=list)


def default_callbacks(cfg: TrainConfig) -> list[Callback]:
    """Callbacks implied by the config (QAT target, Fisher recording)."""
    cbs: list[Callback] = []
    if cfg.qat_target:
        cbs.append(QATCallback(cfg.qat_target))
    if cfg.fisher_epochs:
        cbs.append(FisherRecorder(cfg.fisher_epochs))
    return cbs


class Trainer:
    """Train a zoo model on a registered dataset according to a :class:`TrainConfig`."""

    def __init__(
        self,
        cfg: TrainConfig,
        *,
        train_set: Dataset | None = None,
        test_set: Dataset | None = None,
        model: SpikingModel | None = None,
        progress: bool | None = None,
        log=print,
        callbacks: list[Callback] | None = None,
    ) -> None:
        self.cfg = cfg
        self.callbacks = list(callbacks or []) + default_callbacks(cfg)
        self.log = log
        self.progress = progress
        self.device = resolve_device(cfg.device)
        self.dist, self.device = distributed.init_from_env(self.device)
        self.per_rank_batch = distributed.per_rank_batch(cfg.batch_size, self.dist)
        if not self.dist.is_main:  # rank 0 alone logs and shows progress
            self.log = _silent
            self.progress = False
        if cfg.amp != "none" and self.device.type != "cuda":
            raise ConfigError(f"--amp {cfg.amp} needs a CUDA device (got {self.device})")
        self.out_dir = Path(cfg.out_dir)
        check_run_dir(self.out_dir)  # a file, under a file, not writable: before any work
        if train_set is None or test_set is None:
            # only static images are encoded over T; event data comes binned
            kw = {"encoding": cfg.encoding} if dataset_info(cfg.dataset).kind == "static" else {}
        self.train_set = train_set if train_set is not None else get_dataset(
            cfg.dataset, cfg.data_root, "train", cfg.T, **kw
        )
        self.test_set = test_set if test_set is not None else get_dataset(
            cfg.dataset, cfg.data_root, "test", cfg.T, **kw
        )
        if cfg.train_limit:
            self.train_set = Subset(self.train_set, range(min(cfg.train_limit, len(self.train_set))))
        if cfg.test_limit:
            self.test_set = Subset(self.test_set, range(min(cfg.test_limit, len(self.test_set))))
        if len(self.train_set) == 0 or len(self.test_set) == 0:
            raise ConfigError("training or test split is empty")
        seed_everything(cfg.seed)
        if model is None:
            info = getattr(self.train_set, "info", None) or getattr(getattr(self.train_set, "dataset", None), "info", None)
            if info is None:
                raise ConfigError("dataset has no 'info' metadata; pass a model explicitly")
            model = build_model(
                cfg.arch,
                backend=cfg.backend,
                num_classes=info.num_classes,
                in_channels=info.in_channels,
                T=cfg.T,
                input_size=tuple(info.input_size),
                neuron=cfg.neuron_config(),
            )
        self.model = model.to(self.device)
        if self.dist.enabled:
            if len(self.test_set) < self.dist.world_size:
                raise ConfigError(f"test split has fewer samples than the {self.dist.world_size} processes")
            distributed.convert_sync_batchnorm(self.model, self.device)
        self.loss_fn = Loss(cfg.loss, **cfg.loss_kwargs)
        if cfg.optimizer == "adam":
            # the fused CUDA kernel is the same Adam update in one launch
            self.optimizer = torch.optim.Adam(
                self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                fused=True if self.device.type == "cuda" else None,
            )
        else:
            self.optimizer = torch.optim.SGD(
                self.model.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay
            )
        # the optimizer's hyperparameters come from the config, never from a checkpoint
        self._group_defaults = [
            copy.deepcopy({k: v for k, v in g.items() if k != "params"}) for g in self.optimizer.param_groups
        ]
        self.scheduler = self._make_scheduler()
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.amp == "fp16")
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp: torch.nn.Module | None = DistributedDataParallel(self.model, device_ids=ids)
            self.forward = torch.compile(self.ddp) if cfg.compile else self.ddp
            # evaluation needs no gradient sync: run the plain module on each rank's shard
            self.eval_forward = torch.compile(self.model) if cfg.compile else self.model
        else:
            self.ddp = None
            self.forward = torch.compile(self.model) if cfg.compile else self.model
            self.eval_forward = self.forward
        self.start_epoch = 0
        self.best_acc = -1.0
        self.history: list[dict[str, Any]] = []
        self._tb = None
        self._saved_epoch: int | None = None  # the epoch this run last wrote to last.pt

    def _make_scheduler(self) -> torch.optim.lr_scheduler.LRScheduler:
        if self.cfg.scheduler == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=self.cfg.epochs, eta_min=0.0)
        return torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda e: 1.0)

    def _replan_schedule(self, epochs_done: int) -> None:
        """The learning-rate schedule of ``cfg.epochs`` epochs, advanced past ``epochs_done``.

        The schedule is a function of the config and the epoch, so it is rebuilt and replayed
        (the same float operations as an uninterrupted run: a run resumed with the same
        ``epochs`` is bit-identical) rather than read from the checkpoint. Extending a run
        (``--epochs`` larger than the checkpoint's) thereby re-plans the cosine over the new
        total instead of training at the old schedule's final learning rate of 0.
        """
        for g, d in zip(self.optimizer.param_groups, self._group_defaults, strict=True):
            g.pop("initial_lr", None)
            g.update(copy.deepcopy(d))
        self.scheduler = self._make_scheduler()
        with warnings.catch_warnings():  # "lr_scheduler.step() before optimizer.step()": a replay
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(min(epochs_done, self.cfg.epochs)):
                self.scheduler.step()

    # ------------------------------------------------------------------ checkpoints
    def _payload(self, epoch: int) -> dict[str, Any]:
        return {
            "epoch": epoch,
            "model": self.model.state_dict(),
            "model_spec": self.model.spec,
            "config": self.cfg.to_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": capture_rng(),
            "best_acc": self.best_acc,
            "history": self.history,
        }

    def resume(self, path: str | Path) -> None:
        """Restore everything from a checkpoint written by this trainer.

        Every entry is validated before anything is applied (one-line :class:`CheckpointError`
        naming the file): the epoch (0..``MAX_EPOCHS``), the RNG state, the optimizer moments
        (one tensor per parameter, of its shape), best accuracy and history. The optimizer's
        hyperparameters and the learning-rate schedule come from this run's config
        (:meth:`_replan_schedule`), not from the file.
        """
        data = load_checkpoint(path)
        old_cfg = stored_config(data, path)
        arch = data["model_spec"]["arch"]
        if (old_cfg is not None and old_cfg.arch != self.cfg.arch) or arch != self.model.spec["arch"]:
            raise CheckpointError(f"{path}: checkpoint is for arch {arch!r}, not {self.model.spec['arch']!r}")
        for key in ("epoch", "optimizer", "rng"):
            if key not in data:
                raise CheckpointError(f"{path}: checkpoint has no {key!r} entry; it cannot be resumed")
        try:
            epoch = int(data["epoch"])  # validated by load_checkpoint
            rng = check_rng(data["rng"])
            best = check_float(data.get("best_acc", -1.0), "best_acc", -1.0, 100.0)
            history = _check_history(data.get("history", []), epoch)
        except ConfigError as exc:
            raise CheckpointError(f"{path}: {exc}") from None
        if not isinstance(data["optimizer"], dict):
            raise CheckpointError(f"{path}: the optimizer state is not a mapping")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.model.load_state_dict(data["model"])
                self.optimizer.load_state_dict(data["optimizer"])
                self._check_optimizer_state()
                if "scaler" in data and self.scaler.is_enabled():
                    sc = data["scaler"]
                    if not isinstance(sc, dict):
                        raise ValueError("scaler state is not a mapping")
                    check_float(sc.get("scale"), "scaler scale", 0.0, low_open=True)
                    self.scaler.load_state_dict(sc)
        except (KeyError, RuntimeError, ValueError, TypeError, AttributeError, IndexError) as exc:
            text = " ".join(str(exc).split())[:160] or type(exc).__name__
            raise CheckpointError(f"{path}: checkpoint does not match this run ({text})") from None
        restore_rng(rng)
        self.start_epoch = epoch
        self.best_acc = best
        self.history = history
        self._replan_schedule(epoch)
        self.log(f"resumed from {path} at epoch {self.start_epoch}")
        planned = old_cfg.epochs if old_cfg is not None else None
        if planned is not None and planned != self.cfg.epochs and epoch < self.cfg.epochs:
            lr = self.optimizer.param_groups[0]["lr"]
            self.log(
                f"learning-rate schedule re-planned: {self.cfg.scheduler} over {self.cfg.epochs} epochs "
                f"(the checkpoint planned {planned}); epoch {epoch + 1} trains at lr {lr:.4g}"
            )

    def _check_optimizer_state(self) -> None:
        """The loaded optimizer moments: one dense real tensor (or None) per state entry, of its
        parameter's shape (a scalar ``step``); hyperparameters reset to this run's config."""
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                for k, v in self.optimizer.state.get(p, {}).items():
                    if v is None:
                        continue
                    if not isinstance(v, torch.Tensor) or v.layout != torch.strided or v.is_complex():
                        raise ValueError(f"optimizer state {k!r} is not a dense tensor")
                    if k == "step":
                        if v.numel() != 1 or not bool(torch.isfinite(v).all()) or float(v) < 0:
                            raise ValueError("optimizer step count is not a non-negative number")
                    elif v.shape != p.shape:
                        raise ValueError(f"optimizer state {k!r} has shape {list(v.shape)}, its parameter {list(p.shape)}")
        for g, d in zip(self.optimizer.param_groups, self._group_defaults, strict=True):
            g.update(copy.deepcopy(d))

    def _write_csv(self) -> None:
        if not self.history:
            return
        keys = list(dict.fromkeys(k for row in self.history for k in row))  # rows may add columns
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys, restval="")
        w.writeheader()
        for row in self.history:
            w.writerow(row)
        atomic_write_bytes(self.out_dir / "log.csv", lambda fh: fh.write(buf.getvalue().encode()))

    def _tensorboard(self):
        if self._tb is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                self._tb = False
            else:
                self._tb = SummaryWriter(str(self.out_dir / "tb"))
        return self._tb or None

    # ------------------------------------------------------------------ loops
    def _loader(self, ds: Dataset, shuffle: bool, epoch: int) -> DataLoader:
        seed = self.cfg.seed * 100_003 + epoch
        g = torch.Generator()
        g.manual_seed(seed)
        sampler = (
            distributed.EpochSampler(len(ds), seed, self.dist.rank, self.dist.world_size)
            if shuffle
            else None
        )
        return DataLoader(
            ds,
            batch_size=self.per_rank_batch,
            sampler=sampler,
            generator=g if shuffle else None,
            num_workers=self.cfg.num_workers,
            pin_memory=self.device.type == "cuda",
            drop_last=False,
        )

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One epoch (0-based ``epoch``) of optimizer steps; returns the mean ``train_loss``
        and the ``train_acc`` (%) of the inference rule, summed over ranks."""
        cfg = self.cfg
        self.model.train()
        loader = self._loader(self.train_set, True, epoch)
        dtype = autocast_dtype(cfg.amp)
        total_loss, total_correct, n = 0.0, 0, 0
        try:
            from tqdm.auto import tqdm
        except ImportError:  # pragma: no cover
            tqdm = None
        steps = len(loader) if cfg.max_steps_per_epoch is None else min(len(loader), cfg.max_steps_per_epoch)
        # progress=None: tqdm decides (shown on a terminal, hidden in logs)
        disable = None if self.progress is None else not self.progress
        bar = None
        if tqdm is not None:
            bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, disable=disable, file=sys.stderr)
        for step, (x, y) in enumerate(loader):
            if step >= steps:
                break
            x = to_time_major(x.to(self.device, non_blocking=True))
            y = y.to(self.device, non_blocking=True)
            with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
                out = self.forward(x)
            loss = self.loss_fn(out, y, self.model.named_parameters())
            if not torch.isfinite(loss):
                raise TrainingDiverged(
                    f"loss became {loss.item()} at epoch {epoch + 1} step {step + 1}; stopped, {self._kept()}"
                )
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            with torch.no_grad():
                bs = y.numel()
                total_loss += loss.item() * bs
                total_correct += int(correct_final(out, y))
                n += bs
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{total_loss / n:.4f}", acc=f"{100.0 * total_correct / n:.1f}%")
        if bar is not None:
            bar.close()
        total_loss, total_correct, n = distributed.all_reduce_sum(
            [total_loss, float(total_correct), float(n)], self.device
        )
        return {"train_loss": total_loss / max(n, 1), "train_acc": 100.0 * total_correct / max(n, 1)}

    def _kept(self) -> str:
        """What is true of the run directory when training stops early (for the message)."""
        last = self.out_dir / "last.pt"
        if self._saved_epoch is not None:
            return f"the last good checkpoint is {last} (epoch {self._saved_epoch})"
        if last.is_file():
            return f"{last} was left as it was (this run wrote no checkpoint)"
        return f"no checkpoint was written (the run diverged before its first epoch ended; {self.out_dir} holds none)"

    def _evaluate(self, loader: DataLoader) -> dict[str, Any]:
        """:func:`evaluate` on this rank's shard, summed over ranks when distributed."""
        ev = evaluate(self.eval_forward, loader, self.device, self.cfg.amp)
        if not self.dist.enabled:
            return ev
        counts = [float(c) for c in ev["correct"]]
        *counts, n = distributed.all_reduce_sum([*counts, float(ev["n"])], self.device)
        acc = [c * 100.0 / n for c in counts]
        return {"acc_per_t": acc, "acc": acc[-1], "n": int(n)}

    def fit(self, resume: str | Path | None = None) -> TrainResult:
        """Train for ``cfg.epochs`` epochs (continuing a checkpoint when ``resume`` is given).

        Before anything else the run directory is checked, created and locked
        (:func:`trt_nm.training.rundir.prepare_run_dir`); the lock is released when this returns
        or raises (and by the kernel if the process dies).
        """
        lock = self._prepare_out_dir()
        try:
            return self._fit(resume)
        finally:
            if lock is not None:
                lock.release()

    def _prepare_out_dir(self):
        """Rank 0 checks, creates and locks the run directory (and removes stale temp files)
        before any training; every rank learns whether that worked."""
        lock, error = None, None
        if self.dist.is_main:
            try:
                lock, removed = prepare_run_dir(self.out_dir)
            except TrtNmError as exc:
                error = exc
            else:
                if removed:
                    self.log(f"removed {len(removed)} stale temporary file(s) of an interrupted write from {self.out_dir}")
        if self.dist.enabled:
            (failed,) = distributed.all_reduce_sum([1.0 if error is not None else 0.0], self.device)
            if failed and error is None:
                if lock is not None:
                    lock.release()
                raise ConfigError(f"rank 0 could not prepare the run directory {self.out_dir}")
        if error is not None:
            raise error
        return lock

    def _fit(self, resume: str | Path | None) -> TrainResult:
        cfg = self.cfg
        if resume is not None:
            self.resume(resume)
        main = self.dist.is_main
        test_set = distributed.eval_shard(self.test_set, self.dist) if self.dist.enabled else self.test_set
        test_loader = self._loader(test_set, False, 0)
        for cb in self.callbacks:
            cb.on_train_start(self)
        last_eval: dict[str, Any] | None = None
        for epoch in range(self.start_epoch, cfg.epochs):
            t0 = time.perf_counter()
            lr = self.optimizer.param_groups[0]["lr"]
            if not (math.isfinite(lr) and lr > 0):  # never train at lr 0
                raise ConfigError(f"the learning rate for epoch {epoch + 1} is {lr}; stopped, {self._kept()}")
            tr = self.train_epoch(epoch)
            self.scheduler.step()
            ev = self._evaluate(test_loader)
            last_eval = ev
            row = {
                "epoch": epoch + 1,
                "train_loss": round(tr["train_loss"], 6),
                "train_acc": round(tr["train_acc"], 4),
                "test_acc": round(ev["acc"], 4),
                **{f"test_acc_t{t + 1}": round(a, 4) for t, a in enumerate(ev["acc_per_t"])},
                "lr": self.optimizer.param_groups[0]["lr"],
                "seconds": round(time.perf_counter() - t0, 2),
            }
            for cb in self.callbacks:
                cb.on_epoch_end(self, epoch + 1, row)
            self.history.append(row)
            improved = ev["acc"] > self.best_acc
            if improved:
                self.best_acc = ev["acc"]
            if main:
                payload = self._payload(epoch + 1)
                save_checkpoint(self.out_dir / "last.pt", payload)
                self._saved_epoch = epoch + 1
                if improved:
                    save_checkpoint(self.out_dir / "best.pt", payload)
                self._write_csv()
            tb = self._tensorboard() if main else None
            if tb is not None:
                for k, v in row.items():
                    if k != "epoch":
                        tb.add_scalar(k, v, epoch + 1)
                tb.flush()
            per_t = " ".join(f"{a:.1f}" for a in ev["acc_per_t"])
            self.log(
                f"epoch {epoch + 1}/{cfg.epochs}  loss {tr['train_loss']:.4f}  train {tr['train_acc']:.2f}%  "
                f"test {ev['acc']:.2f}%  per-t [{per_t}]  {row['seconds']:.1f}s"
            )
        if last_eval is None:  # resumed a finished run: just report
            last_eval = self._evaluate(test_loader)
        if self._tb:
            self._tb.close()
        return TrainResult(self.out_dir, self.best_acc, last_eval["acc_per_t"], self.history)


def _silent(*args: Any, **kwargs: Any) -> None:
    """The log function of ranks other than 0."""


def _check_history(history: Any, epoch: int) -> list[dict[str, Any]]:
    """A checkpoint's per-epoch log rows: a list of mappings of names to plain values, at most
    one per epoch done."""
    if not isinstance(history, list) or len(history) > max(epoch, 0):
        raise ConfigError(f"history must be a list of at most {epoch} per-epoch rows")
    for row in history:
        if not isinstance(row, dict) or len(row) > 10_000:
            raise ConfigError("history rows must be mappings")
        for k, v in row.items():
            if not isinstance(k, str) or not (v is None or isinstance(v, (bool, int, float, str))):
                raise ConfigError(f"history row entry {k!r} is not a plain value")
    return [dict(r) for r in history]


def config_from_checkpoint(path: str | Path, **overrides: Any) -> TrainConfig:
    """The :class:`TrainConfig` stored in a checkpoint (validated like command-line values),
    with ``overrides`` applied (None values ignored).

    Paths stored in a checkpoint are not trusted: ``out_dir`` is the checkpoint's own directory
    and ``data_root`` is None (the dataset's defaults) unless given as overrides.
    """
    data = load_checkpoint(path)
    cfg = stored_config(data, path)
    if cfg is None:
        raise CheckpointError(f"{path}: checkpoint holds no training config")
    ckpt = Path(path)
    ckpt = ckpt / "last.pt" if ckpt.is_dir() else ckpt
    values: dict[str, Any] = {"out_dir": str(ckpt.parent), "data_root": None}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return replace(cfg, **values)


__all__ = ["Callback", "Trainer", "TrainResult", "config_from_checkpoint", "default_callbacks", "evaluate", "seed_everything"]
