"""Trainer, checkpoints, resume after SIGKILL, and the CLI's bad-input contract."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from trt_nm.config import TrainConfig
from trt_nm.datasets import get_dataset
from trt_nm.errors import CheckpointError, TrainingDiverged
from trt_nm.training.checkpoint import load_checkpoint, load_model
from trt_nm.training.trainer import Trainer, evaluate

SMALL = ["--train-limit", "256", "--test-limit", "128", "--batch-size", "32", "-T", "2", "--quiet"]


def small_cfg(tmp_path: Path, **kw) -> TrainConfig:
    base = dict(
        arch="cnn-small", epochs=2, T=2, batch_size=32, train_limit=256, test_limit=128,
        device="cpu", out_dir=str(tmp_path / "run"),
    )
    base.update(kw)
    return TrainConfig(**base)


def test_fit_writes_checkpoints_and_log(tmp_path):
    result = Trainer(small_cfg(tmp_path), progress=False, log=lambda *_: None).fit()
    run = tmp_path / "run"
    assert {"last.pt", "best.pt", "log.csv"} <= {p.name for p in run.iterdir()}
    data = load_checkpoint(run / "last.pt")
    assert data["epoch"] == 2 and data["config"]["arch"] == "cnn-small"
    lines = (run / "log.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,train_loss") and "test_acc_t2" in lines[0] and len(lines) == 3
    assert len(result.final_acc_per_t) == 2
    assert not list(run.glob(".*.tmp"))  # no temp files left behind


def test_resume_is_exact(tmp_path):
    import shutil

    class KeepEpoch1:
        def on_train_start(self, trainer):
            pass

        def on_epoch_end(self, trainer, epoch, row):
            if epoch == 2:  # last.pt still holds epoch 1 here
                shutil.copy(trainer.out_dir / "last.pt", tmp_path / "epoch1.pt")

    straight = Trainer(small_cfg(tmp_path / "a"), progress=False, log=lambda *_: None, callbacks=[KeepEpoch1()])
    straight.fit()
    resumed = Trainer(small_cfg(tmp_path / "b"), progress=False, log=lambda *_: None)
    resumed.fit(resume=tmp_path / "epoch1.pt")
    for (n, p), (_, q) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items()):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=n)
    assert [r["test_acc"] for r in straight.history] == [r["test_acc"] for r in resumed.history]


class NaNAfter(Dataset):
    """Wraps a dataset and returns NaN inputs from sample index ``start`` on."""

    def __init__(self, base, start):
        self.base, self.start, self.info = base, start, base.info

    def __len__(self):
        return 96

    def __getitem__(self, i):
        x, y = self.base[i]
        return (x * float("nan") if self.poisoned else x), y

    poisoned = False


def test_nan_loss_stops_with_epoch_and_step_and_keeps_last_good(tmp_path):
    base = get_dataset("mnist5k", split="train", T=2)
    ds = NaNAfter(base, 0)
    test = get_dataset("mnist5k", split="test", T=2)
    cfg = small_cfg(tmp_path, epochs=3, test_limit=None)

    class Poison:
        def on_train_start(self, trainer):
            pass

        def on_epoch_end(self, trainer, epoch, row):
            ds.poisoned = epoch >= 1

    trainer = Trainer(cfg, train_set=ds, test_set=torch.utils.data.Subset(test, range(64)),
                      progress=False, log=lambda *_: None, callbacks=[Poison()])
    with pytest.raises(TrainingDiverged, match=r"at epoch 2 step \d+"):
        trainer.fit()
    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 1


def test_state_dict_moves_between_backends_with_the_same_accuracy(tmp_path):
    cfg = small_cfg(tmp_path, backend="snntorch", epochs=1, train_limit=1024)
    Trainer(cfg, progress=False, log=lambda *_: None).fit()
    test = torch.utils.data.Subset(get_dataset("mnist5k", split="test", T=2), range(128))
    loader = torch.utils.data.DataLoader(test, batch_size=64)
    accs = {}
    for backend in ("snntorch", "norse", "torch"):
        model = load_model(tmp_path / "run" / "best.pt", backend=backend)
        accs[backend] = evaluate(model, loader, torch.device("cpu"))["acc_per_t"]
    assert accs["snntorch"] == accs["norse"] == accs["torch"]
    assert accs["snntorch"][-1] > 50.0


def test_corrupt_and_foreign_checkpoints_are_one_line_errors(tmp_path, cli):
    Trainer(small_cfg(tmp_path, epochs=1), progress=False, log=lambda *_: None).fit()
    good = tmp_path / "run" / "last.pt"
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    for bad in (truncated, foreign, text, tmp_path / "missing.pt"):
        with pytest.raises(CheckpointError):
            load_checkpoint(bad)
        r = cli("train", "--resume", str(bad), "--out", str(tmp_path / "r2"))
        assert r.returncode == 2, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
        assert str(bad.name) in r.stderr
    assert good.read_bytes()  # nothing destroyed


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--model", "alexnet"], "valid models"),
        (["--backend", "jax"], "valid backends"),
        (["--loss", "focal"], "valid losses"),
        (["-T", "0"], "T must be"),
        (["--lamb", "-1"], "must be >= 0"),
        (["--eta", "2"], "eta"),
        (["--dataset", "imagenet"], "valid datasets"),
        (["--device", "cuda:0"] if not torch.cuda.is_available() else ["--amp", "xx"], "cuda" if not torch.cuda.is_available() else "amp"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(args, needle, cli, tmp_path):
    r = cli("train", "--out", str(tmp_path / "x"), *SMALL, *args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle.lower() in lines[0].lower(), r.stderr


def test_output_dir_that_is_a_file_is_refused(cli, tmp_path):
    f = tmp_path / "file"
    f.write_text("keep me")
    r = cli("train", "--out", str(f), *SMALL, "--epochs", "1")
    assert r.returncode == 2 and "file" in r.stderr and f.read_text() == "keep me"


def test_sigkill_mid_run_then_resume(tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "trt_nm", "train", "--out", str(out), "--epochs", "3",
           "--train-limit", "640", "--test-limit", "64", "-T", "2", "--batch-size", "32", "--quiet", "--device", "cpu"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    try:
        while not (out / "last.pt").exists() and time.time() < deadline:
            time.sleep(0.05)
        assert (out / "last.pt").exists(), "first epoch never finished"
        time.sleep(0.2)  # now somewhere inside epoch 2
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    epoch_before = load_checkpoint(out / "last.pt")["epoch"]
    assert 1 <= epoch_before < 3
    r = subprocess.run([sys.executable, "-m", "trt_nm", "train", "--resume", str(out / "last.pt"), "--quiet"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"resumed from {out / 'last.pt'} at epoch {epoch_before}" in r.stdout
    best = load_checkpoint(out / "best.pt")
    last = load_checkpoint(out / "last.pt")
    assert last["epoch"] == 3 and len(last["history"]) == 3
    assert 1 <= best["epoch"] <= 3
    load_model(out / "best.pt")  # a valid, loadable model


def test_run_directory_is_locked_during_fit_and_released_after(tmp_path):
    from trt_nm.errors import ConfigError
    from trt_nm.training.rundir import RunLock

    seen = []

    class TryLock:
        def on_train_start(self, trainer):
            with pytest.raises(ConfigError, match="in use by another training"):
                RunLock(trainer.out_dir).acquire()
            seen.append(True)

        def on_epoch_end(self, trainer, epoch, row):
            raise ConfigError("stop here")  # the lock must be released on errors too

    cfg = small_cfg(tmp_path, arch="mlp", epochs=1, T=1, train_limit=32, test_limit=16)
    with pytest.raises(ConfigError, match="stop here"):
        Trainer(cfg, progress=False, log=lambda *_: None, callbacks=[TryLock()]).fit()
    assert seen == [True]
    with RunLock(tmp_path / "run"):
        pass  # free again
