"""``trt-nm deploy`` and ``trt-nm train --target`` on bad input: one line on stderr, exit 2
(or 3 for a design-rule violation), nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli


@pytest.fixture(scope="module")
def zoo(zoo_checkpoint) -> Path:
    """A checkpoint trained WITHOUT --target (the paper's neuron)."""
    return zoo_checkpoint


def _one_line(proc, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.mark.parametrize("target,what", [
    ("speck", "Speck runs IF only"),
    ("xylo", "Xylo needs bit-shift decays"),
    ("loihi2", "Loihi 2 runs 24-bit fixed-point"),
])
def test_zoo_checkpoint_is_refused_naming_what_differs(zoo, tmp_path, target, what):
    proc = run_cli("deploy", str(zoo), "--target", target, "--out", str(tmp_path / "d"))
    _one_line(proc, "trained without --target", what, f"retrain with `trt-nm train --target {target}`")
    assert not (tmp_path / "d" / "expected.npz").exists()


def test_unknown_target_and_missing_checkpoint(zoo, tmp_path):
    _one_line(run_cli("deploy", str(zoo), "--target", "nosuchchip", "--out", str(tmp_path)), "nosuchchip")
    _one_line(run_cli("deploy", str(tmp_path / "none.pt"), "--target", "xylo", "--out", str(tmp_path)),
              "checkpoint not found")
    garbage = tmp_path / "g.pt"
    garbage.write_bytes(b"\x00not a checkpoint" * 10)
    _one_line(run_cli("deploy", str(garbage), "--target", "xylo", "--out", str(tmp_path / "o")))


@pytest.mark.parametrize("flags,needle", [
    (["--tau", "3"], "--tau does not apply with --target xylo"),
    (["--model", "mlp"], "--model does not apply"),
    (["--backend", "norse"], "--backend does not apply"),
    (["--resume", "x.pt"], "--resume does not apply"),
    (["--device", "cuda"], "runs on the CPU"),
    (["--hidden", "0"], "widths must be"),
])
def test_train_target_refuses_flags_the_chip_fixes(flags, needle, tmp_path):
    _one_line(run_cli("train", "--target", "xylo", "--out", str(tmp_path), *flags), needle)


def test_train_unknown_target(tmp_path):
    _one_line(run_cli("train", "--target", "truenorth2", "--out", str(tmp_path)), "truenorth2")


def test_hidden_without_target_is_refused(tmp_path):
    _one_line(run_cli("train", "--hidden", "64", "--out", str(tmp_path)), "--hidden applies only with --target")


def test_explicit_T_and_widths_reach_the_chip_run(tmp_path):
    """-T equal to the zoo default (4) is still the user's choice, not the chip task's 8."""
    from trt_nm.chip.train import read_checkpoint

    proc = run_cli("train", "--target", "loihi2", "-T", "4", "--hidden", "16", "--epochs", "1",
                   "--train-limit", "64", "--test-limit", "32", "--quiet", "--out", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    data = read_checkpoint(tmp_path / "r" / "last.pt")
    assert data["task_obj"].T == 4 and data["build"]["hidden"] == [16]


def test_zoo_commands_point_a_chip_checkpoint_to_deploy(tmp_path):
    proc = run_cli("train", "--target", "loihi2", "-T", "2", "--hidden", "8", "--epochs", "1",
                   "--train-limit", "32", "--test-limit", "16", "--quiet", "--out", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    ckpt = str(tmp_path / "r" / "last.pt")
    _one_line(run_cli("export", ckpt, "--format", "nir", "--out", str(tmp_path / "m.nir")),
              "trt-nm train --target loihi2", "trt-nm deploy")
    proc = run_cli("simulate", ckpt, "--limit", "16")
    assert proc.returncode == 0 and "chip-exact integer simulation" in proc.stdout, proc.stderr
