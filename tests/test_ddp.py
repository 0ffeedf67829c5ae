"""Data-parallel training: 2 gloo processes on CPU against one process with the same global batch.

BatchNorm statistics are synchronised over ranks under DDP (trt_nm.training.distributed), so the
2-process run computes the same model as a single process with the global batch; only the
order of floating-point reductions differs, hence a tolerance instead of equality. The two
ranks must hold bit-identical weights (DDP averages gradients, every rank applies the same
Adam step).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from trt_nm.config import TrainConfig
from trt_nm.errors import ConfigError
from trt_nm.training.distributed import DistInfo, EpochSampler, env_info, per_rank_batch
from trt_nm.training.trainer import Trainer

CFG = dict(
    arch="mlp",
    dataset="mnist5k",
    T=2,
    epochs=2,
    batch_size=32,  # global batch: 16 per rank
    train_limit=128,
    test_limit=40,
    device="cpu",
    seed=3,
    scheduler="none",  # so that 1 epoch + resume to 2 epochs is the same run as 2 epochs
)

WORKER = """
import sys, torch
from trt_nm.config import TrainConfig
from trt_nm.training.trainer import Trainer
out, cfg = sys.argv[1], {cfg!r}
# one epoch, then a second trainer resumes the checkpoint rank 0 wrote and finishes epoch 2
Trainer(TrainConfig(**{{**cfg, "epochs": 1, "out_dir": out}}), progress=False).fit()
t = Trainer(TrainConfig(**{{**cfg, "out_dir": out}}), progress=False)
t.fit(resume=out + "/last.pt")
torch.save(t.model.state_dict(), f"{{out}}/rank{{t.dist.rank}}.pt")
print("history", t.dist.rank, [round(r["train_loss"], 5) for r in t.history])
"""


def _torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    return subprocess.run(cmd + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)


def test_epoch_sampler_shards_are_the_single_process_batches() -> None:
    single = list(EpochSampler(10, seed=5))
    ranks = [list(EpochSampler(10, seed=5, rank=r, world_size=2)) for r in range(2)]
    assert sorted(single) == list(range(10))
    assert ranks[0] == single[0::2] and ranks[1] == single[1::2]
    # per-rank batch 2, global batch 4: the ranks' k-th batches form the k-th global batch
    assert sorted(ranks[0][:2] + ranks[1][:2]) == sorted(single[:4])
    padded = [list(EpochSampler(5, seed=1, rank=r, world_size=2)) for r in range(2)]
    assert len(padded[0]) == len(padded[1]) == 3


@pytest.mark.slow
def test_two_gloo_ranks_match_single_process(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "ddp"
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(WORKER.format(cfg=CFG)))
    proc = _torchrun([str(script), str(out)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rank0 = torch.load(out / "rank0.pt", weights_only=True)
    rank1 = torch.load(out / "rank1.pt", weights_only=True)
    assert rank0.keys() == rank1.keys()
    for k in rank0:
        assert torch.equal(rank0[k], rank1[k]), f"ranks differ in {k}"
    # rank 0 alone wrote the run directory; the resumed run's log has both epochs
    assert (out / "last.pt").is_file()
    assert len((out / "log.csv").read_text().strip().splitlines()) == 3

    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    single = Trainer(TrainConfig(**CFG, out_dir=str(tmp_path / "single")), progress=False, log=lambda *a: None)
    single.fit()
    ref = single.model.state_dict()
    assert ref.keys() == rank0.keys()
    for k, v in ref.items():
        if v.is_floating_point():
            torch.testing.assert_close(rank0[k], v, rtol=1e-4, atol=5e-5, msg=k)
        else:
            assert torch.equal(rank0[k], v), k
    # the weights did train (the comparison is not between two untouched initialisations)
    init = Trainer(TrainConfig(**CFG, out_dir=str(tmp_path / "init")), progress=False).model.state_dict()
    assert max(float((ref[k] - init[k]).abs().max()) for k in ref if ref[k].is_floating_point()) > 1e-3


@pytest.mark.slow
def test_torchrun_cli_logs_once_and_checkpoints(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    proc = _torchrun(
        ["-m", "trt_nm", "train", "--model", "mlp", "-T", "2", "--epochs", "1", "--train-limit", "64",
         "--test-limit", "20", "--batch-size", "32", "--device", "cpu", "--quiet", "--out", str(out)],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("epoch 1/1") == 1  # rank 0 only
    assert (out / "last.pt").is_file() and (out / "log.csv").is_file()


def test_global_batch_must_split_evenly() -> None:
    assert per_rank_batch(32, DistInfo(rank=1, world_size=2)) == 16
    with pytest.raises(ConfigError, match="divisible"):
        per_rank_batch(33, DistInfo(rank=0, world_size=2))


def test_env_info_reads_torchrun_variables(monkeypatch) -> None:
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    assert not env_info().enabled
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert env_info() == DistInfo(rank=2, world_size=4, local_rank=0)
    monkeypatch.setenv("RANK", "7")
    with pytest.raises(ConfigError):
        env_info()
