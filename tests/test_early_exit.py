"""Early-exit rules, evaluation and calibration."""

from __future__ import annotations

import math

import pytest
import torch

from trt_nm.early_exit import (
    ExitRule,
    calibrate,
    candidate_thresholds,
    evaluate_exit,
    list_exit_rules,
    parse_exit_spec,
    sweep,
    unreachable_threshold,
)
from trt_nm.errors import ConfigError
from trt_nm.metrics.accuracy import cumulative_mean


def _data(T=6, B=300, C=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, C, (B,), generator=g)
    # evidence for the true class grows over time, with per-sample difficulty
    strength = torch.rand(B, generator=g) * 1.5
    logits = torch.randn(T, B, C, generator=g) * 1.2
    logits[torch.arange(T)[:, None], torch.arange(B)[None, :], y[None, :]] += strength
    return cumulative_mean(logits), y


@pytest.mark.parametrize("kind", list_exit_rules())
def test_unreachable_threshold_runs_full_T(kind):
    cum, y = _data()
    r = evaluate_exit(ExitRule(kind, unreachable_threshold(kind)), cum, y)
    assert r.exit_steps.eq(cum.shape[0]).all()
    assert r.mean_timesteps == cum.shape[0]
    full = float((cum[-1].argmax(-1) == y).double().mean() * 100)
    assert r.accuracy == pytest.approx(full) and r.full_accuracy == pytest.approx(full)
    assert r.histogram == (0,) * (cum.shape[0] - 1) + (y.numel(),)


@pytest.mark.parametrize("spec", ["confidence:0", "margin:0", "entropy:inf"])
def test_permissive_threshold_exits_at_1(spec):
    cum, y = _data()
    r = evaluate_exit(parse_exit_spec(spec), cum, y)
    assert r.exit_steps.eq(1).all() and r.mean_timesteps == 1.0
    assert r.accuracy == pytest.approx(float((cum[0].argmax(-1) == y).double().mean() * 100))
    assert r.histogram[0] == y.numel()


def test_exit_step_is_first_firing():
    cum = torch.tensor([[[0.0, 0.0]], [[2.0, 0.0]], [[5.0, 0.0]]])  # margin 0, 2, 5
    assert ExitRule("margin", 1.5).exit_steps(cum).tolist() == [2]
    assert ExitRule("margin", 4.0).exit_steps(cum).tolist() == [3]
    assert ExitRule("margin", 9.0).exit_steps(cum).tolist() == [3]
    ent = ExitRule("entropy", 0.1).exit_steps(cum)
    assert ent.tolist() == [3]  # entropy of softmax([5, 0]) ~ 0.04


def test_parse_exit_spec():
    assert parse_exit_spec("confidence:0.9") == ExitRule("confidence", 0.9)
    assert parse_exit_spec("entropy:0.3").kind == "entropy"
    assert parse_exit_spec("margin:2").threshold == 2.0
    for bad in ["confidence", "confidence:abc", "speed:0.5", "margin:1:2", "", "margin:nan"]:
        with pytest.raises(ConfigError):
            parse_exit_spec(bad)


@pytest.mark.parametrize("kind", list_exit_rules())
@pytest.mark.parametrize("budget", [0.0, 0.5, 3.0])
def test_calibration_meets_budget_with_fewest_steps(kind, budget):
    cum, y = _data(seed=1)
    cal = calibrate(kind, cum, y, budget)
    assert cal.result.accuracy_loss <= budget + 1e-9
    # no feasible threshold has fewer mean timesteps (brute force over the candidates)
    feasible = [r for r in sweep(kind, cum, y) if r.accuracy_loss <= budget + 1e-9]
    assert cal.result.mean_timesteps == pytest.approx(min(r.mean_timesteps for r in feasible))
    # the chosen threshold reproduces the result when applied again
    again = evaluate_exit(cal.rule, cum, y)
    assert again.mean_timesteps == pytest.approx(cal.result.mean_timesteps)
    assert again.accuracy == pytest.approx(cal.result.accuracy)


def test_larger_budget_never_costs_more_steps():
    cum, y = _data(seed=2)
    steps = [calibrate("confidence", cum, y, b).result.mean_timesteps for b in (0, 1, 5, 100)]
    assert steps == sorted(steps, reverse=True)
    assert steps[-1] == 1.0  # a 100 pp budget allows exiting at t=1


def test_calibration_errors():
    cum, y = _data()
    with pytest.raises(ConfigError, match="one class"):
        calibrate("confidence", cum, torch.zeros_like(y), 0.5)
    with pytest.raises(ConfigError, match="test split"):
        calibrate("confidence", cum, y, 0.5, split="test")
    with pytest.raises(ConfigError):
        calibrate("confidence", cum, y, -1)
    with pytest.raises(ConfigError):
        calibrate("nope", cum, y, 0.5)


def test_candidates_capped_and_include_never():
    cum, y = _data(B=2000)
    c = candidate_thresholds("confidence", cum, max_candidates=50)
    assert len(c) <= 51 and math.isinf(c[-1])


# --------------------------------------------------------------------------- guarantee, validation


