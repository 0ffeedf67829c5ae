"""Shared fixtures. Tests run on a 2-core CPU; keep models and inputs small."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def run_cli(*args: str, cwd: str | None = None, timeout: float = 300, env: dict | None = None):
    """Run ``python -m trt_nm ARGS`` in a subprocess; returns CompletedProcess (text)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "trt_nm", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env=full_env,
    )


@pytest.fixture(scope="session")
def zoo_checkpoint(tmp_path_factory):
    """last.pt of a real 1-epoch mlp run (T=1) trained without --target (the paper's neuron)."""
    from trt_nm.config import TrainConfig
    from trt_nm.training.trainer import Trainer

    out = tmp_path_factory.mktemp("zoo")
    cfg = TrainConfig(arch="mlp", T=1, epochs=1, train_limit=32, test_limit=16, batch_size=16,
                      device="cpu", out_dir=str(out))
    Trainer(cfg, progress=False, log=lambda *a: None).fit()
    return out / "last.pt"


@pytest.fixture
def cli():
    return run_cli


def randomise_bn(model: torch.nn.Module) -> None:
    """Realistic, non-dyadic BatchNorm statistics (every layer fires; folding rounds)."""
    from trt_nm.models import randomize_batchnorm

    randomize_batchnorm(model)
