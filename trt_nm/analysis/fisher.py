"""Fisher information per timestep (Kim et al., AAAI 2023; used by the TRT paper, arXiv 2506.19256).

For a model whose output at timestep t is the logit vector ``O(t)`` and whose prediction after
t steps is the mean of the first t outputs, the trace of the empirical Fisher information of
the first t timesteps is estimated over N training batches as::

    I_t = 1/N * sum_{batches b} sum_{parameters w} (d NLL_b(t) / d w)^2
    NLL_b(t) = CE( 1/t * sum_{s<=t} O(s), y )      (mean over the batch)

with the model in eval mode (BatchNorm uses its running statistics). The information
centroid ``IC = sum_t t * I_t / sum_t I_t`` lies in ``[1, T]``; a small IC means the
information is concentrated in the early timesteps, which is what the paper reports for TRT.

:class:`FisherRecorder` is the :class:`trt_nm.training.callbacks.Callback` that records ``I_t`` after
chosen epochs of a training run and writes ``fisher.json`` and ``fisher.png`` into the run
directory.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trt_nm.atomic import atomic_write_bytes
from trt_nm.errors import ConfigError, TrtNmError
from trt_nm.metrics.accuracy import cumulative_mean
from trt_nm.report.plots import save_figure
from trt_nm.training.callbacks import Callback, TrainerView

#: number of training batches the paper's analysis averages over
DEFAULT_BATCHES = 100


@dataclass(frozen=True)
class FisherResult:
    """Trace of the empirical Fisher information per timestep.

    Attributes:
        trace: ``[T]`` floats, ``trace[t-1] = I_t`` (sum of squared gradients of the NLL of
            the mean of the first t outputs, averaged over batches; units: nats^2 per
            parameter unit^2).
        centroid: information centroid ``sum t I_t / sum I_t`` in timesteps, in ``[1, T]``.
        batches: number of batches averaged.
        samples: number of samples those batches held.
    """

    trace: tuple[float, ...]
    centroid: float
    batches: int
    samples: int

    @property
    def T(self) -> int:
        """Number of timesteps."""
        return len(self.trace)

    def normalized(self) -> list[float]:
        """``I_t / sum_s I_s`` (fractions summing to 1)."""
        total = sum(self.trace)
        return [v / total for v in self.trace] if total > 0 else [0.0] * self.T

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``fisher.json`` (``normalized`` added)."""
        d = asdict(self)
        d["trace"] = list(self.trace)
        d["normalized"] = self.normalized()
        return d


def progress_bar(total: int | None, desc: str, progress: bool | None):
    """A tqdm bar on stderr (``progress=None``: shown on a terminal, hidden in logs, as in
    training; False: never), or a no-op object with ``update``/``close`` when tqdm is absent."""
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        return _NoBar()
    return tqdm(total=total, desc=desc, leave=False, disable=None if progress is None else not progress, file=sys.stderr)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def information_centroid(trace: Sequence[float]) -> float:
    """``sum_t t * I_t / sum_t I_t`` with t = 1..T (timesteps); raises if all I_t are 0 or any
    is not finite."""
    if not all(math.isfinite(float(v)) for v in trace):
        raise ConfigError(
            "Fisher trace is not finite (NaN or inf gradients): the weights or the loss are not "
            "finite; the centroid is undefined"
        )
    total = float(sum(trace))
    if not total > 0:
        raise ConfigError("Fisher trace is zero at every timestep; the centroid is undefined")
    return float(sum((t + 1) * float(v) for t, v in enumerate(trace)) / total)


def _time_major(x: torch.Tensor, time_major: bool) -> torch.Tensor:
    return x if time_major else x.transpose(0, 1)


@contextlib.contextmanager
def preserved_state(model: nn.Module, device: torch.device) -> Iterator[None]:
    """Run a block in eval mode without disturbing the model's mode or any RNG stream."""
    was_training = model.training
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        try:
            model.eval()
            yield
        finally:
            model.train(was_training)


