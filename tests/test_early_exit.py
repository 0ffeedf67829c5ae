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
