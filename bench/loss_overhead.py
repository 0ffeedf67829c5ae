"""TRT loss overhead: training-step time with ``trt_loss`` / with per-timestep CE alone.

Same model, same batch, same process; the two variants are timed alternately (TRT, CE, CE,
TRT, ...) so drift in machine load hits both equally. Prints the median step times,
their ratio and the median of the per-pair ratios (target <= 1.05 on resnet19 at T=4).
``--reg-only`` also times the TRT regularizer alone (forward + backward), alternately with
the steps.

    python bench/loss_overhead.py                         # resnet19, T=4, auto device
    python bench/loss_overhead.py --device cpu --batch 8  # what the README's CPU row used
    python bench/loss_overhead.py --device cpu --batch 4 --reg-only
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from trt_nm.losses import ce_loss, regularized_parameters, trt_loss, trt_regularizer
from trt_nm.models import build_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="resnet19")
    p.add_argument("-T", type=int, default=4)
    p.add_argument("--batch", type=int, default=None, help="default 64 on CUDA, 8 on CPU")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--reg-only", action="store_true",
                   help="also time trt_regularizer forward + backward alone")
    args = p.parse_args()
    dev = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                       ("cpu" if args.device == "auto" else args.device))
    batch = args.batch or (64 if dev.type == "cuda" else 8)
    torch.manual_seed(0)
    model = build_model(args.arch, num_classes=10, in_channels=3, T=args.T,
                        input_size=(args.size, args.size)).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(args.T, batch, 3, args.size, args.size, device=dev)
    y = torch.randint(0, 10, (batch,), device=dev)

    def step(with_trt: bool) -> float:
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = model(x)
        loss = trt_loss(out, y, model.named_parameters()) if with_trt else ce_loss(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    params = regularized_parameters(model.named_parameters())

    def reg_step() -> float:
        """The regularizer alone, as ``trt_loss`` calls it, forward + backward."""
        for q in params:
            q.grad = None
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        trt_regularizer(params, args.T, lamb=1e-5, decay=0.5, eps=1e-5).backward()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    for _ in range(args.warmup):
        step(True)
        step(False)
        if args.reg_only:
            reg_step()
    trt, ce, reg = [], [], []
    for i in range(args.iters):
        if i % 2:  # ABBA order: neither variant always runs first
            ce.append(step(False))
            trt.append(step(True))
        else:
            trt.append(step(True))
            ce.append(step(False))
        if args.reg_only:
            reg.extend(reg_step() for _ in range(3))
    m_trt, m_ce = statistics.median(trt), statistics.median(ce)
    pair = statistics.median(a / b for a, b in zip(trt, ce))
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"{args.arch} T={args.T} batch {batch} {args.size}x{args.size} on {name}, torch {torch.__version__}")
    print(f"step with trt_loss : {1000 * m_trt:9.1f} ms (median of {args.iters})")
    print(f"step with CE only  : {1000 * m_ce:9.1f} ms")
    print(f"TRT overhead ratio : {m_trt / m_ce:.3f}  (target <= 1.05); "
          f"median of per-pair ratios {pair:.3f}")
    if reg:
        m_reg = statistics.median(reg)
        print(f"regularizer alone  : {1000 * m_reg:9.1f} ms fwd+bwd (median of {len(reg)}), "
              f"{100 * m_reg / m_ce:.1f}% of a CE step")


if __name__ == "__main__":
    main()
