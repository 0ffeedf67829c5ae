"""Per-sample early exit over cumulative logits, and threshold calibration on held-out data.

The prediction after t timesteps is the argmax of the mean of the first t outputs, the
cumulative logits ``cum [T, B, C]``. A rule computes a score per timestep and sample and the
sample exits at the first (1-based) step whose score passes the threshold, else at T:

==============  ================================================  =====================
kind            score (of ``cum[t, b]``)                           exits when
==============  ================================================  =====================
``confidence``  max softmax probability (SEENN-I, NeurIPS'23)      score >= threshold
``entropy``     entropy of the softmax, nats (DT-SNN)              score <= threshold
``margin``      top-1 minus top-2 logit                            score >= threshold
==============  ================================================  =====================

So ``confidence:0`` and ``margin:0`` exit every sample at t = 1, and ``entropy:inf`` does too;
``confidence:1.01`` / ``margin:inf`` / ``entropy:-1`` never fire, and every sample runs all T
steps. :func:`calibrate` picks, on a held-out split, the threshold with the fewest mean
timesteps whose accuracy loss against full T stays within a budget in percentage points (a
point estimate on that split); :func:`calibrate_guaranteed` picks the most aggressive threshold
whose loss is at most EPS with probability at least 1 - delta over the draw of the split
(Learn-then-Test: exact binomial tests, threshold by threshold, in a fixed order).

The decision is made in ONE place, :meth:`ExitRule.exits_in`: the post-hoc evaluation
(:meth:`ExitRule.exit_steps` over a full run's cumulative logits) and the executed exit of the
simulator (:meth:`trt_nm.sim.Simulator.run_exit`, chunk by chunk, dropping exited samples) both
call it, so they cannot drift apart (``tests/test_early_exit_executed.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from trt_nm.errors import ConfigError
from trt_nm.metrics.accuracy import hits_per_timestep
from trt_nm.registry import Registry

ScoreFn = Callable[[torch.Tensor], torch.Tensor]


def confidence_score(cum: torch.Tensor) -> torch.Tensor:
    """Max softmax probability ``[T, B]`` of cumulative logits ``[T, B, C]`` (in [1/C, 1])."""
    return torch.softmax(cum.double(), dim=-1).amax(-1)


def entropy_score(cum: torch.Tensor) -> torch.Tensor:
    """Softmax entropy in nats ``[T, B]`` of ``[T, B, C]`` (in [0, ln C]); low = confident."""
    logp = torch.log_softmax(cum.double(), dim=-1)
    return (-(logp.exp() * logp).sum(-1)).clamp_min(0.0)


def margin_score(cum: torch.Tensor) -> torch.Tensor:
    """Top-1 minus top-2 cumulative logit ``[T, B]`` (logit units, >= 0)."""
    if cum.shape[-1] < 2:
        raise ConfigError("the margin rule needs at least 2 classes")
    top = cum.double().topk(2, dim=-1).values
    return top[..., 0] - top[..., 1]


GridFn = Callable[[int], list[float]]


@dataclass(frozen=True)
class RuleKind:
    """A registered exit rule: its score and whether high scores mean "exit".

    ``low`` / ``high`` (open at ``low`` when ``low_open``) bound the thresholds a user may give
    (:func:`check_threshold`); ``grid(num_classes)`` lists the fixed, data-independent thresholds
    :func:`calibrate_guaranteed` tests, from the most conservative to the most aggressive.
    """

    name: str
    score: ScoreFn
    higher_exits: bool
    unit: str
    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    grid: GridFn | None = None

    @property
    def valid_range(self) -> str:
        """The valid thresholds in words, e.g. ``(0, 1]`` or ``>= 0, finite``."""
        if math.isinf(self.high):
            return f"{'>' if self.low_open else '>='} {self.low:g}, finite"
        return f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"


_RULES: Registry[RuleKind] = Registry("exit rule")


def register_exit_rule(name: str, score: ScoreFn, higher_exits: bool, unit: str, *, low: float = -math.inf,
                       high: float = math.inf, low_open: bool = False, grid: GridFn | None = None) -> None:
    """Add an exit rule kind ``name`` (``score(cum [T,B,C]) -> [T,B]``); ``low``/``high``/
    ``low_open``: the thresholds a user may give; ``grid``: see :class:`RuleKind`."""
    _RULES.register(name, RuleKind(name, score, higher_exits, unit, low, high, low_open, grid))


def list_exit_rules() -> list[str]:
    """Registered exit rule kinds."""
    return _RULES.names()


def get_exit_rule(name: str) -> RuleKind:
    """The rule kind called ``name``; unknown names list the valid ones."""
    return _RULES.get(name)


#: points of the fixed threshold grids of :func:`calibrate_guaranteed`
GRID_POINTS = 200


def _confidence_grid(num_classes: int) -> list[float]:
    # from 1 - 1e-6 (almost never) down to 1/C (always at t = 1), log-spaced towards 1
    q = torch.logspace(-6, 0, GRID_POINTS, dtype=torch.float64)
    return (1.0 - (1.0 - 1.0 / num_classes) * q).tolist()


def _entropy_grid(num_classes: int) -> list[float]:
    # from 1e-6 ln C (almost never) up to ln C (always at t = 1)
    return (math.log(num_classes) * torch.logspace(-6, 0, GRID_POINTS, dtype=torch.float64)).tolist()


def _margin_grid(num_classes: int) -> list[float]:
    # from 1000 logit units (almost never) down to 0 (always at t = 1)
    return [*torch.logspace(3, -3, GRID_POINTS - 1, dtype=torch.float64).tolist(), 0.0]


register_exit_rule("confidence", confidence_score, True, "max softmax probability", low=0.0, high=1.0,
                   low_open=True, grid=_confidence_grid)
register_exit_rule("entropy", entropy_score, False, "nats", low=0.0, grid=_entropy_grid)
register_exit_rule("margin", margin_score, True, "logit units", low=0.0, grid=_margin_grid)


@dataclass(frozen=True)
class ExitRule:
    """An exit rule with its threshold, e.g. ``ExitRule("confidence", 0.9)``."""

    kind: str
    threshold: float

    def __post_init__(self) -> None:
        get_exit_rule(self.kind)
        th = float(self.threshold)
        if math.isnan(th):
            raise ConfigError("exit threshold must be a number, got nan")
        object.__setattr__(self, "threshold", th)

    @property
    def spec(self) -> str:
        """The text form accepted by :func:`parse_exit_spec`."""
        return f"{self.kind}:{self.threshold:g}"

    def fires(self, cum: torch.Tensor) -> torch.Tensor:
        """Boolean ``[T, B]``: would a sample exit at this timestep."""
        return fires(self.kind, get_exit_rule(self.kind).score(cum), self.threshold)

    def exit_steps(self, cum: torch.Tensor) -> torch.Tensor:
        """1-based exit step per sample ``[B]`` (int64; T when the rule never fires)."""
        return self.exits_in(cum, 0, int(cum.shape[0]))

    def exits_in(self, cum: torch.Tensor, t0: int, T: int) -> torch.Tensor:
        """The exit decision over steps ``t0+1 .. t0+Tc`` of a run of ``T`` steps, from the
        cumulative logits of those steps ``cum [Tc, B, C]``: the 1-based exit step per sample
        ``[B]`` (int64), 0 where the rule has not fired yet (every sample exits at T).

        The ONE decision both evaluations make: post-hoc (:meth:`exit_steps`, ``t0 = 0`` over
        all T steps) and executed (:meth:`trt_nm.sim.Simulator.run_exit`, chunk by chunk).
        """
        return first_firing_in(self.fires(cum), t0, T)


def fires(kind: str, scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """Compare scores ``[T, B]`` against a threshold the way rule ``kind`` does."""
    if get_exit_rule(kind).higher_exits:
        return scores >= threshold
    return scores <= threshold


def first_firing(fire: torch.Tensor) -> torch.Tensor:
    """``[T, B]`` bool -> 1-based index of the first True per column (T when none) ``[B]``."""
    T = fire.shape[0]
    if T == 0:
        return torch.zeros(fire.shape[1:], dtype=torch.int64, device=fire.device)
    return first_firing_in(fire, 0, T)


def first_firing_in(fire: torch.Tensor, t0: int, T: int) -> torch.Tensor:
    """Firing flags of steps ``t0+1 .. t0+Tc`` ``[Tc, B]`` of a ``T``-step run -> 1-based step
    of the first True per column, 0 when none; step T always counts as firing."""
    Tc = int(fire.shape[0])
    if t0 + Tc >= T:  # everybody stops at T
        fire = fire.clone()
        fire[T - t0 - 1] = True
    step = fire.to(torch.int64).argmax(0) + (t0 + 1)  # argmax: the FIRST maximum
    return torch.where(fire.any(0), step, torch.zeros_like(step))


def parse_exit_spec(text: str) -> ExitRule:
    """``"confidence:0.9"`` / ``"entropy:0.3"`` / ``"margin:2"`` -> :class:`ExitRule`."""
    if not isinstance(text, str) or text.count(":") != 1:
        raise ConfigError(
            f"cannot parse exit spec {text!r}; expected KIND:THRESHOLD with KIND one of "
            f"{', '.join(list_exit_rules())} (e.g. confidence:0.9)"
        )
    kind, _, value = text.partition(":")
    kind = kind.strip()
    get_exit_rule(kind)
    try:
        th = float(value)
    except ValueError:
        raise ConfigError(f"cannot parse exit spec {text!r}: threshold {value!r} is not a number") from None
    if math.isnan(th):
        raise ConfigError(f"cannot parse exit spec {text!r}: threshold is nan")
    return ExitRule(kind, th)


def check_threshold(rule: ExitRule) -> ExitRule:
    """``rule`` when its threshold lies in its kind's valid range (confidence in (0, 1], entropy
    and margin >= 0 and finite), else a one-line ConfigError naming the range. The command
    line's ``--exit`` goes through this; the library's :class:`ExitRule` also takes the
    "never"/"always" thresholds (``inf``, ``0``) used internally."""
    k = get_exit_rule(rule.kind)
    th = rule.threshold
    below = th < k.low or (k.low_open and th == k.low)
    if below or th > k.high or math.isinf(th):
        raise ConfigError(f"exit threshold {rule.kind}:{th:g} is out of range: {rule.kind} takes "
                          f"{k.valid_range} ({k.unit})")
    return rule


@dataclass(frozen=True)
class ExitResult:
    """An early-exit operating point on a split.

    Attributes:
        rule: the rule evaluated.
        accuracy: accuracy in % of the prediction at each sample's exit step.
        full_accuracy: accuracy in % after all T steps.
        mean_timesteps: mean exit step (1..T).
        histogram: number of samples exiting at t = 1..T (length T).
        exit_steps: 1-based exit step per sample ``[B]`` (int64, CPU).
    """

    rule: ExitRule
    accuracy: float
    full_accuracy: float
    mean_timesteps: float
    histogram: tuple[int, ...]
    exit_steps: torch.Tensor

    @property
    def accuracy_loss(self) -> float:
        """Full-T accuracy minus exit accuracy, in percentage points."""
        return self.full_accuracy - self.accuracy

    def to_dict(self) -> dict:
        """Plain data for reports (exit steps per sample left out)."""
        return {
            "rule": self.rule.spec,
            "kind": self.rule.kind,
            "threshold": self.rule.threshold,
            "accuracy": self.accuracy,
            "full_accuracy": self.full_accuracy,
            "accuracy_loss_pp": self.accuracy_loss,
            "mean_timesteps": self.mean_timesteps,
            "exit_histogram": list(self.histogram),
        }


def _check(cum: torch.Tensor, targets: torch.Tensor) -> None:
    if cum.dim() != 3:
        raise ConfigError(f"cumulative logits must be [T, B, C], got {list(cum.shape)}")
    if targets.dim() != 1 or targets.shape[0] != cum.shape[1]:
        raise ConfigError(f"targets must be [B] with B={cum.shape[1]}, got {list(targets.shape)}")
    if cum.shape[1] == 0:
        raise ConfigError("early exit on an empty split")


def accuracy_at(cum: torch.Tensor, targets: torch.Tensor, exit_steps: torch.Tensor) -> float:
    """Accuracy in % of ``argmax cum[exit_steps[b]-1, b]`` against ``targets [B]``."""
    idx = (exit_steps.to(cum.device) - 1).view(1, -1, 1).expand(1, -1, cum.shape[-1])
    pred = cum.gather(0, idx)[0].argmax(-1)
    return float((pred == targets.to(cum.device)).double().mean() * 100.0)


def accuracy_per_timestep(cum: torch.Tensor, targets: torch.Tensor) -> list[float]:
    """Accuracy in % of the cumulative prediction after t = 1..T steps (length T)."""
    _check(cum, targets)
    return (hits_per_timestep(cum, targets).double().mean(1) * 100.0).tolist()


def evaluate_exit(rule: ExitRule, cum: torch.Tensor, targets: torch.Tensor) -> ExitResult:
    """Apply ``rule`` to cumulative logits ``cum [T, B, C]`` with labels ``targets [B]``."""
    _check(cum, targets)
    steps = rule.exit_steps(cum).cpu()
    return _result(rule, cum, targets, steps)


def _result(rule: ExitRule, cum, targets, steps) -> ExitResult:
    T = cum.shape[0]
    hist = torch.bincount(steps - 1, minlength=T).tolist()
    return ExitResult(
        rule=rule,
        accuracy=accuracy_at(cum, targets, steps),
        full_accuracy=accuracy_at(cum, targets, torch.full_like(steps, T)),
        mean_timesteps=float(steps.double().mean()),
        histogram=tuple(int(h) for h in hist),
        exit_steps=steps,
    )


def unreachable_threshold(kind: str) -> float:
    """A threshold that never fires (every sample runs all T steps)."""
    return math.inf if get_exit_rule(kind).higher_exits else -math.inf


def candidate_thresholds(kind: str, cum: torch.Tensor, max_candidates: int = 2000) -> list[float]:
    """Thresholds worth trying: the distinct scores (or their quantiles) plus "never"."""
    scores = get_exit_rule(kind).score(cum).reshape(-1).cpu()
    uniq = torch.unique(scores)
    if uniq.numel() > max_candidates:
        q = torch.linspace(0, 1, max_candidates, dtype=torch.float64)
        uniq = torch.unique(torch.quantile(uniq, q))
    return [*uniq.tolist(), unreachable_threshold(kind)]


def _sweep_steps(kind: str, scores: torch.Tensor, ths: list[float]) -> torch.Tensor:
    """Exit steps ``[K, B]`` (1-based) for K thresholds at once, from scores ``[T, B]``.

    A sample exits at the first t whose running best score passes the threshold, so the exit
    step is 1 + the number of earlier running-best values that do not pass it (binary search).
    """
    T, B = scores.shape
    sign = 1.0 if get_exit_rule(kind).higher_exits else -1.0
    th = sign * torch.tensor(ths, dtype=torch.float64)
    if T == 1 or th.numel() == 0:
        return torch.ones(th.numel(), B, dtype=torch.int64)
    best = torch.cummax(sign * scores.double(), 0).values[:-1].T.contiguous()  # [B, T-1]
    below = torch.searchsorted(best, th.expand(B, -1).contiguous())  # entries < th, [B, K]
    return (below + 1).T.contiguous()


def sweep(kind: str, cum: torch.Tensor, targets: torch.Tensor, thresholds: list[float] | None = None) -> list[ExitResult]:
    """Operating points of rule ``kind`` for each threshold (default: :func:`candidate_thresholds`)."""
    _check(cum, targets)
    cum = cum.cpu()
    targets = targets.cpu()
    scores = get_exit_rule(kind).score(cum)
    ths = candidate_thresholds(kind, cum) if thresholds is None else [float(t) for t in thresholds]
    T, B = scores.shape
    steps = _sweep_steps(kind, scores, ths)  # [K, B]
    correct = hits_per_timestep(cum, targets).double()  # [T, B]
    acc = correct.gather(0, steps - 1).mean(1) * 100.0  # [K]
    full = float(correct[-1].mean() * 100.0)
    hist = torch.nn.functional.one_hot(steps - 1, T).sum(1)  # [K, T]
    mean = steps.double().mean(1)
    return [
        ExitResult(ExitRule(kind, th), float(acc[k]), full, float(mean[k]),
                   tuple(int(h) for h in hist[k].tolist()), steps[k])
        for k, th in enumerate(ths)
    ]


@dataclass(frozen=True)
class Calibration:
    """The outcome of :func:`calibrate` on the calibration split.

    Attributes:
        rule: the chosen rule (threshold included).
        budget_pp: allowed accuracy loss vs full T, percentage points.
        result: its operating point on the calibration split.
        split: name of the calibration split (for reports).
    """

    rule: ExitRule
    budget_pp: float
    result: ExitResult
    split: str = "val"

    def to_dict(self) -> dict:
        """Plain data for reports."""
        return {"rule": self.rule.spec, "budget_pp": self.budget_pp, "split": self.split,
                "calibration": self.result.to_dict()}


def calibrate(
    rule: str | ExitRule,
    cum: torch.Tensor,
    targets: torch.Tensor,
    budget: float,
    *,
    split: str = "val",
) -> Calibration:
    """Choose the threshold of ``rule`` with the fewest mean timesteps within an accuracy budget.

    Use a held-out calibration split, never the test split.

    Args:
        rule: rule kind (``"confidence"``, ``"entropy"``, ``"margin"``) or an :class:`ExitRule`
            (its threshold is ignored).
        cum: cumulative logits on the calibration split ``[T, B, C]``.
        targets: labels ``[B]``.
        budget: allowed accuracy loss against full T, in percentage points (>= 0).
        split: the calibration split's name (recorded only).

    Returns:
        :class:`Calibration`. Ties in mean timesteps go to the higher accuracy.
    """
    kind = rule.kind if isinstance(rule, ExitRule) else str(rule)
    get_exit_rule(kind)
    b = float(budget)
    if not math.isfinite(b) or b < 0:
        raise ConfigError(f"accuracy budget must be >= 0 percentage points, got {budget}")
    if split == "test":
        raise ConfigError("calibrate exit thresholds on a held-out split, never on the test split")
    _check(cum, targets)
    if torch.unique(targets).numel() < 2:
        raise ConfigError(
            f"calibration split has only one class ({int(targets[0])}); it cannot measure an accuracy loss"
        )
    best: ExitResult | None = None
    for r in sweep(kind, cum, targets):
        if r.accuracy_loss > b + 1e-9:
            continue
        if best is None or (r.mean_timesteps, -r.accuracy) < (best.mean_timesteps, -best.accuracy):
            best = r
    assert best is not None  # the unreachable threshold always has zero loss
    return Calibration(best.rule, b, best, split)

__all__ = [
    "check_threshold",
    "first_firing_in",
    "ExitRule",
    "ExitResult",
    "Calibration",
    "parse_exit_spec",
    "evaluate_exit",
    "calibrate",
    "sweep",
    "accuracy_per_timestep",
    "accuracy_at",
    "confidence_score",
    "entropy_score",
    "margin_score",
    "list_exit_rules",
    "get_exit_rule",
    "register_exit_rule",
    "first_firing",
    "unreachable_threshold",
]
