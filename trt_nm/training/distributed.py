"""Data-parallel training under ``torchrun``: process group, sampler, synced BatchNorm.

``torchrun --nproc_per_node N -m trt_nm train ...`` starts N processes with the environment
variables ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``. :func:`init_from_env` reads them and
joins the process group (NCCL on CUDA, gloo on CPU); the trainer then

- wraps the model in :class:`~torch.nn.parallel.DistributedDataParallel`,
- gives every rank a disjoint, equally sized share of each global batch
  (:class:`EpochSampler`: the permutation a single process draws for that epoch, dealt out
  round-robin, so ``--batch-size`` is the GLOBAL batch and the run matches a
  single-process run with that batch),
- synchronises BatchNorm statistics over all ranks (:func:`convert_sync_batchnorm`), because
  per-rank statistics over ``B/N`` samples would be a different model from the
  single-process one (and from the paper's),
- logs and writes checkpoints on rank 0 only.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset, Sampler, Subset

from trt_nm.errors import ConfigError

ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in a data-parallel job (``world_size == 1``: not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that logs and writes files."""
        return self.rank == 0


def env_info() -> DistInfo:
    """The :class:`DistInfo` that ``torchrun``'s environment describes (single process if unset)."""
    if "WORLD_SIZE" not in os.environ:
        return DistInfo()
    try:
        rank, world, local = (int(os.environ.get(k, "0")) for k in ENV_VARS)
    except ValueError:
        raise ConfigError(
            "RANK, WORLD_SIZE and LOCAL_RANK must be integers (set by torchrun)"
        ) from None
    if world < 1 or not 0 <= rank < world or local < 0:
        raise ConfigError(f"inconsistent torchrun environment: RANK={rank} WORLD_SIZE={world}")
    return DistInfo(rank=rank, world_size=world, local_rank=local)


def init_from_env(device: torch.device) -> tuple[DistInfo, torch.device]:
    """Join the process group that ``torchrun`` set up; returns ``(info, this rank's device)``.

    On CUDA each process takes GPU ``LOCAL_RANK`` and uses NCCL; on CPU it uses gloo. A no-op
    (single process) outside torchrun or with ``WORLD_SIZE=1``.
    """
    info = env_info()
    if not info.enabled:
        return info, device
    if device.type == "cuda":
        if info.local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"LOCAL_RANK {info.local_rank} but only {torch.cuda.device_count()} GPU(s) visible; "
                "use --nproc_per_node <= the number of GPUs"
            )
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
        atexit.register(shutdown)
    return info, device


