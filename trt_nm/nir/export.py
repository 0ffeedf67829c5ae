"""``to_nir``: a zoo :class:`~trt_nm.models.SpikingModel` as a ``nir.NIRGraph``.

The graph is written by walking the model's own structure (not by tracing), so it is the
same whichever backend built the model. Conventions (``docs/nir.md``): batch-free shapes,
BatchNorm folded into the preceding conv/linear, canonical LIF as NIR ``LIF`` with
``tau = dt/(1-beta)``, ``r = tau/dt``, ``v_leak = v_reset = 0``; residuals are edges.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from trt_nm.errors import ConfigError, NirError, unknown_name
from trt_nm.models import BasicBlock, SEWBlock, SpikingModel
from trt_nm.models.bn_fold import folded_params
from trt_nm.neuron.lif import SpikingNeuron
from trt_nm.nir.validate import validate_graph
from trt_nm.version import __version__

RESET_MODES = ("error", "metadata")
#: a batch-free shape
Shape = tuple[int, ...]


def _fold(layer: nn.Module, bn: nn.Module | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Weight and bias of ``bn(layer(x))`` as numpy arrays in the layer's dtype
    (:func:`trt_nm.models.bn_fold.folded_params`: the arithmetic the zoo models evaluate with)."""
    try:
        w, b = folded_params(layer, bn)
    except ConfigError as exc:
        raise NirError(f"{exc} into NIR") from None
    return w.cpu().numpy(), None if b is None else b.cpu().numpy()


