"""The shared chip flow (hardware-aware training, deploy, --verify in a cached venv) on a toy
chip: dense integer IF neurons whose "vendor simulator" is an independent numpy script run in
a throw-away venv. The real chips (xylo, loihi2, speck) have their own test files."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from trt_nm.chip import get_chip, register_chip
from trt_nm.chip.base import LAYER_PREFIX, Chip, ChipNet, ChipTask, VendorRecipe
from trt_nm.chip.deploy import compare, deploy, verify
from trt_nm.chip.registry import _REGISTRY
from trt_nm.chip.train import ChipTrainConfig, read_checkpoint, train_chip
from trt_nm.chip.vendor import VendorError, recipe_key, vendor_records
from trt_nm.errors import CheckpointError, ConfigError

THR = 64
RUNNER = textwrap.dedent('''
    import json, sys
    import numpy as np
    if sys.argv[1] == "map":
        sys.exit(0)
    d, res = sys.argv[1], sys.argv[2]
    net = np.load(d + "/toy.npz", allow_pickle=False)
    x = np.load(d + "/expected.npz", allow_pickle=False)["x"]
    T, B = x.shape[:2]
    h = x.reshape(T, B, -1)
    recs = {}
    for i in range(int(net["layers"])):
        w, thr = net[f"w{i}"], int(net[f"thr{i}"])
        v = np.zeros((B, w.shape[0]), np.int64)
        outs = []
        for t in range(T):
            v = v + h[t] @ w.T
            s = (v >= thr).astype(np.int64)
            v = v - s * thr
            outs.append(s)
        h = np.stack(outs)
        recs["out" if i == int(net["layers"]) - 1 else f"layer:h{i}"] = h
    recs["versions"] = np.array(json.dumps({"numpy": np.__version__}))
    np.savez(res, **recs)
''')


class _Spike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h):
        ctx.save_for_backward(h)
        return (h >= 0).to(h.dtype)

    @staticmethod
    def backward(ctx, g):
        (h,) = ctx.saved_tensors
        return g * torch.clamp(1 - h.abs() / THR, min=0) / THR


def _q(w: torch.Tensor) -> torch.Tensor:
    """8-bit integer grid with a straight-through gradient (scale 64 per unit)."""
    q = torch.clamp(torch.round(w * 64), -127, 127)
    return w * 64 + (q - w * 64).detach()


class ToyNet(nn.Module):
    def __init__(self, sizes):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in zip(sizes, sizes[1:]))

    def forward(self, x):
        T, B = x.shape[:2]
        h = x.reshape(T, B, -1)
        for lin in self.layers:
            w = _q(lin.weight)
            v = torch.zeros(B, w.shape[0])
            outs = []
            for t in range(T):
                v = v + h[t] @ w.T
                s = _Spike.apply(v - THR)
                v = v - s * THR
                outs.append(s)
            h = torch.stack(outs)
        return h * 4.0


class ToyChip(Chip):
    name = "toy"
    task = ChipTask("mnist5k", 4, classes=(0, 1, 2), hidden=(16,), why="test")
    readout = "spike counts"

    def __init__(self, runner: Path, root: Path):
        self.vendor = VendorRecipe(packages="numpy (toy vendor)", pip=(("numpy",),),
                                   runner=str(runner), torch=None)

    def encode(self, x):
        return (x[:, :, :, ::7, ::7] * 4).round().to(torch.int64)  # [T, B, 1, 4, 4], 0..4

    def input_range(self):
        return 0, 4

    def build(self, in_shape, n_classes, hidden, seed=0):
        torch.manual_seed(seed)
        return ToyNet([int(np.prod(in_shape)), *hidden, n_classes])

    def check_model(self, model, in_shape):
        return [] if int(np.prod(in_shape)) <= 16 else ["more than 16 inputs"]

    def integerize(self, model):
        arrays = {f"w{i}": torch.clamp(torch.round(lin.weight * 64), -127, 127).to(torch.int64).numpy()
                  for i, lin in enumerate(model.layers)}
        return ChipNet("toy", arrays, {"layers": len(model.layers)})

    def simulate(self, net, x):
        T, B = x.shape[:2]
        h = torch.from_numpy(x).reshape(T, B, -1)
        recs = {}
        n = net.meta["layers"]
        for i in range(n):
            w = torch.from_numpy(net.arrays[f"w{i}"])
            v = torch.zeros(B, w.shape[0], dtype=torch.int64)
            outs = []
            for t in range(T):
                v = v + h[t] @ w.T
                s = (v >= THR).to(torch.int64)
                v = v - s * THR
                outs.append(s)
            h = torch.stack(outs)
            recs["out" if i == n - 1 else f"{LAYER_PREFIX}h{i}"] = h.numpy()
        return recs

    def write(self, net, out_dir):
        np.savez(out_dir / "toy.npz", layers=net.meta["layers"],
                 **{k: v for k, v in net.arrays.items()},
                 **{f"thr{i}": THR for i in range(net.meta["layers"])})
        return {"toy.npz": "numpy.load"}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    runner = root / "toy_runner.py"
    runner.write_text(RUNNER)
    chip = ToyChip(runner, root)
    register_chip(chip)
    yield chip
    _REGISTRY.pop("toy")  # other test modules see only the real chips


@pytest.fixture(scope="module")
def trained(toy, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cfg = ChipTrainConfig(target="toy", task=toy.task, epochs=1, train_limit=300, test_limit=96,
                          out_dir=str(out))
    payload = train_chip(cfg, log=lambda *a: None)
    return out / "last.pt", payload


def test_train_saves_a_weights_only_chip_checkpoint(trained):
    path, payload = trained
    data = read_checkpoint(path)
    assert data["chip"] == "toy" and data["test_acc"] == payload["test_acc"]
    assert 0.0 <= payload["test_acc"] <= 100.0 and payload["history"][0]["epoch"] == 1
    log = (path.parent / "log.csv").read_text().splitlines()
    assert log[0] == "epoch,loss,val_chip_acc,seconds" and log[1].startswith("1,")


def test_tampered_chip_checkpoint_is_one_line(trained, tmp_path):
    path, _ = trained
    data = torch.load(path, weights_only=True)
    data["build"]["hidden"] = [10**9]
    bad = tmp_path / "bad.pt"
    torch.save(data, bad)
    with pytest.raises(CheckpointError, match="hidden width"):
        read_checkpoint(bad)
    data["build"]["hidden"] = [17]
    torch.save(data, bad)
    with pytest.raises(CheckpointError, match="does not have shape"):
        read_checkpoint(bad)


def test_deploy_and_verify_agree(trained, tmp_path, monkeypatch):
    monkeypatch.setenv("TRT_NM_VENDOR_DIR", str(tmp_path / "vendor"))
    dep = deploy(trained[0], "toy", tmp_path / "d", samples=70)
    man = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert man["target"] == "toy" and man["samples"] == 70 and man["x_shape"] == [4, 70, 1, 4, 4]
    with np.load(tmp_path / "d" / "expected.npz", allow_pickle=False) as z:
        assert set(z.files) == {"x", "out", "y", "layer:h0"}
        assert z["out"].shape == (4, 70, 3)
    assert verify(dep, log=lambda *a: None)
    assert json.loads((tmp_path / "d" / "verify.json").read_text())["agree"]
    # cached: a second call reuses the venv (same recipe hash)
    assert (tmp_path / "vendor" / f"toy-{recipe_key(get_chip('toy').vendor)}" / ".ready").is_file()
    vendor_records(get_chip("toy"), tmp_path / "d")


def test_compare_reports_a_single_flipped_spike():
    a = {"out": np.zeros((3, 2, 4), np.int64), "layer:h": np.ones((3, 2, 5), np.int64)}
    b = {k: v.copy() for k, v in a.items()}
    b["layer:h"][1, 1, 2] = 0
    rows = {r.name: r for r in compare(a, b)}
    assert rows["out"].exact and not rows["layer:h"].exact and rows["layer:h"].equal == 29


def test_inputs_file_is_checked(trained, tmp_path):
    good = np.zeros((4, 5, 1, 4, 4), np.int64)
    for bad, msg in [
        (good[:3], "shape"),
        (good + 9, r"takes \[0, 4\]"),
        (good.astype(np.float64) + 0.5, "integers"),
    ]:
        np.savez(tmp_path / "i.npz", x=bad)
        with pytest.raises(ConfigError, match=msg):
            deploy(trained[0], "toy", tmp_path / "o", inputs=tmp_path / "i.npz")
    np.savez(tmp_path / "i.npz", x=good, y=np.zeros(5, np.int64))
    dep = deploy(trained[0], "toy", tmp_path / "o", inputs=tmp_path / "i.npz")
    assert dep.records["out"].shape == (4, 5, 3) and dep.accuracy is not None


def test_a_toolchain_that_cannot_be_built_is_one_line(toy, tmp_path, monkeypatch):
    monkeypatch.setenv("TRT_NM_VENDOR_DIR", str(tmp_path / "v"))
    broken = ToyChip(Path("/nonexistent_runner.py"), tmp_path)
    broken.name = "toy-broken"
    broken.vendor = VendorRecipe(packages="nosuchpkg-trt-nm 9.9", pip=(("nosuchpkg-trt-nm==9.9",),),
                                 runner="x.py", torch=None)
    with pytest.raises(VendorError, match="could not build nosuchpkg-trt-nm 9.9"):
        vendor_records(broken, tmp_path)


def test_chip_summary_is_the_exact_simulation(trained):
    from trt_nm.chip.evaluate import chip_summary, summary_lines

    data = read_checkpoint(trained[0])
    s = chip_summary(data, limit=96)
    assert s["samples"] == 96 and abs(s["accuracy"] - trained[1]["test_acc"]) < 1e-9
    assert len(s["accuracy_per_step"]) == 4 and s["accuracy_per_step"][-1] == s["accuracy"]
    assert s["energy_j"] is None and "toy" in summary_lines(s)[0]
