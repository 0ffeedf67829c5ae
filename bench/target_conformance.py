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

RUNNER = {
    "sinabs": textwrap.dedent("""
        import json, sys, numpy as np, torch, nir, sinabs
        path, xin, out = sys.argv[1:4]
        x = torch.from_numpy(np.load(xin))          # [T, B, ...]
        T, B = x.shape[:2]
        g = nir.read(path)
        net = sinabs.from_nir(g, batch_size=B)
        ys = net(x.transpose(0, 1).reshape(B * T, *x.shape[2:]))   # sinabs: [B*T, ...]
        ys = ys[0] if isinstance(ys, tuple) else ys                 # nirtorch: (out, state)
        y = ys.reshape(B, T, -1).transpose(0, 1).detach().numpy()
        np.save(out, y)
    """),
    "rockpool": textwrap.dedent("""
        import json, sys, numpy as np, torch, nir
        from rockpool.nn.modules.torch.nir import from_nir
        path, xin, out = sys.argv[1:4]
        x = torch.from_numpy(np.load(xin))          # [T, B, F]
        net = from_nir(nir.read(path))
        y, _, _ = net(x.transpose(0, 1))            # rockpool: [B, T, F]
        np.save(out, y.transpose(0, 1).detach().numpy())
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


def speck_model():
    from trt_nm.models import build_model
    from trt_nm.nir_io import to_nir

    torch.manual_seed(0)
    m = build_model("cnn-small", num_classes=8, in_channels=2, T=8, input_size=(8, 8)).eval()
    graph = to_nir(m)
    return graph, (torch.rand(8, 4, 2, 8, 8) < 0.3).float()


def xylo_model():
    from trt_nm.config import NeuronConfig
    from trt_nm.models import build_model
    from trt_nm.nir_io import to_nir

    torch.manual_seed(0)
    m = build_model("mlp", num_classes=8, in_channels=1, T=8, input_size=(4, 4), hidden=(64,),
                    neuron=NeuronConfig(reset="subtract")).eval()
    graph = to_nir(m, reset_mode="metadata")
    return graph, (torch.rand(8, 4, 16) < 0.3).float()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--venvs", default="/tmp/trt_nm_targets")
    ap.add_argument("--torch-wheel", default=None)
    args = ap.parse_args()
    from trt_nm.exporters import get_exporter
    from trt_nm.simulate import simulate

    cases = {
        "sinabs": ("speck", speck_model, ["avgpool-to-sumpool", "leak-to-iaf"]),
        "rockpool": ("xylo", xylo_model, []),
    }
    results = {}
    work = Path(tempfile.mkdtemp(prefix="trt_nm_conf_"))
    for vendor, (target, make, convert) in cases.items():
        graph, x = make()
        res = get_exporter(target).export(graph, work / f"{target}.nir", convert=convert)
        ours = simulate(res.graph, x).logits.numpy()
        np.save(work / "x.npy", x.numpy())
        (work / f"run_{vendor}.py").write_text(RUNNER[vendor])
        py = build_venv(Path(args.venvs), vendor, args.torch_wheel)
        proc = subprocess.run([str(py), str(work / f"run_{vendor}.py"), str(res.paths[0]), str(work / "x.npy"),
                               str(work / f"y_{vendor}.npy")], capture_output=True, text=True)
        if proc.returncode != 0:
            err = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()][-1:]
            results[vendor] = {"target": target, "loaded": False, "error": err[0] if err else "?"}
        else:
            theirs = np.load(work / f"y_{vendor}.npy").reshape(ours.shape)
            results[vendor] = {
                "target": target, "loaded": True,
                "output_agreement": float(np.mean(np.isclose(ours, theirs, atol=1e-4))),
                "argmax_agreement": float(np.mean(ours.argmax(-1) == theirs.argmax(-1))),
                "max_abs_diff": float(np.abs(ours - theirs).max()),
            }
        print(f"{vendor} ({target}): {json.dumps(results[vendor])}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