class _Builder:
    def __init__(self, dt: float, reset_mode: str) -> None:
        import nir

        self.nir = nir
        self.dt = dt
        self.reset_mode = reset_mode
        self.nodes: dict[str, Any] = {}
        self.edges: list[tuple[str, str]] = []
        self.neuron_cfgs: list[Any] = []

    def add(self, name: str, node: Any, srcs: list[str]) -> list[str]:
        name = name.replace(".", "_")
        if name in self.nodes:
            raise NirError(f"duplicate NIR node name {name!r}")
        self.nodes[name] = node
        self.edges.extend((s, name) for s in srcs)
        return [name]

    def lif(self, name: str, neuron: Any, shape: tuple[int, ...], srcs: list[str]) -> list[str]:
        cfg = neuron.cfg
        if cfg.reset == "subtract" and self.reset_mode != "metadata":
            raise NirError(
                f"neuron {name!r} uses reset 'subtract', which NIR's LIF cannot express; "
                "pass reset_mode='metadata' to record it in the graph metadata"
            )
        if cfg.beta >= 1.0:
            raise NirError(f"neuron {name!r} has beta = 1 (no leak): tau = dt/(1-beta) is infinite")
        self.neuron_cfgs.append(cfg)
        tau = self.dt / (1.0 - cfg.beta)
        ones = np.ones(shape, dtype=np.float64)
        node = self.nir.LIF(
            tau=ones * tau, r=ones * (tau / self.dt), v_leak=ones * 0.0,
            v_threshold=ones * cfg.threshold, v_reset=ones * 0.0,
        )
        return self.add(name, node, srcs)

    def affine(self, name: str, layer: nn.Module, bn: nn.Module | None, shape: Shape,
               srcs: list[str]) -> tuple[list[str], Shape]:
        """A (BatchNorm-folded) Linear as Affine/Linear or Conv2d as Conv2d; returns its output
        node and batch-free output shape."""
        w, b = _fold(layer, bn)
        if isinstance(layer, nn.Linear):
            if len(shape) != 1:
                raise NirError(f"Linear {name!r} receives a {len(shape)}-d input; flatten first")
            node = self.nir.Linear(weight=w) if b is None else self.nir.Affine(weight=w, bias=b)
            return self.add(name, node, srcs), (w.shape[0],)
        if layer.padding_mode != "zeros" or isinstance(layer.padding, str):
            raise NirError(f"Conv2d {name!r}: only numeric zero padding can be exported")
        if b is None:
            b = np.zeros(w.shape[0], dtype=w.dtype)
        node = self.nir.Conv2d(
            input_shape=tuple(shape[1:]), weight=w, stride=tuple(layer.stride),
            padding=tuple(layer.padding), dilation=tuple(layer.dilation), groups=layer.groups,
            bias=b,
        )
        return self.add(name, node, srcs), tuple(int(s) for s in node.output_type["output"])

    def seq(self, seq: nn.Sequential, prefix: str, srcs: list[str],
            shape: Shape) -> tuple[list[str], Shape]:
        """Every child of ``seq`` in order (a conv/linear absorbs the BatchNorm after it)."""
        children = list(seq.named_children())
        i = 0
        while i < len(children):
            cname, child = children[i]
            name = f"{prefix}.{cname}" if prefix else cname
            if isinstance(child, (nn.Conv2d, nn.Linear)):
                bn = None
                if i + 1 < len(children) and isinstance(children[i + 1][1], nn.modules.batchnorm._BatchNorm):
                    bn = children[i + 1][1]
                    i += 1
                srcs, shape = self.affine(name, child, bn, shape, srcs)
            elif isinstance(child, SpikingNeuron):
                srcs = self.lif(name, child, shape, srcs)
            elif isinstance(child, nn.AvgPool2d):
                srcs, shape = self.pool(name, child, shape, srcs)
            elif isinstance(child, nn.Flatten):
                if child.start_dim != 1 or child.end_dim != -1:
                    raise NirError(f"Flatten {name!r}: only Flatten(start_dim=1, end_dim=-1) is supported")
                node = self.nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1)
                srcs = self.add(name, node, srcs)
                shape = (int(np.prod(shape)),)
            elif isinstance(child, BasicBlock):
                srcs, shape = self.basic(name, child, srcs, shape)
            elif isinstance(child, SEWBlock):
                srcs, shape = self.sew(name, child, srcs, shape)
            elif isinstance(child, nn.Sequential):
                srcs, shape = self.seq(child, name, srcs, shape)
            elif isinstance(child, nn.Identity) or isinstance(child, nn.Dropout):
                pass
            else:
                raise NirError(f"cannot export module {name!r} ({type(child).__name__}) to NIR")
            i += 1
        return srcs, shape

    def pool(self, name: str, pool: nn.AvgPool2d, shape: Shape,
             srcs: list[str]) -> tuple[list[str], Shape]:
        """AvgPool2d without ceil mode/divisor override as NIR AvgPool2d."""

        def pair(v: Any) -> tuple[int, int]:
            return (int(v), int(v)) if isinstance(v, int) else tuple(int(x) for x in v)

        k = pair(pool.kernel_size)
        s = pair(pool.stride if pool.stride is not None else pool.kernel_size)
        p = pair(pool.padding)
        if pool.ceil_mode or (any(p) and not pool.count_include_pad) or pool.divisor_override:
            raise NirError(f"AvgPool2d {name!r}: ceil_mode/count_include_pad/divisor_override cannot be exported")
        node = self.nir.AvgPool2d(kernel_size=np.array(k), stride=np.array(s), padding=np.array(p))
        h = (shape[1] + 2 * p[0] - k[0]) // s[0] + 1
        w = (shape[2] + 2 * p[1] - k[1]) // s[1] + 1
        return self.add(name, node, srcs), (shape[0], h, w)

    def basic(self, name: str, blk: Any, srcs: list[str], shape: Shape) -> tuple[list[str], Shape]:
        """A ResNet BasicBlock: its shortcut is a second edge into ``lif2``."""
        h, hs = self.affine(f"{name}.conv1", blk.conv1, blk.bn1, shape, srcs)
        h = self.lif(f"{name}.lif1", blk.lif1, hs, h)
        h, hs = self.affine(f"{name}.conv2", blk.conv2, blk.bn2, hs, h)
        sc, ss = self.seq(blk.shortcut, f"{name}.shortcut", srcs, shape)
        if ss != hs:
            raise NirError(f"block {name!r}: residual shape {ss} does not match {hs}")
        return self.lif(f"{name}.lif2", blk.lif2, hs, h + sc), hs

    def sew(self, name: str, blk: Any, srcs: list[str], shape: Shape) -> tuple[list[str], Shape]:
        """A SEW block: residual and downsample branches summed by a unit Scale node."""
        r, rs = self.seq(blk.residual, f"{name}.residual", srcs, shape)
        d, ds = self.seq(blk.downsample, f"{name}.downsample", srcs, shape)
        if rs != ds:
            raise NirError(f"block {name!r}: residual shape {rs} does not match {ds}")
        node = self.nir.Scale(scale=np.ones(rs, dtype=np.float64))
        return self.add(f"{name}.add", node, r + d), rs


