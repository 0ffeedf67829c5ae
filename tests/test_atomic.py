"""Atomic writes: usual file mode, no torn or temporary files on failure, old file kept."""

from __future__ import annotations

import os

import pytest

from trt_nm.atomic import atomic_write_bytes, atomic_write_path, atomic_write_text


def _mode(path) -> int:
    return os.stat(path).st_mode & 0o777


def test_mode_follows_umask(tmp_path):
    old = os.umask(0o022)
    os.umask(old)
    p = atomic_write_text(tmp_path / "sub" / "a.txt", "hello")
    assert p.read_text() == "hello"
    assert _mode(p) == 0o666 & ~old  # as open() would create it, not mkstemp's 0600
    ref = tmp_path / "ref.txt"
    ref.write_text("x")
    assert _mode(p) == _mode(ref)


def test_failure_keeps_old_file_and_leaves_no_temp(tmp_path):
    p = atomic_write_text(tmp_path / "a.bin", "old")

    def boom(fh):
        fh.write(b"partial")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        atomic_write_bytes(p, boom)
    def interrupted(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(b"x")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write_path(p, interrupted)
    assert p.read_text() == "old"
    assert sorted(f.name for f in tmp_path.iterdir()) == ["a.bin"]


def test_report_files_get_the_usual_mode(tmp_path):
    """Reports, checkpoints and NIR files are written through the same helper."""
    import torch

    import trt_nm
    from trt_nm.models import build_model
    from trt_nm.training.checkpoint import save_checkpoint

    ref = tmp_path / "ref"
    ref.write_text("x")
    ck = save_checkpoint(tmp_path / "c.pt", {"w": torch.zeros(2)})
    nir_path = trt_nm.write_nir(trt_nm.to_nir(build_model("mlp", input_size=(4, 4), T=2).eval()), tmp_path / "m.nir")
    assert _mode(ck) == _mode(ref) == _mode(nir_path)