def test_binomial_cdf_and_clopper_pearson_bound():
    from trt_nm.exit_guarantee import binomial_cdf, binomial_upper_bound

    assert binomial_cdf(0, 10, 0.5) == pytest.approx(0.5**10)
    assert binomial_cdf(10, 10, 0.3) == 1.0 and binomial_cdf(-1, 10, 0.3) == 0.0
    assert binomial_cdf(3, 400, 0.0) == 1.0
    # P(X <= 3), X ~ Bin(400, 0.02), summed by hand
    exact = sum(math.comb(400, i) * 0.02**i * 0.98 ** (400 - i) for i in range(4))
    assert binomial_cdf(3, 400, 0.02) == pytest.approx(exact, rel=1e-10)
    for k, n, d in [(0, 400, 0.1), (3, 400, 0.1), (17, 1000, 0.05)]:
        u = binomial_upper_bound(k, n, d)
        assert k / n < u < 1 and binomial_cdf(k, n, u) == pytest.approx(d, rel=1e-6)
    assert binomial_upper_bound(0, 400, 0.1) == pytest.approx(1 - 0.1 ** (1 / 400), rel=1e-9)
    assert binomial_upper_bound(5, 5, 0.1) == 1.0


def _population(N=5000, T=6, C=5, seed=0):
    """A 'true' distribution: every draw of a calibration split comes from these N samples."""
    return _data(T=T, B=N, C=C, seed=seed)


@pytest.mark.parametrize("kind", list_exit_rules())
def test_guarantee_holds_in_repeated_draws(kind):
    """Draw the calibration split R times from a population whose true accuracy loss of every
    grid threshold is known; the calibrated rule's TRUE loss exceeds EPS in at most D of the
    draws (the point-estimate calibration at the same budget exceeds it far more often)."""
    from trt_nm.exit_guarantee import calibrate_guaranteed, threshold_grid

    cum, y = _population()
    eps, delta, n, R = 0.03, 0.1, 400, 100
    grid = threshold_grid(kind, cum.shape[-1])
    true = {p.rule.threshold: p.accuracy_loss / 100 for p in sweep(kind, cum, y, [*grid, unreachable_threshold(kind)])}
    g = torch.Generator().manual_seed(1)
    violations = point_violations = exits_early = 0
    for r in range(R):
        idx = torch.randint(0, y.numel(), (n,), generator=g)
        cal = calibrate_guaranteed(kind, cum[:, idx], y[idx], eps, delta)
        assert cal.rule.threshold in true and cal.n == n
        assert cal.result.accuracy_loss / 100 <= cal.bound + 1e-12  # the bound covers the measured loss
        violations += true[cal.rule.threshold] > eps
        exits_early += cal.passed > 0 and cal.result.mean_timesteps < cum.shape[0]
        if kind == "confidence" and r < 40:
            pe = calibrate(kind, cum[:, idx], y[idx], 100 * eps)
            point_violations += evaluate_exit(pe.rule, cum, y).accuracy_loss / 100 > eps
    assert violations <= delta * R, (violations, R)
    assert exits_early >= 0.9 * R  # not vacuous: the chosen rules do exit early
    if kind == "confidence":
        assert point_violations > 3 * delta * 40  # a point estimate gives no such guarantee


def test_guarantee_edges_and_errors():
    from trt_nm.exit_guarantee import calibrate_guaranteed

    cum, y = _data(seed=3)
    never = calibrate_guaranteed("confidence", cum, y, 0.0, 0.1)  # eps = 0: nothing can pass
    assert never.passed == 0 and math.isinf(never.rule.threshold) and never.bound == 0.0
    assert never.result.mean_timesteps == cum.shape[0]
    few = calibrate_guaranteed("margin", cum[:, :20], y[:20], 0.05, 0.1)  # (0.95)^20 > 0.1
    assert few.passed == 0
    loose = calibrate_guaranteed("entropy", cum, y, 0.5, 0.2)
    assert loose.passed > 0 and loose.result.mean_timesteps < cum.shape[0]
    d = loose.to_dict()
    assert d["eps"] == 0.5 and d["delta"] == 0.2 and d["bound"] == loose.bound and "Learn-then-Test" in d["method"]
    for eps, delta in [(1.0, 0.1), (-0.1, 0.1), (math.nan, 0.1), (0.1, 0.0), (0.1, 1.0), (0.1, math.inf)]:
        with pytest.raises(ConfigError):
            calibrate_guaranteed("confidence", cum, y, eps, delta)
    with pytest.raises(ConfigError, match="test split"):
        calibrate_guaranteed("confidence", cum, y, 0.1, 0.1, split="test")


@pytest.mark.parametrize("spec,words", [("confidence:2", "(0, 1]"), ("confidence:-0.5", "(0, 1]"),
                                        ("confidence:0", "(0, 1]"), ("entropy:-1", ">= 0, finite"),
                                        ("entropy:inf", ">= 0, finite"), ("margin:inf", ">= 0, finite"),
                                        ("margin:-2", ">= 0, finite")])
def test_user_thresholds_are_checked(spec, words):
    from trt_nm.early_exit import check_threshold

    with pytest.raises(ConfigError, match="out of range") as err:
        check_threshold(parse_exit_spec(spec))
    assert words in str(err.value) and "\n" not in str(err.value)
    for ok in ["confidence:1", "confidence:0.001", "entropy:0", "margin:0", "margin:1e6"]:
        assert check_threshold(parse_exit_spec(ok)) == parse_exit_spec(ok)


def test_exit_decision_chunk_by_chunk_equals_whole_run():
    """``exits_in`` over consecutive chunks gives the post-hoc exit steps (the executed
    exit's decision, without a simulator)."""
    cum, y = _data(T=7, seed=4)
    for kind in list_exit_rules():
        for th in candidate_thresholds(kind, cum, max_candidates=9):
            rule = ExitRule(kind, th)
            whole = rule.exit_steps(cum)
            got = torch.zeros_like(whole)
            for t0, t1 in [(0, 1), (1, 3), (3, 4), (4, 7)]:
                s = rule.exits_in(cum[t0:t1], t0, 7)
                got = torch.where((got == 0) & (s > 0), s, got)
            assert torch.equal(got, whole)
