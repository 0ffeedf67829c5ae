"""Every zoo model computes bit for bit what it computed before the restructure (issue 12):
model logits, simulator logits, spikes per layer and synaptic operations per layer."""

from __future__ import annotations

import numpy as np
import pytest
from golden import BACKENDS, GOLDEN, SIZES, compute


@pytest.fixture(scope="module")
def golden():
    with np.load(GOLDEN, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("arch", sorted(SIZES))
def test_zoo_model_bit_identical_to_golden(golden, arch, backend):
    got = compute(arch, backend)
    want = {k: v for k, v in golden.items() if k.startswith(f"{arch}|{backend}|")}
    assert sorted(got) == sorted(want), "layers or counters changed"
    for key, value in want.items():
        assert got[key].dtype == value.dtype and got[key].shape == value.shape, key
        assert np.array_equal(got[key], value), f"{key} differs"
