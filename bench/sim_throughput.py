"""Simulator throughput (samples/s) vs nirtorch's own interpreter on the same NIR graph.

For every configuration (architecture x T x batch x input coding) both interpreters run the
same graph exported by ``trt_nm.to_nir`` on the same inputs, in one process, side by side; the
script checks that their logits agree and prints one table row with samples/s and the ratio.
nirtorch steps the graph one timestep at a time (``nirtorch.nir_to_torch`` + a LIF module with
explicit state); trt_nm's simulator runs stateless nodes over merged batches of (chunk of
timesteps) x batch, the chunk sized automatically so the largest intermediate stays within a
cache budget (``Simulator(chunk_bytes=...)``), and with ``static`` input (the same frame at every
step, as static images are fed) runs the stateless nodes before the first neuron only once.

Columns: ``ratio`` = simulator / nirtorch samples/s; ``ceiling`` = the largest ratio an exact
interpreter could reach with the same convolution / matmul kernels (nirtorch's time over the
simulator's time inside those kernels, measured with the profiler: identical spikes rule out
other kernels, whose float rounding differs); ``chunk`` = steps x samples per chunk;
``unchunked`` = the simulator with chunking off (the whole T*B batch at once); ``+SynOps`` =
with synaptic-operation counting. Timings of one configuration are interleaved and repeated;
the best (least disturbed) of each is kept. ``--malloc retain`` (default) applies
``trt_nm.sim.allocator.retain_freed_memory`` to the process, as the ``trt-nm`` CLI does.

    python bench/sim_throughput.py [--arch mlp,cnn-small] [--T 4,20] [--batch 1,64]
                                   [--inputs static,dynamic] [--repeats 5] [--min-time 0.3] [--threads N]
                                   [--malloc retain|default]
"""

from __future__ import annotations

import argparse
import time

import torch


class _NirtorchLIF(torch.nn.Module):
    """NIR LIF for nirtorch: ``forward(x, state) -> (spikes, state)``, forward Euler with dt."""

    def __init__(self, node, dt: float) -> None:
        super().__init__()
        a = dt / torch.as_tensor(node.tau, dtype=torch.float64)
        self.register_buffer("beta", (1 - a).float())
        self.register_buffer("gain", (torch.as_tensor(node.r, dtype=torch.float64) * a).float())
        self.register_buffer("thr", torch.as_tensor(node.v_threshold, dtype=torch.float32))

    def forward(self, x, state=None):
        v = torch.zeros_like(x) if state is None else state
        h = self.beta * v + self.gain * x
        s = (h > self.thr).float()
        return s, h * (1 - s)


def _nirtorch_model(graph, dt):
    import nir
    import nirtorch

    def flatten(node):  # batch-free start_dim: shift past the batch dim
        return torch.nn.Flatten(int(node.start_dim) + 1, int(node.end_dim))

    def affine(node):
        m = torch.nn.Linear(node.weight.shape[1], node.weight.shape[0])
        m.weight.data = torch.as_tensor(node.weight, dtype=torch.float32)
        m.bias.data = torch.as_tensor(node.bias, dtype=torch.float32)
        return m

    def conv(node):
        w = torch.as_tensor(node.weight, dtype=torch.float32)
        m = torch.nn.Conv2d(w.shape[1], w.shape[0], tuple(w.shape[2:]), stride=tuple(node.stride),
                            padding=tuple(node.padding), dilation=tuple(node.dilation), groups=int(node.groups))
        m.weight.data, m.bias.data = w, torch.as_tensor(node.bias, dtype=torch.float32)
        return m

    node_map = {nir.LIF: lambda n: _NirtorchLIF(n, dt), nir.Flatten: flatten, nir.Affine: affine, nir.Conv2d: conv}
    return nirtorch.nir_to_torch(graph, node_map)


def _run_nirtorch(net, x):
    state = None
    outs = []
    for t in range(x.shape[0]):
        y, state = net(x[t], state)
        outs.append(y)
    return torch.stack(outs)


def _csv(kind):
    return lambda text: [kind(v) for v in text.split(",") if v]


def _timer(fn, min_time: float):
    """A callable returning seconds per call of ``fn`` (looping so one timing lasts >= min_time)."""
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-6)
    loops = max(1, int(min_time / once))

    def measure() -> float:
        t0 = time.perf_counter()
        for _ in range(loops):
            fn()
        return (time.perf_counter() - t0) / loops

    return measure


#: leaf kernels of convolutions and matrix products (profiler names), shared by both interpreters
_WEIGHT_KERNELS = {"aten::mkldnn_convolution", "aten::_slow_conv2d_forward", "aten::thnn_conv2d",
                   "aten::_nnpack_spatial_convolution", "aten::addmm", "aten::mm", "aten::bmm",
                   "aten::convolution_overrideable"}


