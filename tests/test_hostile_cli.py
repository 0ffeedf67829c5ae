"""Hostile input to train / analyze / export / report: one line on stderr, exit 2, no traceback,
nothing written where it should not be (issue "Hostile input": items 2-4, 6b, 7, 9-12, 14, 16,
18a, 19-23).

Checkpoints are crafted from one tiny real run (mlp, T=1) with ``torch.save`` of dicts shaped
like the trainer's; commands run in-process through :func:`trt_nm.cli.main.main`.
"""

from __future__ import annotations

import copy
import os
import resource
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from trt_nm.cli.main import main
from trt_nm.config import TrainConfig
from trt_nm.errors import ConfigError
from trt_nm.limits import MAX_T, MAX_WORKERS
from trt_nm.models import build_model, list_models
from trt_nm.training.rundir import LOCK_NAME, RunLock

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--model", "mlp", "-T", "1", "--train-limit", "32", "--test-limit", "16", "--batch-size", "16",
        "--quiet", "--device", "cpu"]


@pytest.fixture(scope="module")
def base(zoo_checkpoint) -> Path:
    """last.pt of a real 1-epoch mlp run (T=1)."""
    return zoo_checkpoint


def craft(base: Path, path: Path, mutate) -> Path:
    data = copy.deepcopy(torch.load(base, weights_only=True))
    mutate(data)  # in place
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(data, path)
    return path


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """main(argv) in-process; argparse errors (SystemExit) count as their exit code. Warnings
    that would reach the user are turned into stderr text (pytest would hide them)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
    out, err = capsys.readouterr()
    err += "".join(f"{w.category.__name__}: {w.message}\n" for w in caught)
    return code, out, err


def assert_one_line(code, err, needle: str | None = None) -> str:
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    if needle is not None:
        assert needle.lower() in lines[0].lower(), lines[0]
    return lines[0]


def _set(path: str, value):
    """A mutation setting data[k1][k2]... = value (``path`` dotted)."""
    keys = path.split(".")

    def mutate(d):
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value

    return mutate


def _drop(key: str):
    return lambda d: d.pop(key)


# ---------------------------------------------------------------- 7, 12: argparse uses limits
@pytest.mark.parametrize(
    "argv,needle",
    [
        (["train", "-T", "1000000"], f"T must be in [1, {MAX_T}]"),
        (["train", "-T", "four"], "T must be an integer"),
        (["train", "--workers", "-1"], "workers must be in"),
        (["train", "--workers", str(10**6)], "workers must be in"),
        (["train", "--seed", "99999999999999999999"], "seed must be in"),
        (["train", "--batch-size", "0"], "batch size must be in"),
        (["train", "--epochs", str(10**9)], "epochs must be in"),
        (["analyze", "fisher", "x.pt", "--seed", "-3"], "seed must be in"),
        (["demo", "-T", "1000000"], "T must be in"),
        (["datasets", "-T", "0"], "T must be in"),
    ],
)
def test_cli_numbers_use_the_limits_validators(argv, needle, tmp_path, capsys):
    if argv[0] == "train":
        argv = [*argv, "--out", str(tmp_path / "o")]
    code, _, err = run_cli(argv, capsys)
    assert_one_line(code, err, needle)
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------- TrainConfig validates itself
@pytest.mark.parametrize(
    "kw,needle",
    [
        ({"T": 10**7}, "T must be in"),
        ({"T": "four"}, "T must be an integer"),
        ({"batch_size": "64"}, "batch size"),
        ({"num_workers": 10**6}, "workers"),
        ({"seed": 2**70}, "seed"),
        ({"epochs": -1}, "epochs"),
        ({"lr": float("nan")}, "lr"),
        ({"fisher_epochs": 5}, "fisher epochs"),
        ({"loss_kwargs": {"lamb": "x"}}, "lamb"),
        ({"device": "cuda; rm -rf"}, "device"),
        ({"data_root": 7}, "data_root"),
        ({"compile": "yes"}, "compile"),
    ],
)
def test_train_config_validates_every_field(kw, needle):
    with pytest.raises(ConfigError, match=None) as exc:
        TrainConfig(**kw)
    assert needle.lower() in str(exc.value).lower() and "\n" not in str(exc.value)


# ---------------------------------------------------------------- 9, 6b, 14: model specs
def _cifar_like(d):
    """A consistent mlp checkpoint for 3x32x32 input (so dataset=cifar10 fits the model)."""
    m = build_model("mlp", in_channels=3, input_size=(32, 32), T=1)
    d["model"] = m.state_dict()
    d["model_spec"] = m.spec


def _sparse(d):
    k = next(iter(d["model"]))
    d["model"][k] = d["model"][k].to_sparse()


SPECS = {
    "spec-string": _set("model_spec", "mlp"),
    "T-four": _set("model_spec.T", "four"),
    "T-huge": _set("model_spec.T", 10**7),
    "hidden-int": _set("model_spec.kwargs", {"hidden": 5}),
    "hidden-huge": _set("model_spec.kwargs", {"hidden": [40000, 40000]}),
    "hidden-budget": _set("model_spec.kwargs", {"hidden": [65536] * 100}),
    "classes-huge": _set("model_spec.num_classes", 10**9),
    "input-huge": _set("model_spec.input_size", [1e5, 1e5]),
    "input-shape-lie": _set("model_spec.input_shape", [3, 28, 28]),
    "arch-unknown": _set("model_spec.arch", "alexnet"),
    "arch-list": _set("model_spec.arch", ["mlp"]),
    "neuron-bad": _set("model_spec.neuron", {"beta": 7}),
    "neuron-keys": _set("model_spec.neuron", {"nonsense": 1}),
    "kwargs-unknown": _set("model_spec.kwargs", {"depth": 3}),
    "weights-shape": lambda d: d["model"].update({k: torch.zeros(3) for k in list(d["model"])[:1]}),
    "weights-sparse": _sparse,
    "model-not-dict": _set("model", [1, 2]),
}


@pytest.mark.parametrize("command", ["export", "report", "fisher", "resume"])
@pytest.mark.parametrize("case", sorted(SPECS))
def test_hostile_model_spec_is_one_line_everywhere(case, command, base, tmp_path, capsys):
    ckpt = craft(base, tmp_path / "c" / "last.pt", SPECS[case])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    argv = {
        "export": ["export", str(ckpt), "--out", str(tmp_path / "o" / "m.nir")],
        "report": ["report", str(ckpt), "--dataset", "mnist5k", "--out", str(tmp_path / "o")],
        "fisher": ["analyze", "fisher", str(ckpt), "--out", str(tmp_path / "o"), "--quiet"],
        "resume": ["train", "--resume", str(ckpt), "--out", str(tmp_path / "o"), "--quiet"],
    }[command]
    code, _, err = run_cli(argv, capsys)
    line = assert_one_line(code, err)
    assert "not a trt_nm checkpoint" not in line  # the reason, not a generic refusal
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
    assert grown < 2**30, f"allocated {grown / 2**30:.1f} GiB before refusing"  # 6b: refused by declared size
    assert not list((tmp_path / "o").glob("*.pt")) if (tmp_path / "o").exists() else True


# ---------------------------------------------------------------- 4, 7, 10, 18a: resume
RESUME = {
    "no-epoch": _drop("epoch"),
    "no-rng": _drop("rng"),
    "no-optimizer": _drop("optimizer"),
    "no-config": _drop("config"),
    "epoch-one": _set("epoch", "one"),
    "epoch-negative": _set("epoch", -5),
    "rng-string": _set("rng", "x"),
    "rng-torch-bad": _set("rng.torch", torch.zeros(3, dtype=torch.uint8)),
    "rng-python-bad": _set("rng.python.state", [2**40] * 625),
    "rng-numpy-bad": _set("rng.numpy.pos", 10**6),
    "config-T-four": _set("config.T", "four"),
    "config-T-huge": _set("config.T", 10**7),
    "config-batch-string": _set("config.batch_size", "64"),
    "config-list": _set("config", [1, 2, 3]),
    "config-workers": _set("config.num_workers", 10**6),
    "config-device": _set("config.device", "tpu:0"),
    "config-arch-other": _set("config.arch", "cnn-small"),
    "optimizer-list": _set("optimizer", [1]),
    "optimizer-shape": lambda d: d["optimizer"]["state"][0].update(exp_avg=torch.zeros(2)),
    "best-acc-string": _set("best_acc", "high"),
    "history-strings": _set("history", ["a"]),
    "history-too-long": lambda d: d.update(history=d["history"] * 5),
}


@pytest.mark.parametrize("case", sorted(RESUME))
def test_hostile_resume_is_one_line(case, base, tmp_path, capsys):
    ckpt = craft(base, tmp_path / "c" / "last.pt", RESUME[case])
    out = tmp_path / "o"
    code, stdout, err = run_cli(["train", "--resume", str(ckpt), "--out", str(out), "--epochs", "2"], capsys)
    line = assert_one_line(code, err)
    assert str(ckpt) in line and "not a trt_nm checkpoint" not in line
    assert "epoch 2/2" not in stdout and not (out / "last.pt").exists()
    if case == "config-workers":
        assert f"[0, {MAX_WORKERS}]" in err


# ---------------------------------------------------------------- 2: data paths not followed
def test_checkpoint_data_root_is_not_followed(base, tmp_path, capsys, monkeypatch):
    import trt_nm.cli.analyze as analyze_cli
    import trt_nm.training.trainer as trainer_mod

    secret = tmp_path / "secret"
    secret.mkdir()

    def mutate(d):
        _cifar_like(d)
        d["config"].update(dataset="cifar10", data_root=str(secret))

    ckpt = craft(base, tmp_path / "c" / "last.pt", mutate)
    roots = []

    def spy(name, root=None, *a, **k):
        roots.append((name, root))
        raise ConfigError("stopped by the test")

    monkeypatch.setattr(trainer_mod, "get_dataset", spy)
    monkeypatch.setattr(analyze_cli, "get_dataset", spy)
    for argv in (["train", "--resume", str(ckpt), "--out", str(tmp_path / "o"), "--epochs", "2"],
                 ["analyze", "fisher", str(ckpt), "--out", str(tmp_path / "a")]):
        assert_one_line(*run_cli(argv, capsys)[::2], "stopped by the test")
    other = tmp_path / "given"
    assert_one_line(*run_cli(["analyze", "fisher", str(ckpt), "--data-root", str(other),
                              "--out", str(tmp_path / "a")], capsys)[::2])
    assert roots == [("cifar10", None), ("cifar10", None), ("cifar10", str(other))]
    monkeypatch.undo()
    # without the spy: the dataset's own one-line "needs --data-root", never the stored DIR
    code, _, err = run_cli(["train", "--resume", str(ckpt), "--out", str(tmp_path / "o"), "--epochs", "2"], capsys)
    assert str(secret) not in assert_one_line(code, err, "--data-root")


# ---------------------------------------------------------------- 3: where resume writes
@pytest.mark.parametrize("with_out", [False, True])
def test_resume_writes_beside_the_checkpoint_or_to_out(with_out, base, tmp_path, capsys):
    elsewhere = tmp_path / "copied"
    stored = tmp_path / "stored-out-dir"
    ckpt = craft(base, elsewhere / "last.pt", _set("config.out_dir", str(stored)))
    out = tmp_path / "given"
    argv = ["train", "--resume", str(ckpt), "--epochs", "2", "--quiet"] + (["--out", str(out)] if with_out else [])
    code, stdout, err = run_cli(argv, capsys)
    assert code == 0, err
    target = out if with_out else elsewhere
    assert {"last.pt", "log.csv", "tb"} <= {p.name for p in target.iterdir()}  # best.pt: if it improved
    assert torch.load(target / "last.pt", weights_only=True)["epoch"] == 2
    assert not stored.exists()
    if with_out:
        assert not (elsewhere / "log.csv").exists()


# ---------------------------------------------------------------- 11: unwritable outputs first
@pytest.mark.parametrize("where", ["under-file", "proc"])
@pytest.mark.parametrize("command", ["train", "resume", "fisher", "sharpness"])
def test_unwritable_output_is_refused_before_work(where, command, base, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("keep")
    out = str(afile / "sub") if where == "under-file" else "/proc/trt_nm_test_x"
    argv = {
        "train": ["train", *TINY, "--epochs", "1", "--out", out],
        "resume": ["train", "--resume", str(base), "--epochs", "2", "--out", out],
        "fisher": ["analyze", "fisher", str(base), "--out", out],
        "sharpness": ["analyze", "sharpness", str(base), "--out", out],
    }[command]
    code, stdout, err = run_cli(argv, capsys)
    assert_one_line(code, err)
    assert "epoch 1/" not in stdout and "epoch 2/" not in stdout
    assert afile.read_text() == "keep"


# ---------------------------------------------------------------- 14: library warnings
def test_deserialisation_warnings_do_not_precede_the_error(base, tmp_path, capsys):
    ckpt = craft(base, tmp_path / "c" / "last.pt", _sparse)
    for argv in (["export", str(ckpt), "--out", str(tmp_path / "m.nir")],
                 ["train", "--resume", str(ckpt), "--out", str(tmp_path / "o")],
                 ["analyze", "fisher", str(ckpt), "--out", str(tmp_path / "a")]):
        code, _, err = run_cli(argv, capsys)
        assert_one_line(code, err, "dense")


# ---------------------------------------------------------------- 16: one run per directory
def test_a_locked_run_directory_is_refused_then_free_after_sigkill(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    with RunLock(out):
        code, stdout, err = run_cli(["train", *TINY, "--epochs", "1", "--out", str(out)], capsys)
        assert_one_line(code, err, "in use by another training")
        assert "epoch 1/" not in stdout and not (out / "last.pt").exists()
    # a holder killed with SIGKILL: the kernel releases its flock, the next run proceeds
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
         "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(120)", str(out / LOCK_NAME)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, _, err = run_cli(["train", *TINY, "--epochs", "1", "--out", str(out)], capsys)
        assert_one_line(code, err, "in use")
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        holder.stdout.close()
    code, _, err = run_cli(["train", *TINY, "--epochs", "1", "--out", str(out)], capsys)
    assert code == 0, err
    assert (out / "last.pt").is_file()


# ---------------------------------------------------------------- 19: say what is true
def test_diverged_first_epoch_says_no_checkpoint_was_written(tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run_cli(["train", *TINY, "--train-limit", "64", "--epochs", "1", "--lr", "1e30",
                            "--out", str(out)], capsys)
    line = assert_one_line(code, err, "no checkpoint was written")
    assert "last good checkpoint" not in line and not (out / "last.pt").exists()


def test_fisher_on_nan_weights_says_they_are_not_finite(base, tmp_path, capsys):
    def mutate(d):
        k = next(k for k, v in d["model"].items() if v.is_floating_point())
        d["model"][k] = torch.full_like(d["model"][k], float("nan"))

    ckpt = craft(base, tmp_path / "c" / "last.pt", mutate)
    code, _, err = run_cli(["analyze", "fisher", str(ckpt), "--out", str(tmp_path / "a")], capsys)
    line = assert_one_line(code, err, "not finite")
    assert "zero" not in line


def test_stale_temp_files_of_our_writes_are_removed_on_resume(base, tmp_path, capsys):
    run = tmp_path / "run"
    ckpt = craft(base, run / "last.pt", lambda d: None)
    stale = [run / ".last.pt.abc123_z.tmp", run / ".log.csv.q1w2e3r4.tmp"]
    foreign = [run / ".model.nir.abcdefgh.tmp", run / "notes.tmp", run / ".last.pt.tooshort.x.tmp"]
    for p in stale + foreign:
        p.write_bytes(b"x")
    code, stdout, err = run_cli(["train", "--resume", str(ckpt), "--epochs", "2", "--quiet"], capsys)
    assert code == 0, err
    assert "removed 2 stale temporary file(s)" in stdout
    assert not any(p.exists() for p in stale) and all(p.exists() for p in foreign)


# ---------------------------------------------------------------- 20: extending a run
def test_extending_a_run_replans_the_schedule_and_trains(tmp_path, capsys):
    run = tmp_path / "run"
    code, _, err = run_cli(["train", *TINY, "--epochs", "1", "--out", str(run)], capsys)
    assert code == 0, err
    w1 = torch.load(run / "last.pt", weights_only=True)["model"]
    code, stdout, err = run_cli(["train", "--resume", str(run / "last.pt"), "--epochs", "2", "--quiet"], capsys)
    assert code == 0, err
    line = next(s for s in stdout.splitlines() if "re-planned" in s)
    assert "over 2 epochs" in line and "planned 1" in line
    assert float(line.rsplit("lr ", 1)[1]) > 0
    w2 = torch.load(run / "last.pt", weights_only=True)["model"]
    changed = [k for k in w1 if w1[k].is_floating_point() and not torch.equal(w1[k], w2[k])]
    assert any(k.endswith("weight") for k in changed), "epoch 2 did not move the weights"


# ---------------------------------------------------------------- 21, 22, 23: texts and bars
def test_train_help_names_the_models_and_no_missing_command(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split()).replace("- ", "-")  # argparse wraps at hyphens
    assert "trt-nm models" not in text
    assert all(m in text for m in list_models())


def test_analysis_progress_bars_on_request_and_quiet_in_logs(base, tmp_path, capsys):
    from trt_nm.analysis.fisher import fisher_trace_per_timestep
    from trt_nm.analysis.sharpness import analyze_sharpness
    from trt_nm.losses import Loss
    from trt_nm.training.checkpoint import load_model

    model = load_model(base)
    batches = [(torch.rand(4, 1, 1, 28, 28), torch.randint(0, 10, (4,))) for _ in range(2)]
    fisher_trace_per_timestep(model, batches, max_batches=2, progress=True)
    analyze_sharpness(model, batches, Loss("sdt"), iters=2, points=3, grid=0, progress=True)
    err = capsys.readouterr().err
    assert "fisher" in err and "sharpness" in err
    # the CLI decides like training: stderr is not a terminal here, so nothing but results
    code, out, err = run_cli(["analyze", "fisher", str(base), "--dataset", "mnist5k", "--batches", "1",
                              "--batch-size", "8", "--out", str(tmp_path / "a")], capsys)
    assert code == 0 and err == "" and "information centroid" in out


def test_readme_export_examples_write_under_runs():
    lines = [ln for ln in (ROOT / "README.md").read_text().splitlines() if ln.startswith("trt-nm export") and "--out" in ln]
    assert lines
    for ln in lines:
        assert ln.split("--out", 1)[1].split()[0].startswith("runs/"), ln
