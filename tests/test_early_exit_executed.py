"""Executed early exit (``Simulator.run_exit``) equals the post-hoc evaluation of the same rule
on the same simulator's full run: predictions and exit steps exactly, and logits, spikes and
synaptic operations bit for bit for the steps each sample ran (0 after its exit).

Why exactly: both call ``ExitRule.exits_in`` (the rule's own ``fires`` comparison) on
``cumulative_mean`` of the same logits, and the engine keeps every chunk at >= 16 merged rows
while it compacts the batch (torch's CPU kernels pick another algorithm below 16 rows, which can
change a logit's last bit and so an exit decision at a tie); see ``trt_nm/sim/exit_run.py``.
"""

from __future__ import annotations

import pytest
import torch

from trt_nm.early_exit import (
    ExitRule,
    evaluate_exit,
    get_exit_rule,
    list_exit_rules,
    unreachable_threshold,
)
from trt_nm.metrics.energy import count_ops
from trt_nm.models import build_model, randomize_batchnorm
from trt_nm.nir.io import to_nir
from trt_nm.sim import Simulator, concat_exit_runs

SIZE = (12, 12)


def _graph(arch: str, seed: int = 3):
    torch.manual_seed(seed)
    m = build_model(arch, input_size=SIZE, in_channels=2, T=6, num_classes=10)
    randomize_batchnorm(m)
    if arch == "cnn-small":  # make the hidden dense layer fire, so the logits move over time
        with torch.no_grad():
            [lin for lin in m.modules() if isinstance(lin, torch.nn.Linear)][0].weight.mul_(8.0)
    return to_nir(m.eval())


def _input(kind: str, T: int, B: int, seed: int = 7) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if kind == "static":
        return (torch.rand(1, B, 2, *SIZE, generator=g) * 2).expand(T, -1, -1, -1, -1).contiguous()
    return (torch.rand(T, B, 2, *SIZE, generator=g) < 0.3).float()


