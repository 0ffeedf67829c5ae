"""Conformance of trt_nm's Speck/Xylo files with the vendors' own simulators.

    /tmp/venv/bin/python bench/target_conformance.py [--venvs /tmp/trt_nm_targets]

sinabs 3.1.3 and rockpool 3.1.0 pin nir <= 1.0.4, so they cannot share trt_nm's venv (nir
1.0.8). This script builds one throw-away venv per vendor under ``--venvs`` (torch from a local
wheel when one is given with ``--torch-wheel``, else from PyPI), exports a small model with
trt_nm's Speck / Xylo exporters (nir 1.0.4 schema), loads the file with the vendor's own NIR
importer in a subprocess, runs it on the same inputs, and compares its output spikes/values
with trt_nm's simulator on the exported graph. Prints one line per vendor.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import torch

VENDORS = {
    "sinabs": ["sinabs==3.1.3", "h5py"],
    "rockpool": ["rockpool==3.1.0", "nir==1.0.4", "nirtorch<=1.0", "h5py"],
}

# Each runner loads the file with the vendor's own NIR importer, runs it twice and saves every
# node's output (nirtorch's per-node cache) as "<mode>/<node>" arrays in [T, B, ...] layout:
#   as_imported  - the network exactly as the importer builds it;
#   single_spike - the same network with the vendor's multi-spike output (and, for sinabs, the
#                  IAF lower clamp v >= -threshold) switched off;
#   strict       - (sinabs only) additionally spike on v > threshold instead of v >= threshold,
#                  trt_nm's tie rule (8-bit weights and integer thresholds make exact ties).
# The difference between the two isolates what the vendor's neuron does differently.
RUNNER = {
    "sinabs": textwrap.dedent("""
        import sys, numpy as np, torch, nir, sinabs, sinabs.layers as sl
        from sinabs.activation import SingleSpike
        path, xin, out = sys.argv[1:4]
        x = torch.from_numpy(np.load(xin))          # [T, B, ...]
        T, B = x.shape[:2]
        class StrictSpike(SingleSpike):
            @staticmethod
            def forward(ctx, v_mem, spike_threshold, surrogate_grad_fn):
                return (v_mem - spike_threshold > 0).float()
        res = {}
        for mode in ("as_imported", "single_spike", "strict"):
            net = sinabs.from_nir(nir.read(path), batch_size=B)
            if mode != "as_imported":
                for m in net.modules():
                    if isinstance(m, sl.IAF):
                        m.spike_fn = SingleSpike if mode == "single_spike" else StrictSpike
                        m.min_v_mem = None
            y, state = net(x.transpose(0, 1).reshape(B * T, *x.shape[2:]))   # [B*T, ...]
            for name, v in state.cache.items():
                v = v.detach().reshape(B, T, *v.shape[1:]).transpose(0, 1)
                res[f"{mode}/{name}"] = v.numpy()
        np.savez(out, **res)
    """),
    "rockpool": textwrap.dedent("""
        import sys, numpy as np, torch, nir
        from rockpool.nn.modules.torch import LIFTorch
        from rockpool.nn.modules.torch.nir import from_nir
        path, xin, out = sys.argv[1:4]
        x = torch.from_numpy(np.load(xin))          # [T, B, F]
        res = {}
        for mode in ("as_imported", "single_spike"):
            net = from_nir(nir.read(path))
            if mode == "single_spike":
                for m in net.modules():
                    if isinstance(m, LIFTorch):
                        m.max_spikes_per_dt = torch.tensor(1.0)
            y, state = net(x.transpose(0, 1))       # rockpool: [B, T, F]
            for name, v in state.cache.items():
                res[f"{mode}/{name}"] = v.detach().transpose(0, 1).numpy()
        np.savez(out, **res)
    """),
}


def build_venv(root: Path, vendor: str, torch_wheel: str | None) -> Path:
    py = root / vendor / "bin" / "python"
    if py.exists():
        return py
    subprocess.run(["python3", "-m", "venv", str(root / vendor)], check=True)
    pip = [str(py), "-m", "pip", "install", "-q"]
    subprocess.run(pip + [torch_wheel or "torch"], check=True)
    subprocess.run(pip + VENDORS[vendor], check=True)
    return py


def _scale_weights(model, gain: float) -> None:
    """Multiply every Conv/Linear weight by ``gain`` so that deep layers of an untrained model
    spike (Kaiming-initialised weights with identity BatchNorm leave layers 2+ nearly silent)."""
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)):
                mod.weight.mul_(gain)


def speck_model(gain: float):
    from trt_nm.config import NeuronConfig
    from trt_nm.models import build_model
    from trt_nm.nir.io import to_nir

    torch.manual_seed(0)
    m = build_model("cnn-small", num_classes=8, in_channels=2, T=8, input_size=(8, 8),
                    neuron=NeuronConfig(reset="subtract")).eval()
    _scale_weights(m, gain)
    graph = to_nir(m, reset_mode="metadata")
    return graph, (torch.rand(8, 4, 2, 8, 8) < 0.3).float()


def xylo_model(gain: float):
    from trt_nm.config import NeuronConfig
    from trt_nm.models import build_model
    from trt_nm.nir.io import to_nir

    torch.manual_seed(0)
    m = build_model("mlp", num_classes=8, in_channels=1, T=8, input_size=(4, 4), hidden=(64, 32),
                    neuron=NeuronConfig(reset="subtract")).eval()
    _scale_weights(m, gain)
    graph = to_nir(m, reset_mode="metadata")
    return graph, (torch.rand(8, 4, 16) < 0.3).float()


def compare(sim, theirs: dict, mode: str) -> dict:
    """Per spiking layer: spikes (ours/theirs), fraction of equal neuron-steps, and the output."""
    layers = {}
    for name, ours in sim.spike_trains.items():
        key = f"{mode}/{name}"
        if key not in theirs:
            layers[name] = "missing in vendor run"
            continue
        o, t = ours.numpy(), theirs[key].reshape(ours.shape)
        layers[name] = {
            "spikes_ours": int(o.sum()), "spikes_vendor": int(t.sum()),
            "neuron_steps": int(o.size), "agreement": round(float(np.mean(o == t)), 6),
            "multi_spike_steps": int((t > 1).sum()),
        }
    ours = sim.logits.numpy()
    out = theirs[f"{mode}/output"].reshape(ours.shape)
    return {
        "layers": layers,
        "output_agreement": round(float(np.mean(np.isclose(ours, out, atol=1e-4))), 6),
        "argmax_agreement": round(float(np.mean(ours.argmax(-1) == out.argmax(-1))), 6),
        "max_abs_diff": float(np.abs(ours - out).max()),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--venvs", default="/tmp/trt_nm_targets")
    ap.add_argument("--torch-wheel", default=None)
    ap.add_argument("--speck-gain", type=float, default=3.0, help="weight gain so every layer spikes")
    ap.add_argument("--xylo-gain", type=float, default=3.0, help="weight gain so every layer spikes")
    ap.add_argument("--only", nargs="*", choices=["sinabs", "rockpool"])
    args = ap.parse_args()
    from trt_nm.exporters import get_exporter
    from trt_nm.sim.engine import simulate

    cases = {
        "sinabs": ("speck", lambda: speck_model(args.speck_gain), ["avgpool-to-sumpool", "leak-to-iaf"]),
        "rockpool": ("xylo", lambda: xylo_model(args.xylo_gain), []),
    }
    work = Path(tempfile.mkdtemp(prefix="trt_nm_conf_"))
    for vendor in args.only or list(cases):
        target, make, convert = cases[vendor]
        graph, x = make()
        res = get_exporter(target).export(graph, work / f"{target}.nir", convert=convert)
        sim = simulate(res.graph, x, record=True)
        np.save(work / "x.npy", x.numpy())
        (work / f"run_{vendor}.py").write_text(RUNNER[vendor])
        py = build_venv(Path(args.venvs), vendor, args.torch_wheel)
        out = work / f"y_{vendor}.npz"
        proc = subprocess.run([str(py), str(work / f"run_{vendor}.py"), str(res.paths[0]), str(work / "x.npy"),
                               str(out)], capture_output=True, text=True)
        if proc.returncode != 0:
            err = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()][-1:]
            result = {"target": target, "loaded": False, "error": err[0] if err else "?"}
        else:
            theirs = dict(np.load(out))
            result = {"target": target, "loaded": True, "input": list(x.shape),
                      **{mode: compare(sim, theirs, mode) for mode in ("as_imported", "single_spike", "strict")
                         if f"{mode}/output" in theirs}}
        print(f"{vendor} ({target}): {json.dumps(result, indent=1)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
