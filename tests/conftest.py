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


@pytest.fixture
def cli():
    return run_cli


def randomise_bn(model: torch.nn.Module) -> None:
    """Realistic, non-dyadic BatchNorm statistics (every layer fires; folding rounds)."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.6, 1.6)
            m.bias.data.uniform_(-0.1, 0.4)
