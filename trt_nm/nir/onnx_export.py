"""``to_onnx``: the unrolled network (T timesteps) as an ONNX file with a dynamic batch.

The model is first written as trt_nm's canonical NIR graph (:func:`trt_nm.nir.io.to_nir`,
BatchNorm folded) and rebuilt with the generic NIR neurons of :mod:`trt_nm.nir.modules`, whose
spike is a plain comparison under ``torch.no_grad``; the legacy TorchScript exporter then
unrolls the time loop. No snnTorch/Norse op and no custom autograd function reach ONNX.

Inputs/outputs of the file: ``input`` ``[T, batch, *input_shape]`` (float32) ->
``logits`` ``[T, batch, C]``; with ``spikes=True`` also one output ``spikes_<node>``
``[T, batch, *shape]`` per neuron layer (NIR node names, see ``docs/nir.md``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trt_nm.atomic import atomic_write_path
from trt_nm.errors import ConfigError, MissingDependencyError, NirError
from trt_nm.nir.export import to_nir
from trt_nm.nir.importer import NIRNetwork, build_network
from trt_nm.nir.validate import validate_graph


class _Unrolled(nn.Module):
    """``x [T, B, ...]`` -> ``(logits [T, B, C], *spikes [T, B, ...])`` of a :class:`NIRNetwork`."""

    def __init__(self, net: NIRNetwork, spikes: bool) -> None:
        super().__init__()
        self.net = net
        self.names = [n for n, _ in net.neurons()] if spikes else []

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs = self.net.run_all(x)
        return (outs[self.net.output_name], *[outs[n] for n in self.names])


def to_onnx(model: Any, path: str | os.PathLike, *, T: int, batch: int = 1,
            spikes: bool = False, opset: int = 17, dt: float = 1e-4) -> Path:
    """Export ``model`` unrolled over ``T`` steps to ONNX (dynamic batch dimension).

    Args:
        model: a zoo :class:`~trt_nm.models.SpikingModel` or a ``nir.NIRGraph``.
        path: output ``.onnx`` file (replaced atomically).
        T: timesteps to unroll (fixed in the file).
        batch: batch size of the example input used for tracing (the file accepts any).
        spikes: also output every neuron layer's spikes.
        opset: ONNX opset.
        dt: NIR timestep used for the intermediate graph (does not change results).

    Returns:
        The written path. Output names: ``logits`` and, with ``spikes``, ``spikes_<node>``.
    """
    import nir

    if int(T) != T or T < 1:
        raise ConfigError(f"T must be an integer >= 1, got {T}")
    if int(batch) != batch or batch < 1:
        raise ConfigError(f"batch must be an integer >= 1, got {batch}")
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise MissingDependencyError("onnx is not installed; install it with: pip install onnx") from None
    if isinstance(model, nir.NIRGraph):
        graph = model
        validate_graph(graph)
    else:
        graph = to_nir(model, dt=dt, reset_mode="metadata")
    net = build_network(graph, backend=None).eval()
    wrapper = _Unrolled(net, spikes).eval()
    x = torch.zeros((int(T), int(batch), *net.input_shape))
    out_names = ["logits", *[f"spikes_{n}" for n in wrapper.names]]
    axes = {"input": {1: "batch"}, **{n: {1: "batch"} for n in out_names}}
    path = Path(path)
    if path.is_dir():
        raise NirError(f"output path is a directory: {path}")

    def export(tmp: str) -> None:
        with torch.no_grad():
            torch.onnx.export(
                wrapper, (x,), tmp, input_names=["input"], output_names=out_names,
                dynamic_axes=axes, opset_version=opset, dynamo=False,
            )

    return atomic_write_path(path, export)
