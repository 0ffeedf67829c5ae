"""Spike-for-spike check of the simulator against the zoo models themselves, at sizes the unit
tests do not reach.

For every architecture (realistic random BatchNorm statistics), binary and static input, and
each backend, the model runs with forward hooks on its neurons (eval mode, no autograd) and
its NIR export runs through ``trt_nm.sim.engine.Simulator`` with a small batch-piece budget (so
chunking is exercised); the script prints the largest logit difference and how many of all
spikes differ. With ``--reference`` it also runs the reference interpreter
(``trt_nm.sim.reference.simulate_reference``, one timestep at a time) and prints how far the
engine is from it (logits, spikes, synaptic operations; 0 expected).

    python bench/sim_exactness.py [--arch mlp,cnn-small,...] [--backends torch,snntorch,norse]
                                  [--T 6] [--batch 24] [--threads 1,2] [--reference]
"""

from __future__ import annotations

import argparse
import time

import torch

SIZES = {"mlp": (28, 28), "cnn-small": (28, 28), "vggsnn": (32, 32), "resnet19": (16, 16),
         "sew-resnet34": (32, 32)}


def _csv(kind):
    return lambda text: [kind(v) for v in text.split(",") if v]


def check(arch: str, backend: str, coding: str, T: int, B: int, seed: int,
          reference: bool = False) -> tuple[float, int, int, float, str]:
    """``(max |dlogit|, differing spikes, total spikes, simulator seconds, engine vs reference)``;
    the last is ``"-"`` unless ``reference``, else ``"dlogit/differing spikes/differing synops"``."""
    from trt_nm.models import build_model, randomize_batchnorm
    from trt_nm.nir.io import to_nir
    from trt_nm.sim.engine import Simulator
    from trt_nm.sim.reference import simulate_reference

    torch.manual_seed(seed)
    size = SIZES[arch]
    model = build_model(arch, backend=backend, input_size=size, in_channels=2, T=T).eval()
    randomize_batchnorm(model)
    if coding == "binary":
        x = (torch.rand(T, B, 2, *size) < 0.3).float() * 1.5
    else:
        x = (torch.rand(1, B, 2, *size) * 2).expand(T, -1, -1, -1, -1).contiguous()
    spikes: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: spikes.__setitem__(n.replace(".", "_"), o.detach().clone()))
             for n, m in model.neurons()]
    with torch.no_grad():
        ref = model(x)
    for h in hooks:
        h.remove()
    graph = to_nir(model)
    sim = Simulator(graph, state_bytes=2**18)
    t0 = time.perf_counter()
    res = sim(x, record=True)
    secs = time.perf_counter() - t0
    flips = sum(int((res.spike_trains[k] != s).sum()) for k, s in spikes.items())
    total = sum(int(s.sum()) for s in spikes.values())
    vs_ref = "-"
    if reference:
        want = simulate_reference(graph, x, record=True)
        d = (res.logits - want.logits).abs().max().item()
        f = sum(int((res.spike_trains[k] != v).sum()) for k, v in want.spike_trains.items())
        o = sum(int((res.synops[k] != v).sum()) for k, v in want.synops.items())
        vs_ref = f"{d:.1e}/{f}/{o}"
    return (res.logits - ref).abs().max().item(), flips, total, secs, vs_ref


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", type=_csv(str), default=list(SIZES))
    p.add_argument("--backends", type=_csv(str), default=["torch", "snntorch", "norse"])
    p.add_argument("--T", type=int, default=6)
    p.add_argument("--batch", type=int, default=24)
    p.add_argument("--threads", type=_csv(int), default=[1, 2])
    p.add_argument("--reference", action="store_true",
                   help="also compare the engine with the reference interpreter (slow)")
    args = p.parse_args()
    grand = [0, 0]
    print("| threads | backend | arch | input | max dlogit | differing spikes | spikes | sim s "
          "| vs reference: dlogit/spikes/synops |")
    print("|---|---|---|---|---|---|---|---|---|")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for backend in args.backends:
            for arch in args.arch:
                for seed, coding in enumerate(("binary", "static")):
                    d, flips, total, secs, vs_ref = check(arch, backend, coding, args.T, args.batch, seed,
                                                          args.reference)
                    grand[0] += flips
                    grand[1] += total
                    print(f"| {threads} | {backend} | {arch} | {coding} | {d:.1e} | {flips} | {total} | {secs:.1f} "
                          f"| {vs_ref} |", flush=True)
    print(f"differing spikes: {grand[0]} of {grand[1]}")


if __name__ == "__main__":
    main()