def to_nir(model: nn.Module, *, dt: float = 1e-4, reset_mode: str = "error") -> Any:
    """Export a zoo model to a validated ``nir.NIRGraph`` (batch-free shapes).

    Args:
        model: a :class:`~trt_nm.models.SpikingModel` (any backend). BatchNorm layers use their
            running statistics (eval semantics) and are folded into the preceding layer.
        dt: timestep in seconds written to ``metadata['dt']`` and used for ``tau = dt/(1-beta)``
            (default 1e-4, as snnTorch and SpikingJelly).
        reset_mode: ``"error"`` (default): a subtract-reset neuron raises :class:`NirError`;
            ``"metadata"``: it is written as a NIR LIF and ``metadata['reset'] = 'subtract'``
            tells readers to subtract the threshold instead of resetting to ``v_reset``.

    Returns:
        ``nir.NIRGraph`` with nodes named after the modules (``.`` -> ``_``), an ``input`` and
        an ``output`` node, and metadata (producer, version, dt, T, reset, surrogate, ...).
    """
    import nir

    if reset_mode not in RESET_MODES:
        raise unknown_name("reset mode", reset_mode, RESET_MODES)
    if not isinstance(model, SpikingModel):
        raise NirError(f"to_nir expects a trt_nm SpikingModel, got {type(model).__name__}")
    dt = float(dt)
    if not np.isfinite(dt) or dt <= 0:
        raise NirError(f"dt must be a positive finite number of seconds, got {dt}")
    b = _Builder(dt, reset_mode)
    in_shape = tuple(int(s) for s in model.input_shape)
    b.nodes["input"] = nir.Input(input_type={"input": np.array(in_shape)})
    srcs, shape = b.seq(model.body, "body", ["input"], in_shape)
    b.nodes["output"] = nir.Output(output_type={"output": np.array(shape)})
    b.edges.extend((s, "output") for s in srcs)
    cfgs = b.neuron_cfgs
    resets = {c.reset for c in cfgs}
    if len(resets) > 1:
        raise NirError("neurons mix reset modes; graph metadata can record only one")
    cfg0 = cfgs[0] if cfgs else None
    meta = {
        "producer": "trt_nm",
        "version": __version__,
        "dt": dt,
        "T": int(model.T),
        "reset": cfg0.reset if cfg0 else "zero",
        "surrogate": cfg0.surrogate if cfg0 else "triangle",
        "surrogate_scale": float(cfg0.scale) if cfg0 else 1.0,
        "arch": str(model.spec.get("arch", "")),
        "num_classes": int(model.num_classes),
        "input_shape": np.array(in_shape, dtype=np.int64),
    }
    if cfg0 is not None:
        meta["beta"] = float(cfg0.beta)
        meta["threshold"] = float(cfg0.threshold)
    graph = nir.NIRGraph(nodes=b.nodes, edges=b.edges, metadata=meta, type_check=False)
    validate_graph(graph, where="exported graph")
    return graph
