"""Time one full training step (forward, loss, backward, Adam) of the paper's networks.

Rows, all measured in the same process on the same device, same network, same batch:

- ``trt_nm/<backend>``: the zoo model on each neuron backend, fp32 eager, TRT loss;
- ``trt_nm/<backend>+fast``: the same with bf16 autocast + ``torch.compile`` (model and loss)
  + fused Adam (CUDA), the fastest each library's neuron code allows;
- ``trt_nm/fast+cl`` and ``trt_nm/fast+cudagraphs``: the torch backend with channels-last
  weights, and with compile mode ``reduce-overhead`` (CUDA graphs);
- ``trt_nm/ce`` and ``trt_nm/fast-ce``: per-timestep cross-entropy instead of TRT (the TRT
  overhead ratio is ``trt_nm/torch`` / ``trt_nm/ce`` and ``trt_nm/fast`` / ``trt_nm/fast-ce``);
- anchors: the same conv/BN/pool/linear layers with a hand-written neuron loop of plain
  torch, snnTorch (``Leaky``), Norse (``LIFBoxCell``) and SpikingJelly 2.0 (``LIFNode``
  multi-step, which picks its fused CUDA/Triton kernel itself) in fp32/bf16, eager/compiled;
  anchors use per-timestep cross-entropy (their usual loss).

Each row: warm-up steps, then the median of ``--iters`` steps timed with CUDA events (wall
clock on CPU), peak allocated memory, and the ratio to SpikingJelly's best row of that
network. Rows whose library is missing are skipped; rows that fail are reported, not fatal.

    python bench/train_step.py                       # GPU: the full table, JSON to bench/
    python bench/train_step.py --device cpu --tiny   # quick CPU smoke run
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from trt_nm.config import NeuronConfig
from trt_nm.losses import Loss
from trt_nm.models import SpikingModel, SpikingSequential, build_model, get_model_entry
from trt_nm.neuron.lif import SpikingNeuron


@dataclass(frozen=True)
class Net:
    """A benchmarked network: zoo arch, input ``[T, B, C, H, W]``, classes."""

    arch: str
    T: int
    batch: int
    channels: int
    size: int
    classes: int = 10

    @property
    def label(self) -> str:
        return f"{self.arch} T={self.T} {self.size}px B={self.batch}"


FULL = [
    Net("cnn-small", 4, 128, 1, 28),
    Net("vggsnn", 10, 32, 2, 48),
    Net("resnet19", 4, 64, 3, 32),
    Net("resnet19", 6, 64, 3, 32),
]
TINY = [
    Net("cnn-small", 2, 4, 1, 12),
    Net("vggsnn", 2, 2, 2, 16),
    Net("resnet19", 2, 2, 3, 8),
]


# --------------------------------------------------------------------------- anchor neurons
class _ATan(torch.autograd.Function):
    """Heaviside with the ATan surrogate (plain-torch anchor)."""

    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        ctx.save_for_backward(x)
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return g / (1 + (math.pi * x) ** 2)


class PlainLoop(SpikingNeuron):
    """Hand-written loop: v = 0.5 v + x, spike, hard reset (what a researcher writes)."""

    backend_name = "anchor-plain"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = torch.zeros_like(x[0])
        out = []
        for t in range(x.shape[0]):
            v = 0.5 * v + x[t]
            s = _ATan.apply(v - 1.0)
            v = v * (1.0 - s)
            out.append(s)
        return torch.stack(out)


class SnnTorchLoop(SpikingNeuron):
    """snnTorch's documented usage: ``Leaky`` stepped over time with an explicit membrane."""

    backend_name = "anchor-snntorch"

    def __init__(self, cfg: NeuronConfig) -> None:
        super().__init__(cfg)
        import snntorch

        self.leaky = snntorch.Leaky(beta=0.5, threshold=1.0, reset_mechanism="zero")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mem = self.leaky.init_leaky()
        out = []
        for t in range(x.shape[0]):
            spk, mem = self.leaky(x[t], mem)
            out.append(spk)
        return torch.stack(out)


