"""ONNX: the unrolled network in onnxruntime gives the same spikes and logits (dynamic batch)."""

from __future__ import annotations

import numpy as np
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


def _run_step_file(sess, state_names, x, rule=None):
    """A host runtime: run the step file one timestep at a time from zero states.

    Without ``rule``: every sample for all T steps; returns logits ``[T, B, C]``. With an exit
    rule: the rule is applied to each sample's running mean of logits after every step, and a
    sample that exits is dropped from the batch (the file has a dynamic batch); returns the
    exit step (1-based) and prediction per sample."""
    T, B = x.shape[:2]
    first = sess.get_inputs()[1:]
    state = {i.name: np.zeros((B, *i.shape[1:]), np.float32) for i in first}
    assert [i.name for i in first] == [f"state_in_{n}" for n in state_names]
    active = np.arange(B)
    total = None
    logits, steps, preds = [], np.full(B, T), np.zeros(B, np.int64)
    for t in range(T):
        out = sess.run(None, {"x": x[t].numpy()[active], **state})
        lt = torch.from_numpy(out[0])
        state = {f"state_in_{n}": o for n, o in zip(state_names, out[1:], strict=True)}
        if rule is None:
            logits.append(lt)
            continue
        # the running sum in float64, rounded to float32 each step: what torch's CPU cumsum (hence
        # SimResult.cum_logits) does; then the float32 mean, as cumulative_mean divides
        total = lt.double() if total is None else total + lt.double()
        mean = total.float() / torch.tensor(float(t + 1))
        stop = rule.fires(mean[None])[0].numpy() | (t == T - 1)
        steps[active[stop]] = t + 1
        preds[active[stop]] = mean.argmax(-1).numpy()[stop]
        keep = ~stop
        active, total = active[keep], total[torch.from_numpy(keep)]
        state = {k: v[keep] for k, v in state.items()}
        if active.size == 0:
            break
    return torch.stack(logits) if rule is None else (torch.from_numpy(steps), torch.from_numpy(preds))


@pytest.mark.parametrize("arch", ["mlp", "cnn-small"])
def test_onnx_step_model_matches_the_simulator_and_its_exit_rule(arch, tmp_path):
    """The one-timestep file, run step by step in onnxruntime, gives the simulator's logits
    exactly (torch.equal: the dyadic test models make every sum exact, so kernel order cannot
    change a bit; with arbitrary weights expect float32 rounding, ~1e-6 relative), and a
    confidence exit applied to the running mean of its logits on the host exits every sample at
    the step, with the prediction, of the simulator's post-hoc evaluation."""
    from trt_nm.early_exit import ExitRule, confidence_score, evaluate_exit
    from trt_nm.nir.onnx_export import step_network, to_onnx_step

    T, B = 12, 6
    model = make_model(arch)
    path = to_onnx_step(model, tmp_path / "step.onnx", batch=1)  # traced with 1, run with 6
    step = step_network(model)
    assert step.state_names and all(n.endswith("_v") for n in step.state_names)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["x", *[f"state_in_{n}" for n in step.state_names]]
    assert [o.name for o in sess.get_outputs()] == ["logits", *[f"state_out_{n}" for n in step.state_names]]
    x = make_input(model, T=T, batch=B)
    sim = trt_nm.simulate(trt_nm.to_nir(model), x)
    logits = _run_step_file(sess, step.state_names, x)
    assert torch.equal(logits, sim.logits)
    with torch.no_grad():
        assert torch.equal(step.run(x), sim.logits)  # the Python API: the same step, in torch
    score = confidence_score(sim.cum_logits)  # [T, B]
    best = score.amax(0).sort().values  # each sample's highest confidence over t, sorted
    rule = ExitRule("confidence", float(best[B // 2 - 1] + best[B // 2]) / 2)  # half reach it, no tie
    post = evaluate_exit(rule, sim.cum_logits, torch.zeros(B, dtype=torch.int64))
    assert 1 < len(set(post.exit_steps.tolist()))  # some samples exit early, some later
    steps, preds = _run_step_file(sess, step.state_names, x, rule)
    assert torch.equal(steps, post.exit_steps)
    assert torch.equal(preds, sim.cum_logits[post.exit_steps - 1, torch.arange(B)].argmax(-1))


def test_export_step_cli(tmp_path, capsys):
    from trt_nm.cli.main import main
    from trt_nm.training.checkpoint import save_checkpoint

    model = make_model("mlp")
    ck = tmp_path / "ck.pt"
    save_checkpoint(ck, {"epoch": 1, "model": model.state_dict(), "model_spec": model.spec, "config": {}})
    out = tmp_path / "step.onnx"
    assert main(["export", str(ck), "--format", "onnx", "--step", "--out", str(out)]) == 0
    assert "one timestep" in capsys.readouterr().out
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    assert names[0] == "x" and all(n.startswith("state_in_") for n in names[1:]) and len(names) > 1
    outs = [o.name for o in sess.get_outputs()]
    assert outs == ["logits", *[n.replace("state_in_", "state_out_") for n in names[1:]]]


def test_time_loop_file_size_does_not_grow_with_T(tmp_path):
    model = make_model("mlp")
    small = trt_nm.to_onnx(model, tmp_path / "a.onnx", T=4).stat().st_size
    big = trt_nm.to_onnx(model, tmp_path / "b.onnx", T=100_000).stat().st_size
    assert abs(big - small) < 64
