"""``trt-nm export`` and ``trt-nm inspect``."""

from __future__ import annotations

import torch

import trt_nm
from trt_nm.cli.main import main
from trt_nm.training.checkpoint import save_checkpoint


def _ckpt(tmp_path):
    from test_nir_helpers import make_model

    model = make_model("mlp")
    path = tmp_path / "ck.pt"
    save_checkpoint(path, {"epoch": 1, "model": model.state_dict(), "model_spec": model.spec, "config": {}})
    return path


def test_export_nir_and_inspect(tmp_path, capsys):
    ck = _ckpt(tmp_path)
    out = tmp_path / "m.nir"
    assert main(["export", str(ck), "--format", "nir", "--out", str(out), "--dt", "1e-3"]) == 0
    g = trt_nm.read_nir(out)
    assert g.metadata["dt"] == 1e-3
    capsys.readouterr()
    assert main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    assert "valid NIR graph" in text and "LIF" in text and "metadata dt = 0.001" in text


def test_export_onnx(tmp_path):
    ck = _ckpt(tmp_path)
    out = tmp_path / "m.onnx"
    assert main(["export", str(ck), "--format", "onnx", "--out", str(out), "-T", "5"]) == 0
    assert out.stat().st_size > 0


def test_export_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"junk")
    keep = tmp_path / "keep.nir"
    keep.write_bytes(b"old")
    assert main(["export", str(bad), "--out", str(keep)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and keep.read_bytes() == b"old"
    assert torch.is_tensor(torch.zeros(1))
