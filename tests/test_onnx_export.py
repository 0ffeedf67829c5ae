"""ONNX: the unrolled network in onnxruntime gives the same spikes and logits (dynamic batch)."""

from __future__ import annotations

import pytest
import torch
from test_nir_helpers import assert_active, make_input, make_model, model_spikes

import trt_nm

ort = pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("arch", ["mlp", "cnn-small", "resnet19"])
def test_onnx_same_spikes_and_logits(arch, tmp_path):
    model = make_model(arch, backend="snntorch")
    path = trt_nm.to_onnx(model, tmp_path / f"{arch}.onnx", T=20, batch=2, spikes=True)
    x = make_input(model, T=20, batch=3)  # traced with batch 2, run with 3: dynamic batch
    ref_logits, ref = model_spikes(model, x)
    assert_active(ref)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    outs = dict(zip(names, sess.run(None, {"input": x.numpy()})))
    torch.testing.assert_close(torch.from_numpy(outs["logits"]), ref_logits, atol=1e-5, rtol=0)
    assert {f"spikes_{n}" for n in ref} == set(names) - {"logits"}
    for n, s in ref.items():
        assert torch.equal(torch.from_numpy(outs[f"spikes_{n}"]), s), n


def test_onnx_bad_arguments(tmp_path):
    model = make_model("mlp")
    with pytest.raises(trt_nm.TrtNmError):
        trt_nm.to_onnx(model, tmp_path / "m.onnx", T=0, batch=1)