def fisher_trace_per_timestep(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    device: str | torch.device = "cpu",
    max_batches: int = DEFAULT_BATCHES,
    time_major: bool = False,
    progress: bool | None = False,
) -> FisherResult:
    """Estimate ``I_t`` for t = 1..T (module docstring).

    Args:
        model: maps ``x [T, B, ...]`` to logits ``[T, B, C]``; evaluated in eval mode, its
            mode, its ``.grad`` fields and the global RNG state are left as they were.
        batches: ``(x, y)`` pairs, ``x`` shaped ``[B, T, ...]`` as a DataLoader gives them
            (``[T, B, ...]`` when ``time_major``), ``y`` integer labels ``[B]``.
        device: where to compute.
        max_batches: use at most this many batches (the paper: about 100).
        progress: a progress bar on stderr (None: on a terminal only; False: none).

    Returns:
        A :class:`FisherResult`.
    """
    if max_batches < 1:
        raise ConfigError(f"max_batches must be >= 1, got {max_batches}")
    device = torch.device(device)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("the model has no trainable parameters")
    sums: torch.Tensor | None = None
    n_batches = n_samples = 0
    total = min(max_batches, len(batches)) if hasattr(batches, "__len__") else max_batches  # type: ignore[arg-type]
    bar = progress_bar(total, "fisher", progress)
    with preserved_state(model, device), contextlib.closing(bar):
        for x, y in batches:
            if n_batches >= max_batches:
                break
            x = _time_major(x.to(device), time_major)
            y = y.to(device)
            out = model(x)  # [T, B, C]
            if out.dtype in (torch.float16, torch.bfloat16):
                out = out.float()
            T = out.shape[0]
            running = cumulative_mean(out)  # mean of the first t outputs
            per_t = torch.zeros(T, dtype=torch.float64)
            for t in range(T):
                nll = F.cross_entropy(running[t], y)
                grads = torch.autograd.grad(nll, params, retain_graph=t < T - 1, allow_unused=True)
                per_t[t] = sum(float(g.double().pow(2).sum()) for g in grads if g is not None)
            sums = per_t if sums is None else sums + per_t
            n_batches += 1
            n_samples += int(y.numel())
            bar.update(1)
    if sums is None:
        raise ConfigError("no batches to compute the Fisher information on")
    trace = tuple(float(v) for v in (sums / n_batches).tolist())
    return FisherResult(trace, information_centroid(trace), n_batches, n_samples)


def fisher_loader(dataset: torch.utils.data.Dataset, batch_size: int, seed: int = 0) -> torch.utils.data.DataLoader:
    """Shuffled loader over ``dataset`` drawn from its own seeded generator (reproducible)."""
    g = torch.Generator()
    g.manual_seed(seed)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=g)


# ---------------------------------------------------------------------- files
def write_fisher_json(path: str | Path, records: list[dict[str, Any]], meta: dict[str, Any]) -> Path:
    """Write ``{"meta": ..., "records": [{"epoch": e, "trace": [...], "centroid": c, ...}]}``."""
    text = json.dumps({"meta": meta, "records": records}, indent=2)
    return atomic_write_bytes(path, lambda fh: fh.write(text.encode()))


def read_fisher_json(path: str | Path) -> dict[str, Any]:
    """Read a file written by :func:`write_fisher_json`; one-line errors for bad files."""
    path = Path(path)
    if not path.is_file():
        raise TrtNmError(f"no Fisher records at {path}")
    try:
        data = json.loads(path.read_text())
        records = data["records"]
        for r in records:
            _ = (r["trace"], r["centroid"])
    except (ValueError, KeyError, TypeError):
        raise TrtNmError(f"{path}: not a Fisher record file") from None
    return data


