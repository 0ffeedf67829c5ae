"""Early-exit calibration with a statistical guarantee (Learn-then-Test with exact binomial
bounds): the most aggressive threshold whose accuracy loss against full T is at most EPS with
probability at least 1 - delta over the draw of the calibration split."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from trt_nm.early_exit import (
    ExitResult,
    ExitRule,
    _check,
    _sweep_steps,
    evaluate_exit,
    get_exit_rule,
    sweep,
    unreachable_threshold,
)
from trt_nm.errors import ConfigError
from trt_nm.metrics.accuracy import hits_per_timestep


def binomial_cdf(k: int, n: int, p: float) -> float:
    """``P(X <= k)`` for ``X ~ Binomial(n, p)``, exact (summed in log space, float64)."""
    if k < 0:
        return 0.0
    if k >= n or p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    i = torch.arange(k + 1, dtype=torch.float64)
    logpmf = (math.lgamma(n + 1) - torch.lgamma(i + 1) - torch.lgamma(n - i + 1)
              + i * math.log(p) + (n - i) * math.log1p(-p))
    return float(torch.logsumexp(logpmf, 0).exp().clamp(0.0, 1.0))


def binomial_upper_bound(k: int, n: int, delta: float) -> float:
    """Exact (Clopper-Pearson) one-sided upper confidence bound on a rate from ``k`` events in
    ``n`` draws: the ``p`` with ``P(Binomial(n, p) <= k) = delta``, so the true rate lies below
    it with probability at least ``1 - delta``."""
    if k >= n:
        return 1.0
    lo, hi = k / n, 1.0
    for _ in range(80):  # bisection: binomial_cdf falls as p grows
        mid = 0.5 * (lo + hi)
        if binomial_cdf(k, n, mid) > delta:
            lo = mid
        else:
            hi = mid
    return hi


def threshold_grid(kind: str, num_classes: int) -> list[float]:
    """The fixed thresholds :func:`calibrate_guaranteed` tests for rule ``kind``, from the most
    conservative to the most aggressive (they depend only on the number of classes, never on
    the calibration data, as the fixed-sequence test requires)."""
    k = get_exit_rule(kind)
    if k.grid is None:
        raise ConfigError(f"exit rule {kind!r} has no fixed threshold grid; a guarantee needs one")
    return k.grid(num_classes)


@dataclass(frozen=True)
class GuaranteedCalibration:
    """The outcome of :func:`calibrate_guaranteed`.

    Attributes:
        rule: the chosen rule (the "never exit" threshold when no threshold passed the test).
        eps: the allowed accuracy loss against full T, a fraction (0.01 = 1 pp).
        delta: the allowed probability that the loss exceeds ``eps`` (over calibration draws).
        n: calibration samples.
        harm: calibration samples right at full T but wrong at their exit step.
        bound: the exact binomial (Clopper-Pearson) upper ``1 - delta`` bound on the harm rate
            of the chosen threshold, an upper bound on its accuracy loss (0 for "never").
        tested: thresholds tested (in the fixed order) before the first that failed.
        passed: how many of them passed.
        result: the chosen rule's operating point on the calibration split.
        split: name of the calibration split.
    """

    rule: ExitRule
    eps: float
    delta: float
    n: int
    harm: int
    bound: float
    tested: int
    passed: int
    result: ExitResult
    split: str = "val"

    @property
    def budget_pp(self) -> float:
        """``eps`` in percentage points."""
        return 100.0 * self.eps

    def to_dict(self) -> dict:
        """Plain data for reports."""
        return {"rule": self.rule.spec, "eps": self.eps, "delta": self.delta, "n": self.n, "harm": self.harm,
                "bound": self.bound, "tested": self.tested, "passed": self.passed, "split": self.split,
                "method": "fixed-sequence test (Learn-then-Test) of H0: harm rate > eps per threshold, "
                          "exact binomial p-value P(Binomial(n, eps) <= harm) <= delta",
                "calibration": self.result.to_dict()}


def calibrate_guaranteed(
    rule: str | ExitRule,
    cum: torch.Tensor,
    targets: torch.Tensor,
    eps: float,
    delta: float,
    *,
    split: str = "val",
) -> GuaranteedCalibration:
    """The most aggressive threshold whose accuracy loss against full T is at most ``eps`` with
    probability at least ``1 - delta`` over the draw of the calibration split.

    Learn-then-Test with fixed-sequence testing: the thresholds of :func:`threshold_grid` are
    tested one by one from the most conservative, each for H0 "harm rate > eps", where harm =
    right at full T but wrong at the exit step (the accuracy loss is at most the harm rate);
    H0 is rejected when the exact binomial p-value ``P(Binomial(n, eps) <= harm) <= delta``.
    Testing stops at the first threshold not rejected; all rejected ones hold together with
    probability >= 1 - delta, and the one with the fewest mean timesteps on the calibration
    split is chosen (ties: higher accuracy). Never exiting early has no harm at all and is the
    answer when even the first threshold fails (e.g. ``eps = 0``, or too few samples:
    ``(1 - eps)^n > delta``).

    The guarantee assumes the calibration samples are drawn independently from the same
    distribution as the data the rule is used on; it holds per calibrated rule.

    Args:
        rule: rule kind or :class:`ExitRule` (its threshold is ignored).
        cum: cumulative logits on the calibration split ``[T, B, C]``.
        targets: labels ``[B]``.
        eps: allowed accuracy loss, a fraction in [0, 1) (0.01 = 1 pp).
        delta: allowed failure probability, in (0, 1).
        split: the calibration split's name (never ``test``).
    """
    kind = rule.kind if isinstance(rule, ExitRule) else str(rule)
    get_exit_rule(kind)
    eps, delta = float(eps), float(delta)
    if not (math.isfinite(eps) and 0.0 <= eps < 1.0):
        raise ConfigError(f"EPS must be a fraction in [0, 1) (0.01 = 1 pp), got {eps:g}")
    if not (math.isfinite(delta) and 0.0 < delta < 1.0):
        raise ConfigError(f"--delta must be in (0, 1), got {delta:g}")
    if split == "test":
        raise ConfigError("calibrate exit thresholds on a held-out split, never on the test split")
    _check(cum, targets)
    cum, targets = cum.cpu(), targets.cpu()
    if torch.unique(targets).numel() < 2:
        raise ConfigError(
            f"calibration split has only one class ({int(targets[0])}); it cannot measure an accuracy loss"
        )
    T, n, C = (int(v) for v in cum.shape)
    grid = threshold_grid(kind, C)
    steps = _sweep_steps(kind, get_exit_rule(kind).score(cum), grid)  # [K, n]
    correct = hits_per_timestep(cum, targets)  # [T, n]
    harm = (correct[-1].unsqueeze(0) & ~correct.gather(0, steps - 1)).sum(1).tolist()  # [K]
    passed: list[int] = []
    tested = 0
    for j, k in enumerate(harm):
        tested += 1
        if binomial_cdf(int(k), n, eps) > delta:
            break
        passed.append(j)
    never = ExitRule(kind, unreachable_threshold(kind))
    if not passed:
        return GuaranteedCalibration(never, eps, delta, n, 0, 0.0, tested, 0, evaluate_exit(never, cum, targets), split)
    points = sweep(kind, cum, targets, [grid[j] for j in passed])
    best = min(range(len(passed)), key=lambda i: (points[i].mean_timesteps, -points[i].accuracy, -i))
    k = int(harm[passed[best]])
    return GuaranteedCalibration(points[best].rule, eps, delta, n, k, binomial_upper_bound(k, n, delta), tested,
                                 len(passed), points[best], split)



__all__ = ["binomial_cdf", "binomial_upper_bound", "threshold_grid", "GuaranteedCalibration",
           "calibrate_guaranteed"]