def shutdown() -> None:
    """Leave the process group (safe to call when none was joined, and twice).

    Every rank first waits for the others: a rank that tears its connections down while a peer
    is still in its last collective makes gloo abort that peer ("terminate called without an
    active exception", in 4 of 15 two-rank CLI test runs before this). gloo's barrier is bounded, so a peer
    that died cannot hang the exit.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    try:
        if dist.get_backend() == "gloo":
            from datetime import timedelta

            dist.monitored_barrier(timeout=timedelta(seconds=60))
        else:
            dist.barrier()
    except RuntimeError:  # a peer is gone: leave anyway
        pass
    dist.destroy_process_group()


def per_rank_batch(global_batch: int, info: DistInfo) -> int:
    """The per-process batch: ``--batch-size`` is global and must split evenly over ranks."""
    if global_batch % info.world_size:
        raise ConfigError(
            f"batch size {global_batch} is the global batch and must be divisible by the "
            f"{info.world_size} processes"
        )
    return global_batch // info.world_size


class EpochSampler(Sampler[int]):
    """One epoch's shuffled order, dealt round-robin to ``world_size`` ranks.

    The order is ``torch.randperm(len(dataset))`` drawn from a generator seeded with
    ``seed`` (the trainer passes one seed per epoch), padded with its own first entries to a
    multiple of ``world_size`` (DistributedSampler's rule). Rank r takes positions r, r+N, ...
    so the ranks' k-th per-rank batches together are exactly the k-th batch of a single
    process that uses the same sampler with ``world_size=1`` and the global batch size.
    """

    def __init__(self, length: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        if length < 1:
            raise ConfigError("cannot sample from an empty dataset")
        self.length = int(length)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.per_rank = -(-self.length // self.world_size)

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator()
        g.manual_seed(self.seed)
        order = torch.randperm(self.length, generator=g).tolist()
        total = self.per_rank * self.world_size
        while len(order) < total:
            order += order[: total - len(order)]
        return iter(order[self.rank : total : self.world_size])

    def __len__(self) -> int:
        return self.per_rank


def eval_shard(dataset: Dataset, info: DistInfo) -> Dataset:
    """A disjoint, unpadded share of an evaluation split (every sample counted exactly once)."""
    return Subset(dataset, range(info.rank, len(dataset), info.world_size))


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum a few numbers over all ranks (float64); identity when not distributed."""
    if not (dist.is_available() and dist.is_initialized()):
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


class _AllReduceSum(torch.autograd.Function):
    """Differentiable sum over ranks: the gradient of a sum is the sum of the gradients."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        y = x.clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        g = grad.clone()
        dist.all_reduce(g)
        return g


class GlooSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm over the union of all ranks' batches, for CPU (gloo) process groups.

    ``torch.nn.SyncBatchNorm`` only runs on GPUs. This is the same computation written with
    a differentiable all-reduce: per-channel sums and
    sums of squares are all-reduced, so the forward normalises with the global batch mean and
    (biased) variance, the running variance is updated with the unbiased global variance,
    and autograd all-reduces the statistics' gradients, as SyncBatchNorm's backward does.
    Accepts ``[N, C]`` or ``[N, C, *]``; every rank must call it the same number of times.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {x.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        self._check_input_dim(x)
        dims = [0, *range(2, x.dim())]
        xf = x.float()
        count = torch.tensor(
            [float(x.numel() // x.shape[1])], dtype=torch.float32, device=x.device
        )
        stats = torch.cat([xf.sum(dims), (xf * xf).sum(dims), count])
        stats = _AllReduceSum.apply(stats)
        c = x.shape[1]
        n = stats[2 * c]
        mean = stats[:c] / n
        var = (stats[c : 2 * c] / n - mean * mean).clamp_min(0.0)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                m = self.momentum if self.momentum is not None else 0.1
                if self.num_batches_tracked is not None:
                    self.num_batches_tracked.add_(1)
                    if self.momentum is None:
                        m = 1.0 / float(self.num_batches_tracked)
                unbiased = var * (n / (n - 1.0).clamp_min(1.0))
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(unbiased.detach(), alpha=m)
        shape = [1, c] + [1] * (x.dim() - 2)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def convert_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Replace every BatchNorm by one that normalises over all ranks (in place; returns model).

    CUDA: :class:`torch.nn.SyncBatchNorm`. CPU: :class:`GlooSyncBatchNorm`. Parameters and
    buffers are moved over unchanged, so parameter names and the ``state_dict`` stay the same.
    """
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in list(model.named_children()):
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(
            child, GlooSyncBatchNorm
        ):
            new = GlooSyncBatchNorm(
                child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats
            )
            with torch.no_grad():
                if child.affine:
                    new.weight = child.weight
                    new.bias = child.bias
                if child.track_running_stats:
                    new.running_mean = child.running_mean
                    new.running_var = child.running_var
                    new.num_batches_tracked = child.num_batches_tracked
            new.train(child.training)
            setattr(model, name, new)
        else:
            convert_sync_batchnorm(child, device)
    return model


__all__ = [
    "DistInfo",
    "env_info",
    "init_from_env",
    "shutdown",
    "per_rank_batch",
    "EpochSampler",
    "eval_shard",
    "all_reduce_sum",
    "GlooSyncBatchNorm",
    "convert_sync_batchnorm",
]