def plot_fisher(path: str | Path, records: list[dict[str, Any]], title: str = "") -> Path:
    """PNG: left, ``I_t`` per timestep (one curve per record); right, the centroid over epochs."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(10, 4), dpi=100)
    ax1, ax2 = fig.subplots(1, 2)
    for r in records:
        tr = r["trace"]
        label = f"epoch {r['epoch']}" if r.get("epoch") is not None else "checkpoint"
        ax1.plot(range(1, len(tr) + 1), tr, marker="o", label=label)
    ax1.set_xlabel("timestep t")
    ax1.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax1.set_ylabel("trace of empirical Fisher I_t")
    ax1.set_yscale("log")
    ax1.set_title("Fisher information per timestep")
    ax1.legend(fontsize=8)
    T = max(len(r["trace"]) for r in records)
    if all(r.get("epoch") is not None for r in records):
        ax2.plot([r["epoch"] for r in records], [r["centroid"] for r in records], marker="o")
        ax2.set_xlabel("epoch")
        ax2.set_ylabel("information centroid (timesteps)")
        ax2.set_ylim(1, T)
        ax2.set_title("centroid sum t I_t / sum I_t")
    else:  # one checkpoint: the share of each timestep, centroid marked
        r = records[-1]
        total = sum(r["trace"]) or 1.0
        ax2.bar(range(1, len(r["trace"]) + 1), [v / total for v in r["trace"]])
        ax2.axvline(r["centroid"], color="k", linestyle="--", label=f"centroid {r['centroid']:.2f}")
        ax2.set_xlabel("timestep t")
        ax2.set_ylabel("I_t / sum I_t")
        ax2.set_title("share of the information per timestep")
        ax2.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


# ---------------------------------------------------------------------- callback
class FisherRecorder(Callback):
    """Record ``I_t`` after the given (1-based) epochs of a :class:`trt_nm.training.trainer.Trainer` run.

    Uses ``min(batches, len(train loader))`` training batches of the run's batch size drawn
    with a generator seeded from the run's seed, so recording does not change training (the
    global RNG streams and the model's mode are restored). Writes ``fisher.json`` and
    ``fisher.png`` into the run directory after each recorded epoch and logs the centroid.
    """

    def __init__(self, epochs: tuple[int, ...], batches: int = DEFAULT_BATCHES) -> None:
        epochs = tuple(int(e) for e in epochs)
        if any(e < 1 for e in epochs):
            raise ConfigError(f"fisher epochs must be >= 1, got {epochs}")
        if batches < 1:
            raise ConfigError(f"fisher batches must be >= 1, got {batches}")
        self.epochs = tuple(sorted(set(epochs)))
        self.batches = batches
        self.records: list[dict[str, Any]] = []

    def on_train_start(self, trainer: TrainerView) -> None:
        path = Path(trainer.out_dir) / "fisher.json"
        self.records = []
        if trainer.start_epoch > 0 and path.is_file():  # resumed: keep what was recorded
            try:
                old = read_fisher_json(path)["records"]
            except TrtNmError:
                old = []
            self.records = [r for r in old if r.get("epoch") is not None and r["epoch"] <= trainer.start_epoch]

    def on_epoch_end(self, trainer: TrainerView, epoch: int, row: dict[str, Any]) -> None:
        if epoch not in self.epochs:
            return
        dist = getattr(trainer, "dist", None)
        if dist is not None and not getattr(dist, "is_main", True):
            return  # data-parallel run: rank 0 records (the other ranks hold the same weights)
        cfg = trainer.cfg
        loader = fisher_loader(trainer.train_set, cfg.batch_size, seed=cfg.seed * 7919 + epoch)
        res = fisher_trace_per_timestep(
            trainer.model, loader, device=trainer.device, max_batches=self.batches
        )
        self.records = [r for r in self.records if r.get("epoch") != epoch]
        self.records.append({"epoch": epoch, **res.to_dict()})
        self.records.sort(key=lambda r: r["epoch"])
        out = Path(trainer.out_dir)
        meta = {"arch": cfg.arch, "dataset": cfg.dataset, "loss": cfg.loss, "T": cfg.T, "seed": cfg.seed}
        write_fisher_json(out / "fisher.json", self.records, meta)
        plot_fisher(out / "fisher.png", self.records, f"{cfg.arch} / {cfg.dataset} / {cfg.loss}")
        trainer.log(
            f"fisher epoch {epoch}: I_t [{' '.join(f'{v:.3g}' for v in res.trace)}] "
            f"centroid {res.centroid:.3f} ({res.batches} batches)"
        )


__all__ = [
    "DEFAULT_BATCHES",
    "FisherRecorder",
    "FisherResult",
    "fisher_loader",
    "fisher_trace_per_timestep",
    "information_centroid",
    "progress_bar",
    "plot_fisher",
    "read_fisher_json",
    "write_fisher_json",
]
