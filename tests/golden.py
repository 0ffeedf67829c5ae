"""Golden values of every zoo model: logits (model and simulator), spikes per layer and
synaptic operations per layer on fixed inputs, on every backend, recorded before the
package restructure (issue 12) so that it provably changed no arithmetic.

``python tests/golden.py --record`` rewrites ``tests/data/golden_zoo.npz`` -- only for a change
that is MEANT to change the numbers, stated in its commit message.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from trt_nm.models import build_model, list_models, randomize_batchnorm
from trt_nm.nir.io import to_nir
from trt_nm.sim import simulate

GOLDEN = Path(__file__).parent / "data" / "golden_zoo.npz"
SIZES = {"mlp": (12, 12), "cnn-small": (12, 12), "vggsnn": (16, 16), "resnet19": (8, 8),
         "sew-resnet34": (32, 32)}
BACKENDS = ("torch", "snntorch", "norse")
T, B = 3, 5


def compute(arch: str, backend: str) -> dict[str, np.ndarray]:
    """The golden arrays of one architecture on one backend (keys ``arch|backend|input|what``)."""
    torch.manual_seed(1234)
    model = build_model(arch, backend=backend, input_size=SIZES[arch], in_channels=2, T=T,
                        num_classes=10)
    randomize_batchnorm(model)
    model.eval()
    g = torch.Generator().manual_seed(99)
    x_static = (torch.rand(1, B, 2, *SIZES[arch], generator=g) * 2).expand(T, -1, -1, -1, -1).contiguous()
    x_events = (torch.rand(T, B, 2, *SIZES[arch], generator=g) < 0.3).float()
    out: dict[str, np.ndarray] = {}
    graph = to_nir(model)
    for kind, x in (("static", x_static), ("events", x_events)):
        key = f"{arch}|{backend}|{kind}"
        with torch.no_grad():
            out[key + "|model_logits"] = model(x).numpy()
        res = simulate(graph, x)
        out[key + "|sim_logits"] = res.logits.numpy()
        for k, v in res.spikes.items():
            out[key + f"|spikes|{k}"] = v.numpy()
        for k, v in res.synops.items():
            out[key + f"|synops|{k}"] = v.numpy()
    return out


def compute_all() -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for arch in list_models():
        for backend in BACKENDS:
            out.update(compute(arch, backend))
    return out


if __name__ == "__main__":
    if "--record" not in sys.argv:
        sys.exit("usage: python tests/golden.py --record")
    values = compute_all()
    np.savez_compressed(GOLDEN, **values)
    print(f"{len(values)} arrays -> {GOLDEN}")
