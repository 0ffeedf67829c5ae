"""Simulator throughput (samples/s) vs nirtorch's own interpreter on the same NIR graph.

Both run the same cnn-small graph exported by ``trt_nm.to_nir`` on the same inputs, in one
process, side by side; the script checks that their outputs agree and prints the ratio.
nirtorch steps the graph one timestep at a time (``nirtorch.nir_to_torch`` + a LIF module
with explicit state); trt_nm's simulator runs stateless nodes once over the merged T*B batch.

    python bench/sim_throughput.py [--arch cnn-small] [--batch 64] [--T 4] [--repeats 3]
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


def main() -> None:
    from trt_nm.models import build_model
    from trt_nm.nir_io import to_nir
    from trt_nm.simulate import Simulator

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="cnn-small")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--T", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.manual_seed(0)
    model = build_model(args.arch, T=args.T).eval()
    graph = to_nir(model, dt=1e-4)
    x = torch.rand(args.T, args.batch, *model.input_shape) * 2
    sim = Simulator(graph)
    net = _nirtorch_model(graph, 1e-4)
    with torch.no_grad():
        ref = _run_nirtorch(net, x)
        ours = sim(x, count_ops=False).logits
    diff = (ours - ref).abs().max().item()

    def best(fn):
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            with torch.no_grad():
                fn()
            times.append(time.perf_counter() - t0)
        return args.batch / min(times)

    r_nt = best(lambda: _run_nirtorch(net, x))
    r_sim = best(lambda: sim(x, count_ops=False))
    r_cnt = best(lambda: sim(x, count_ops=True))
    print(f"{args.arch}, T={args.T}, batch {args.batch}, {torch.get_num_threads()} threads; max |logit diff| {diff:.2e}")
    print(f"nirtorch interpreter        : {r_nt:9.1f} samples/s")
    print(f"trt_nm simulator            : {r_sim:9.1f} samples/s  ({r_sim / r_nt:.2f}x nirtorch)")
    print(f"trt_nm simulator + SynOps   : {r_cnt:9.1f} samples/s  ({r_cnt / r_nt:.2f}x nirtorch)")


if __name__ == "__main__":
    main()