def _thresholds(kind: str, cum: torch.Tensor) -> list[float]:
    """Thresholds that spread the exits over the steps: quantiles of each step's scores, plus
    'always at t = 1' and 'never'."""
    sc = get_exit_rule(kind).score(cum).double()
    ths = [float(torch.quantile(sc[t], q)) for t in (0, sc.shape[0] // 2) for q in (0.3, 0.7)]
    ths += [float(torch.quantile(sc, q)) for q in (0.5, 0.8, 0.95)]
    first = float(sc[0].min()) if get_exit_rule(kind).higher_exits else float(sc[0].max())
    return [*ths, first, unreachable_threshold(kind)]


def _check_equal(sim: Simulator, x: torch.Tensor, rule: ExitRule, **kw) -> torch.Tensor:
    full = sim(x)
    y = torch.arange(int(x.shape[1])) % 10
    post = evaluate_exit(rule, full.cum_logits.float().cpu(), y)  # what the report does
    run = sim.run_exit(x, rule, **kw)
    assert torch.equal(run.exit_steps, post.exit_steps), rule
    idx = (post.exit_steps - 1).view(1, -1, 1).expand(1, -1, full.cum_logits.shape[-1])
    assert torch.equal(run.predictions, full.cum_logits.gather(0, idx)[0].argmax(-1).cpu())
    mask = full.step_mask(post.exit_steps)
    assert torch.equal(run.step_mask(), mask)
    ran = mask.bool().unsqueeze(-1).expand_as(full.logits)
    assert torch.equal(run.logits[ran], full.logits[ran])
    assert torch.equal(run.cum_logits[ran], full.cum_logits[ran])
    assert bool(run.logits[~ran].isnan().all())
    assert set(run.spikes) == set(full.spikes) and set(run.synops) == set(full.synops)
    for k in full.spikes:
        assert torch.equal(run.spikes[k], full.spikes[k] * mask), k
    for k in full.synops:
        assert torch.equal(run.synops[k], full.synops[k] * mask), k
    # op counts fall with the steps run: exactly the post-hoc counts up to each exit step
    assert count_ops(run).to_dict() == count_ops(full, post.exit_steps).to_dict()
    assert run.row_steps >= int(post.exit_steps.sum())
    return post.exit_steps


@pytest.mark.parametrize("arch", ["mlp", "cnn-small"])
@pytest.mark.parametrize("coding", ["static", "events"])
@pytest.mark.parametrize("kind", list_exit_rules())
def test_executed_exit_equals_post_hoc_for_every_rule(arch, coding, kind):
    sim = Simulator(_graph(arch))
    x = _input(coding, 6, 40)
    cum = sim(x).cum_logits
    spread = set()
    for th in _thresholds(kind, cum):
        steps = _check_equal(sim, x, ExitRule(kind, th))
        spread.add(len(torch.unique(steps)))
    assert max(spread) >= 3  # the thresholds really exit samples at different steps


@pytest.mark.parametrize("coding", ["static", "events"])
@pytest.mark.parametrize("T,B", [(6, 5), (2, 7), (5, 17)])
def test_small_batches_pad_to_16_rows(coding, T, B):
    """Few samples: chunks widen to >= 16 rows and the tail is padded with copies (T=6 x 5);
    T x B < 16 runs as one chunk like the full run (T=2 x 7)."""
    sim = Simulator(_graph("cnn-small"))
    x = _input(coding, T, B)
    cum = sim(x).cum_logits
    for kind in list_exit_rules():
        for th in _thresholds(kind, cum):
            _check_equal(sim, x, ExitRule(kind, th))


@pytest.mark.parametrize("coding", ["static", "events"])
def test_pieces_chunks_and_no_counting(coding):
    """Batch pieces in the full run (small state budget), multi-step exit chunks, and
    count_ops=False give the same decisions."""
    graph = _graph("cnn-small", seed=5)
    x = _input(coding, 5, 48, seed=11)
    small = Simulator(graph, state_bytes=4096, chunk_bytes=64 * 2**10)  # full run: pieces of 16
    assert small.plan_chunks(x)[1] < 48
    cum = small(x).cum_logits
    for kind in list_exit_rules():
        for th in _thresholds(kind, cum)[:4]:
            rule = ExitRule(kind, th)
            steps = _check_equal(small, x, rule)
            _check_equal(small, x, rule, chunk_steps=2)
            bare = small.run_exit(x, rule, count_ops=False)
            assert torch.equal(bare.exit_steps, steps) and not bare.synops


@pytest.mark.parametrize("arch", ["mlp", "cnn-small"])
def test_many_groups_keep_their_own_states(arch):
    """A batch split into several groups (small chunk budget): groups in which nobody exits keep
    their states in their own buffers, groups merge as samples leave; still exact."""
    graph = _graph(arch, seed=8)
    x = _input("events", 7, 100, seed=13)
    sim = Simulator(graph, chunk_bytes=16 * 2**10)  # groups of 16 samples
    cum = sim(x).cum_logits
    for kind in list_exit_rules():
        for th in _thresholds(kind, cum):
            run = sim.run_exit(x, ExitRule(kind, th))
            assert run.chunks >= 7 or run.mean_timesteps < 2
            _check_equal(sim, x, ExitRule(kind, th))


def test_executed_exit_runs_fewer_rows_and_joins():
    sim = Simulator(_graph("mlp"))
    x = _input("events", 8, 64)
    cum = sim(x).cum_logits
    rule = ExitRule("confidence", float(torch.quantile(get_exit_rule("confidence").score(cum)[0].double(), 0.5)))
    run = sim.run_exit(x, rule)
    assert run.mean_timesteps < 8 and run.row_steps < 8 * 64
    parts = concat_exit_runs([sim.run_exit(x[:, :32], rule), sim.run_exit(x[:, 32:], rule)])
    assert torch.equal(parts.exit_steps, run.exit_steps) and torch.equal(parts.predictions, run.predictions)
    assert count_ops(parts).to_dict() == count_ops(run).to_dict()
    with pytest.raises(Exception, match="chunk_steps"):
        sim.run_exit(x, rule, chunk_steps=0)


@pytest.mark.parametrize("coding", ["static", "events"])
def test_small_tail_advances_several_steps_within_the_chunk_budget(coding, monkeypatch):
    """Once few samples remain they advance several steps per chunk (about TAIL_ROWS rows), but
    never beyond a group's one-step budget (``piece`` samples) and never below 16 rows; the
    decisions stay exact and the counts stop at each exit."""
    from trt_nm.sim import exit_run

    graph = _graph("mlp", seed=4)
    x = _input(coding, 12, 80, seed=2)
    sim = Simulator(graph)
    cum = sim(x).cum_logits
    # a threshold at which most samples leave early and a few stay long: a small tail
    y = torch.arange(80) % 10
    def tail(r: ExitRule) -> int:  # (samples leaving by t = 2) x (samples staying to t >= 6)
        steps = evaluate_exit(r, cum, y).exit_steps
        return int((steps <= 2).sum() * (steps >= 6).sum())

    rule = max((ExitRule("confidence", th) for th in _thresholds("confidence", cum)), key=tail)
    piece = exit_run._piece_size(sim, sim._prepare_input(x), coding == "static")
    seen: list[tuple[int, int]] = []
    real = Simulator._run_chunk

    def spy(self, xd, *a, **k):
        seen.append((int(xd.shape[0]), int(xd.shape[1])))
        return real(self, xd, *a, **k)

    monkeypatch.setattr(Simulator, "_run_chunk", spy)
    steps = _check_equal(sim, x, rule)
    seen.clear()
    run = sim.run_exit(x, rule)
    assert torch.equal(run.exit_steps, steps) and 1 < run.mean_timesteps < 12
    assert all(tc * n >= 16 for tc, n in seen)
    assert all(tc == 1 or tc * n < max(piece + 1, 16 + n) for tc, n in seen)  # within the budget
    assert all(tc * n <= max(exit_run.TAIL_ROWS, 16) + n for tc, n in seen[1:] if tc > 1)
    assert any(tc > 1 for tc, _ in seen[1:]), seen  # the tail was widened
    assert run.chunks == len(seen) < 12
