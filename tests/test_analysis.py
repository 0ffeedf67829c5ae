"""Fisher information per timestep and sharpness (issue 8)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from trt_nm.analysis.fisher import (
    FisherRecorder,
    fisher_trace_per_timestep,
    information_centroid,
    read_fisher_json,
)
from trt_nm.analysis.sharpness import (
    analyze_sharpness,
    filter_normalized_direction,
    hessian_vector_product,
    loss_slice_1d,
    top_hessian_eigenvalue,
)
from trt_nm.config import NeuronConfig
from trt_nm.errors import ConfigError
from trt_nm.losses import Loss
from trt_nm.models import build_model


def tiny_model(T: int = 3, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(
        "cnn-small", backend="torch", num_classes=4, in_channels=1, T=T, input_size=(8, 8),
        neuron=NeuronConfig(beta=0.5, threshold=0.3),
    ).double()


def tiny_batches(n: int = 3, B: int = 5, T: int = 3, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.rand(B, T, 1, 8, 8, generator=g, dtype=torch.float64) * 2, torch.randint(0, 4, (B,), generator=g))
        for _ in range(n)
    ]


def direct_fisher(model, batches) -> list[float]:
    """Independent reference: per batch and t, backward of NLL(mean of first t outputs), sum grad^2."""
    model.eval()
    T = model.T
    total = [0.0] * T
    for x, y in batches:
        for t in range(1, T + 1):
            model.zero_grad()
            out = model(x.transpose(0, 1))
            loss = F.nll_loss(F.log_softmax(out[:t].mean(0), -1), y)
            loss.backward()
            total[t - 1] += sum(float((p.grad**2).sum()) for p in model.parameters() if p.grad is not None)
    model.zero_grad(set_to_none=True)
    return [v / len(batches) for v in total]


def test_fisher_trace_matches_direct_computation():
    model = tiny_model()
    batches = tiny_batches()
    model.train()
    # fit BN statistics a little so eval mode is not trivial
    with torch.no_grad():
        for x, _ in batches:
            model(x.transpose(0, 1))
    rng = torch.get_rng_state()
    res = fisher_trace_per_timestep(model, batches)
    assert model.training  # mode restored
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(p.grad is None for p in model.parameters())
    ref = direct_fisher(model, batches)
    assert res.batches == 3 and res.samples == 15 and res.T == 3
    assert max(ref) > 1e-4  # non-trivial gradients
    for a, b in zip(res.trace, ref, strict=True):
        assert abs(a - b) <= 1e-6 * max(1.0, abs(b))
    assert 1.0 <= res.centroid <= 3.0
    assert res.centroid == pytest.approx(sum((t + 1) * v for t, v in enumerate(ref)) / sum(ref), rel=1e-9)
    assert sum(res.normalized()) == pytest.approx(1.0)


def test_fisher_max_batches_and_errors():
    model = tiny_model()
    res = fisher_trace_per_timestep(model, tiny_batches(n=4), max_batches=2)
    ref = direct_fisher(model, tiny_batches(n=4)[:2])
    assert res.batches == 2
    assert res.trace == pytest.approx(ref, rel=1e-9)
    with pytest.raises(ConfigError):
        fisher_trace_per_timestep(model, [])
    with pytest.raises(ConfigError):
        fisher_trace_per_timestep(model, tiny_batches(), max_batches=0)


def test_information_centroid():
    assert information_centroid([1.0, 0.0, 0.0, 0.0]) == 1.0
    assert information_centroid([0.0, 0.0, 0.0, 2.0]) == 4.0
    assert information_centroid([1.0, 1.0, 1.0]) == pytest.approx(2.0)
    assert information_centroid([3.0, 1.0]) == pytest.approx(1.25)
    with pytest.raises(ConfigError):
        information_centroid([0.0, 0.0])
    with pytest.raises(ConfigError):
        FisherRecorder((0, 2))


def test_top_eigenvalue_on_quadratic_with_known_hessian():
    torch.manual_seed(3)
    n = 40
    Q, _ = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64))
    eig = torch.linspace(-1.0, 4.0, n, dtype=torch.float64)
    eig[-1] = 6.5  # top eigenvalue, gap to the next (4.0) so power iteration converges
    H = Q @ torch.diag(eig) @ Q.T
    w = torch.randn(n, dtype=torch.float64, requires_grad=True)
    b = torch.randn(n, dtype=torch.float64)
    res = top_hessian_eigenvalue(lambda: [0.5 * w @ H @ w + b @ w], [w], iters=200, tol=1e-9)
    assert res.converged
    assert abs(res.value - 6.5) <= 0.01 * 6.5
    # the loss split over several terms (one per batch) gives the same Hessian
    res2 = top_hessian_eigenvalue(lambda: [0.25 * w @ H @ w, 0.25 * w @ H @ w], [w], iters=200, tol=1e-9)
    assert abs(res2.value - 6.5) <= 0.01 * 6.5
    with pytest.raises(ConfigError):
        top_hessian_eigenvalue(lambda: [w.sum()], [w], iters=0)


def test_hvp_matches_explicit_hessian():
    torch.manual_seed(0)
    a = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    c = torch.randn(4, dtype=torch.float64, requires_grad=True)

    def f(a_, c_):
        return (a_.sin() ** 2).sum() * c_.pow(2).sum() + (a_.sum() * c_).exp().sum()

    v = [torch.randn(3, 2, dtype=torch.float64), torch.randn(4, dtype=torch.float64)]
    hv = hessian_vector_product(lambda: [f(a, c)], [a, c], v)
    flat = torch.cat([a.detach().reshape(-1), c.detach()])

    def g(z):
        return f(z[:6].reshape(3, 2), z[6:])

    Hfull = torch.autograd.functional.hessian(g, flat)
    ref = Hfull @ torch.cat([v[0].reshape(-1), v[1]])
    assert torch.allclose(torch.cat([hv[0].reshape(-1), hv[1]]), ref, atol=1e-10)
    assert a.grad is None and c.grad is None


def test_filter_normalized_direction_and_slices():
    model = tiny_model()
    g = torch.Generator().manual_seed(0)
    d = filter_normalized_direction(model, g)
    for p, di in zip(model.parameters(), d, strict=True):
        assert di.shape == p.shape
        if p.dim() <= 1:
            assert torch.count_nonzero(di) == 0
        else:
            wn = p.detach().reshape(p.shape[0], -1).norm(dim=1)
            dn = di.reshape(di.shape[0], -1).norm(dim=1)
            assert torch.allclose(wn, dn, rtol=1e-6, atol=1e-9)
    before = [p.detach().clone() for p in model.parameters()]
    batches = tiny_batches()
    loss = Loss("sdt")

    def value() -> float:
        with torch.no_grad():
            return float(sum(loss(model(x.transpose(0, 1)), y) for x, y in batches)) / len(batches)

    model.eval()
    base = value()
    s = loss_slice_1d(model, value, d, [-1.0, 0.0, 1.0])
    assert s[1] == pytest.approx(base, abs=1e-12)
    assert s[0] != pytest.approx(base)  # the direction actually moves the weights
    for p, w in zip(model.parameters(), before, strict=True):
        assert torch.equal(p.detach(), w)  # restored


def test_analyze_sharpness_on_spiking_model():
    model = tiny_model()
    model.train()
    res = analyze_sharpness(model, tiny_batches(n=1), Loss("sdt"), iters=4, tol=1e-9, points=3, grid=3, seed=0)
    assert model.training
    assert res.samples == 5 and len(res.slice_1d) == 3 and len(res.surface_2d) == 3
    assert res.slice_1d[1] == pytest.approx(res.loss, abs=1e-12)
    assert res.surface_2d[1][1] == pytest.approx(res.loss, abs=1e-12)
    assert res.eigenvalue.iterations == 4 and len(res.eigenvalue.history) == 4
    # the Rayleigh quotient is consistent with a fresh Hessian-vector product
    assert torch.isfinite(torch.tensor(res.eigenvalue.value))
    d = res.to_dict()
    json.dumps(d)
    assert d["top_eigenvalue"] == res.eigenvalue.value


def test_fisher_recorder_in_trainer_does_not_change_training(tmp_path):
    from trt_nm.config import TrainConfig
    from trt_nm.training.trainer import Trainer

    def train(out, epochs):
        cfg = TrainConfig(epochs=2, train_limit=64, test_limit=32, batch_size=32, T=2, device="cpu",
                          out_dir=str(out), fisher_epochs=epochs)
        tr = Trainer(cfg, progress=False, log=lambda *a: None)
        tr.fit()
        return tr

    a = train(tmp_path / "a", (1, 2))
    b = train(tmp_path / "b", ())
    for (n, p), (_, q) in zip(a.model.state_dict().items(), b.model.state_dict().items(), strict=True):
        assert torch.equal(p, q), n
    data = read_fisher_json(tmp_path / "a" / "fisher.json")
    assert [r["epoch"] for r in data["records"]] == [1, 2]
    assert all(1.0 <= r["centroid"] <= 2.0 and len(r["trace"]) == 2 for r in data["records"])
    assert (tmp_path / "a" / "fisher.png").stat().st_size > 1000
    assert not (tmp_path / "b" / "fisher.json").exists()