class NorseLoop(SpikingNeuron):
    """Norse's documented usage: ``LIFBoxCell`` stepped over time (decay 0.5 per step)."""

    backend_name = "anchor-norse"

    def __init__(self, cfg: NeuronConfig) -> None:
        super().__init__(cfg)
        import norse.torch as nt

        self.cell = nt.LIFBoxCell(nt.LIFBoxParameters(tau_mem_inv=torch.tensor(500.0)), dt=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state = None
        out = []
        for t in range(x.shape[0]):
            z, state = self.cell(x[t], state)
            out.append(z)
        return torch.stack(out)


class SJMulti(SpikingNeuron):
    """SpikingJelly 2.0 ``LIFNode`` in multi-step mode: v = 0.5 v + x, hard reset to 0."""

    backend_name = "anchor-spikingjelly"

    def __init__(self, cfg: NeuronConfig) -> None:
        super().__init__(cfg)
        from spikingjelly.activation_based import neuron

        self.node = neuron.LIFNode(
            tau=2.0, decay_input=False, v_threshold=1.0, v_reset=0.0, step_mode="m"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.node.reset()
        return self.node(x)


ANCHORS: dict[str, tuple[type[SpikingNeuron], str | None]] = {
    "plain-torch": (PlainLoop, None),
    "snntorch": (SnnTorchLoop, "snntorch"),
    "norse": (NorseLoop, "norse"),
    "spikingjelly": (SJMulti, "spikingjelly"),
}


def anchor_model(net: Net, neuron_cls: type[SpikingNeuron]) -> SpikingModel:
    """The zoo architecture's layers with an anchor's neuron loop in every neuron slot."""
    cfg = NeuronConfig()
    body: SpikingSequential = get_model_entry(net.arch).builder(
        net.channels, net.classes, (net.size, net.size), lambda: neuron_cls(cfg)
    )
    return SpikingModel(body, {"input_shape": [net.channels, net.size, net.size], "T": net.T,
                               "num_classes": net.classes})


# --------------------------------------------------------------------------- one row
@dataclass
class Row:
    net: str
    name: str
    ms: float = float("nan")
    ms_min: float = float("nan")
    ms_max: float = float("nan")
    peak_mib: float = float("nan")
    ratio_to_sj: float = float("nan")
    status: str = "ok"
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Variant:
    """How a row builds and runs its step."""

    name: str
    build: Callable[[], SpikingModel]
    loss: str = "trt"  # trt | ce
    amp: str = "none"  # none | bf16
    compile: str | None = None  # None | default | reduce-overhead | max-autotune-no-cudagraphs
    channels_last: bool = False
    fused_adam: bool = False
    requires: str | None = None


def make_step(model: SpikingModel, v: Variant, device: torch.device):
    """A closure ``step(x, y) -> loss`` doing forward, loss, backward and the Adam update."""
    model.to(device).train()
    if v.channels_last:
        model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(
        model.parameters(), lr=1e-3, fused=True if (v.fused_adam and device.type == "cuda") else None
    )
    loss_fn = Loss("trt") if v.loss == "trt" else Loss("ce")
    params = list(model.named_parameters())
    fwd = model
    loss_call = loss_fn
    if v.compile:
        fwd = torch.compile(model, mode=None if v.compile == "default" else v.compile)
        loss_call = torch.compile(loss_fn)
    dtype = {"none": None, "bf16": torch.bfloat16}[v.amp]

    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            out = fwd(x)
        loss = loss_call(out, y, params)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    return step


def time_row(net: Net, v: Variant, device: torch.device, warmup: int, iters: int) -> Row:
    row = Row(net.label, v.name)
    if v.requires and importlib.util.find_spec(v.requires) is None:
        row.status = f"skipped ({v.requires} not installed)"
        return row
    if v.compile == "reduce-overhead" and device.type != "cuda":
        row.status = "skipped (CUDA graphs need a GPU)"
        return row
    torch._dynamo.reset()
    torch.manual_seed(0)
    try:
        model = v.build()
        step = make_step(model, v, device)
        x = torch.rand(net.T, net.batch, net.channels, net.size, net.size, device=device) * 2.0
        y = torch.randint(0, net.classes, (net.batch,), device=device)
        for _ in range(warmup):
            loss = step(x, y)
        times = []
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            for _ in range(iters):
                a = torch.cuda.Event(enable_timing=True)
                b = torch.cuda.Event(enable_timing=True)
                a.record()
                loss = step(x, y)
                b.record()
                torch.cuda.synchronize()
                times.append(a.elapsed_time(b))
            row.peak_mib = torch.cuda.max_memory_allocated() / 2**20
        else:
            for _ in range(iters):
                t0 = time.perf_counter()
                loss = step(x, y)
                times.append((time.perf_counter() - t0) * 1e3)
        if not torch.isfinite(loss):
            row.status = f"non-finite loss {float(loss)}"
        row.ms, row.ms_min, row.ms_max = statistics.median(times), min(times), max(times)
    except Exception as exc:  # noqa: BLE001 - a failing row is reported, the table goes on
        row.status = f"FAILED {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return row


def variants(net: Net, device: torch.device, which: set[str] | None) -> list[Variant]:
    gpu = device.type == "cuda"
    amp = "bf16" if gpu else "none"  # bf16 autocast on CPU is slower than fp32

    def zoo(backend: str) -> Callable[[], SpikingModel]:
        return lambda: build_model(
            net.arch, backend=backend, num_classes=net.classes, in_channels=net.channels,
            T=net.T, input_size=(net.size, net.size),
        )

    out: list[Variant] = []
    for b in ("torch", "snntorch", "norse"):
        req = None if b == "torch" else b
        out.append(Variant(f"trt_nm/{b}", zoo(b), requires=req))
        out.append(Variant(f"trt_nm/{b}+fast", zoo(b), amp=amp, compile="default",
                           fused_adam=True, requires=req))
    out += [
        Variant("trt_nm/fast+cl", zoo("torch"), amp=amp, compile="default", channels_last=True,
                fused_adam=True),
        Variant("trt_nm/fast+cudagraphs", zoo("torch"), amp=amp, compile="reduce-overhead",
                fused_adam=True),
        Variant("trt_nm/ce", zoo("torch"), loss="ce"),
        Variant("trt_nm/fast-ce", zoo("torch"), loss="ce", amp=amp, compile="default",
                fused_adam=True),
    ]
    for name, (cls, req) in ANCHORS.items():
        def build(cls=cls):
            return anchor_model(net, cls)

        out.append(Variant(f"anchor/{name}", build, loss="ce", requires=req))
        if name in ("plain-torch", "spikingjelly"):
            out.append(Variant(f"anchor/{name}+compile", build, loss="ce", compile="default",
                               requires=req))
        if name == "spikingjelly" and gpu:
            out.append(Variant(f"anchor/{name}+bf16", build, loss="ce", amp="bf16", requires=req))
            out.append(Variant(f"anchor/{name}+bf16+compile", build, loss="ce", amp="bf16",
                               compile="default", requires=req))
    if which:
        out = [v for v in out if v.name in which]
    return out


CE_ROWS = ("trt_nm/ce", "trt_nm/fast-ce")  # not TRT: excluded from "fastest"


def fmt(x: float, spec: str = "8.2f") -> str:
    return format(x, spec) if math.isfinite(x) else " " * (int(spec.split(".")[0]) - 1) + "-"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="auto, cuda or cpu")
    p.add_argument("--tiny", action="store_true", help="tiny sizes (CPU smoke run)")
    p.add_argument("--nets", default="", help="comma-separated archs to run (default: all)")
    p.add_argument("--rows", default="", help="comma-separated row names to run (default: all)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up steps (default 10 GPU, 1 tiny)")
    p.add_argument("--iters", type=int, default=None, help="timed steps (default 30 GPU, 3 tiny)")
    p.add_argument("--json", default="bench/out/train_step.json", help="write all rows here")
    args = p.parse_args(argv)

    dev_name = "cuda" if (args.device == "auto" and torch.cuda.is_available()) else args.device
    dev_name = "cpu" if dev_name == "auto" else dev_name
    device = torch.device(dev_name)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but no CUDA GPU is available", file=sys.stderr)
        return 2
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 rows stay fp32
        torch.backends.cudnn.allow_tf32 = False
    nets = TINY if args.tiny else FULL
    if args.nets:
        wanted = set(args.nets.split(","))
        nets = [n for n in nets if n.arch in wanted]
    warmup = args.warmup if args.warmup is not None else (1 if args.tiny else 10)
    iters = args.iters if args.iters is not None else (3 if args.tiny else 30)
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    meta = {
        "device": str(device), "card": card, "torch": torch.__version__,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "warmup": warmup, "iters": iters, "cpu_threads": torch.get_num_threads(),
    }
    print(f"# train_step: {card}, torch {torch.__version__}, {meta['date']}, "
          f"median of {iters} steps after {warmup} warm-up", flush=True)
    rows: list[Row] = []
    summary: dict[str, dict] = {}
    which = set(args.rows.split(",")) if args.rows else None
    for net in nets:
        print(f"\n## {net.label}\n{'row':28s} {'ms/step':>8s} {'min':>8s} {'max':>8s} "
              f"{'peak MiB':>9s} {'x SJ':>6s}  status", flush=True)
        net_rows = []
        for v in variants(net, device, which):
            row = time_row(net, v, device, warmup, iters)
            net_rows.append(row)
            print(f"{row.name:28s} {fmt(row.ms)} {fmt(row.ms_min)} {fmt(row.ms_max)} "
                  f"{fmt(row.peak_mib, '9.0f')} {'':>6s}  {row.status}", flush=True)
        by = {r.name: r for r in net_rows if math.isfinite(r.ms)}
        sj = [r.ms for n, r in by.items() if n.startswith("anchor/spikingjelly")]
        sj_best = min(sj) if sj else float("nan")
        for r in net_rows:
            r.ratio_to_sj = r.ms / sj_best if sj else float("nan")
        ours = {n: r.ms for n, r in by.items() if n.startswith("trt_nm/") and n not in CE_ROWS}
        fastest = min(ours, key=ours.get) if ours else None
        info = {
            "sj_best_ms": sj_best,
            "fastest": fastest,
            "fastest_ms": ours.get(fastest, float("nan")) if fastest else float("nan"),
        }
        info["fastest_over_sj_best"] = info["fastest_ms"] / sj_best if sj else float("nan")
        if "trt_nm/torch" in by and "trt_nm/ce" in by:
            info["trt_overhead_eager"] = by["trt_nm/torch"].ms / by["trt_nm/ce"].ms
        if "trt_nm/torch+fast" in by and "trt_nm/fast-ce" in by:
            info["trt_overhead_fast"] = by["trt_nm/torch+fast"].ms / by["trt_nm/fast-ce"].ms
        for b in ("snntorch", "norse"):
            if f"trt_nm/{b}+fast" in by and "trt_nm/torch+fast" in by:
                info[f"{b}_fast_over_torch_fast"] = by[f"trt_nm/{b}+fast"].ms / by["trt_nm/torch+fast"].ms
        summary[net.label] = info
        rows += net_rows
        print("summary: " + ", ".join(
            f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in info.items()), flush=True)
    print("\n# table (ms/step, x SpikingJelly best)")
    for net_label, info in summary.items():
        print(f"{net_label:32s} fastest {info['fastest']} {fmt(info['fastest_ms'])} ms  "
              f"SJ best {fmt(info['sj_best_ms'])} ms  ratio {fmt(info['fastest_over_sj_best'], '6.3f')}"
              + (f"  TRT overhead eager {info['trt_overhead_eager']:.3f}" if "trt_overhead_eager" in info else "")
              + (f" fast {info['trt_overhead_fast']:.3f}" if "trt_overhead_fast" in info else ""))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"meta": meta, "summary": summary, "rows": [asdict(r) for r in rows]},
                                   indent=1, default=str))
        print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
