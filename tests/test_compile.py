"""``torch.compile(fullgraph=True)`` traces every backend's models with no graph break.

Dynamo + AOTAutograd (the ``aot_eager`` backend) trace exactly what inductor would compile,
forward and backward, without spending CI time on code generation; the compiled model must
give the eager model's logits and gradients.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trt_nm.config import NeuronConfig
from trt_nm.losses import trt_loss
from trt_nm.models import BasicBlock, SpikingModel, SpikingSequential, build_model
from trt_nm.neuron.backends import get_backend, list_backends

BACKENDS = list_backends(available_only=True)


def _loss_and_grads(model, forward, x, y):
    model.zero_grad(set_to_none=True)
    out = forward(x)
    loss = trt_loss(out, y, model.named_parameters())
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    return out.detach(), grads


def _tiny_resnet(backend: str, neuron: NeuronConfig, size: int) -> SpikingModel:
    """conv-BN-LIF, one ResNet-19 BasicBlock with a conv shortcut, spiking FC, classifier."""
    be = get_backend(backend)

    def lif():
        return be.neuron(neuron)

    body = SpikingSequential(
        nn.Conv2d(1, 8, 3, 1, 1, bias=False),
        nn.BatchNorm2d(8),
        lif(),
        BasicBlock(8, 16, 2, lif),
        nn.AvgPool2d(size // 2),
        nn.Flatten(),
        nn.Linear(16, 16),
        lif(),
        nn.Linear(16, 10),
    )
    return SpikingModel(body, {"input_shape": [1, size, size], "num_classes": 10, "T": 2})


CASES = [(b, "zero") for b in BACKENDS] + [(b, "subtract") for b in BACKENDS if b == "snntorch"]


@pytest.mark.parametrize("backend,reset", CASES)
def test_fullgraph_compile_matches_eager(backend: str, reset: str) -> None:
    torch._dynamo.reset()
    torch.manual_seed(0)
    size = 12
    neuron = NeuronConfig(beta=0.5, threshold=0.5, reset=reset)
    model = _tiny_resnet(backend, neuron, size)
    model.train()
    # strong input so that neurons fire and resets happen after the first step
    x = 2.0 * torch.rand(2, 4, 1, size, size)
    y = torch.tensor([0, 1, 2, 3])
    ref_out, ref_grads = _loss_and_grads(model, model, x, y)
    assert ref_out.abs().sum() > 0

    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    out, grads = _loss_and_grads(model, compiled, x, y)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
    for name, g in ref_grads.items():
        torch.testing.assert_close(grads[name], g, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_graph_breaks(backend: str) -> None:
    torch._dynamo.reset()
    model = build_model("cnn-small", backend=backend, T=2, input_size=(8, 8))
    explanation = torch._dynamo.explain(model)(torch.rand(2, 2, 1, 8, 8))
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


def test_eval_folded_batchnorm_compiles_without_graph_breaks() -> None:
    """Evaluation (eval mode, no autograd) runs the folded BatchNorm arithmetic; under
    torch.compile it is traced too (no graph break) and stays bit-identical to eager."""
    from trt_nm.models import randomize_batchnorm

    torch._dynamo.reset()
    torch.manual_seed(0)
    model = randomize_batchnorm(build_model("resnet19", T=2, input_size=(8, 8), in_channels=2)).eval()
    x = (torch.rand(2, 3, 2, 8, 8) < 0.4).float() * 1.5
    with torch.no_grad():
        explanation = torch._dynamo.explain(model)(x)
        assert explanation.graph_break_count == 0, explanation.break_reasons
        compiled = torch.compile(model, backend="aot_eager")
        assert torch.equal(compiled(x), model(x))