def _weight_kernel_seconds(fn, calls: int = 3) -> float:
    """Seconds per call that ``fn`` spends inside convolution / matmul kernels (profiler)."""
    from torch.profiler import profile

    fn()
    with profile() as prof:
        for _ in range(calls):
            fn()
    return sum(e.self_cpu_time_total for e in prof.key_averages() if e.key in _WEIGHT_KERNELS) / 1e6 / calls


def bench_one(arch: str, T: int, batch: int, coding: str, repeats: int, min_time: float) -> dict:
    """Samples/s of nirtorch, the simulator (chunked; unchunked), and with SynOp counting."""
    from trt_nm.models import build_model
    from trt_nm.nir.io import to_nir
    from trt_nm.sim.engine import Simulator

    torch.manual_seed(0)
    model = build_model(arch, T=T).eval()
    graph = to_nir(model, dt=1e-4)
    if coding == "static":  # direct coding: one analogue frame repeated at every step
        x = (torch.rand(1, batch, *model.input_shape) * 2).expand(T, -1, *model.input_shape).contiguous()
    else:  # a different frame at every step (event data)
        x = torch.rand(T, batch, *model.input_shape) * 2
    sim = Simulator(graph)
    whole = Simulator(graph, chunk_bytes=None)
    net = _nirtorch_model(graph, 1e-4)
    with torch.no_grad():
        ref = _run_nirtorch(net, x)
        diff = (sim(x, count_ops=False).logits - ref).abs().max().item()
        runs = {
            "nirtorch": _timer(lambda: _run_nirtorch(net, x), min_time),
            "sim": _timer(lambda: sim(x, count_ops=False), min_time),
            "unchunked": _timer(lambda: whole(x, count_ops=False), min_time),
            "sim+synops": _timer(lambda: sim(x, count_ops=True), min_time),
        }
        best = {k: float("inf") for k in runs}
        for _ in range(repeats):
            for k, measure in runs.items():
                best[k] = min(best[k], measure())
        # the most an exact interpreter using the same kernels could gain: nirtorch's time over
        # the time the simulator spends in convolution / matmul kernels alone
        kernels = _weight_kernel_seconds(lambda: sim(x, count_ops=False))
    rate = {k: batch / v for k, v in best.items()}
    steps, samples = sim.plan_chunks(x)
    return {"arch": arch, "T": T, "batch": batch, "input": coding, "diff": diff,
            "chunk": f"{steps}x{samples}", "ceiling": best["nirtorch"] / max(kernels, 1e-9), **rate}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", type=_csv(str), default=["mlp", "cnn-small"])
    p.add_argument("--T", type=_csv(int), default=[4, 20])
    p.add_argument("--batch", type=_csv(int), default=[1, 64])
    p.add_argument("--inputs", type=_csv(str), default=["static", "dynamic"])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--min-time", type=float, default=0.3, help="seconds per timing (loops short calls)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--malloc", choices=("retain", "default"), default="retain",
                   help="retain: glibc keeps freed memory (trt_nm.sim.allocator, as the trt-nm CLI does); "
                        "default: the C library's own policy. Either way it holds for both interpreters")
    args = p.parse_args()
    policy = "default"
    if args.malloc == "retain":
        from trt_nm.sim.allocator import retain_freed_memory

        policy = "retain" if retain_freed_memory() else "default (retain unavailable: not glibc)"
    print(f"malloc policy: {policy} (the same for both interpreters: one process)")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    print(f"{torch.get_num_threads()} torch threads; samples/s, best of {args.repeats} interleaved repeats")
    head = (f"| {'arch':9} | {'T':>2} | {'batch':>5} | {'input':7} | {'nirtorch':>8} | {'simulator':>9} "
            f"| {'ratio':>5} | {'ceiling':>7} | {'chunk':>6} | {'unchunked':>9} | {'ratio':>5} | {'+SynOps':>8} "
            f"| {'ratio':>5} | {'max dlogit':>10} |")
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for arch in args.arch:
        for T in args.T:
            for batch in args.batch:
                for coding in args.inputs:
                    r = bench_one(arch, T, batch, coding, args.repeats, args.min_time)
                    print(f"| {arch:9} | {T:>2} | {batch:>5} | {coding:7} | {r['nirtorch']:8.1f} "
                          f"| {r['sim']:9.1f} | {r['sim'] / r['nirtorch']:4.2f}x | {r['ceiling']:6.2f}x "
                          f"| {r['chunk']:>6} "
                          f"| {r['unchunked']:9.1f} | {r['unchunked'] / r['nirtorch']:4.2f}x "
                          f"| {r['sim+synops']:8.1f} | {r['sim+synops'] / r['nirtorch']:4.2f}x "
                          f"| {r['diff']:10.1e} |", flush=True)


if __name__ == "__main__":
    main()
