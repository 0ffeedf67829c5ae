"""ONNX export of the canonical graph: one timestep (:func:`to_onnx_step`) and the whole time
loop (:func:`to_onnx`), both with a dynamic batch.

The model is first written as trt_nm's canonical NIR graph (:func:`trt_nm.nir.io.to_nir`,
BatchNorm folded) and rebuilt with the generic NIR neurons of :mod:`trt_nm.nir.modules`, whose
spike is a plain comparison under ``torch.no_grad``. :class:`StepNetwork` is ONE timestep of
that network with the neuron state passed in and out explicitly; the legacy TorchScript
exporter writes it to ONNX. No snnTorch/Norse op and no custom autograd function reach ONNX.

Step file (:func:`to_onnx_step`, ``trt-nm export --format onnx --step``), for a host runtime
that runs a sample step by step and stops it when an exit rule fires:

* inputs: ``x`` ``[batch, *input_shape]`` (the frame of timestep t), then one
  ``state_in_<node>_<var>`` ``[batch, *shape]`` per state variable (``v``; ``v`` and ``i`` for
  CubaLIF/CubaLI), all zeros at t = 1;
* outputs: ``logits`` ``[batch, C]`` (the Output node at timestep t), then
  ``state_out_<node>_<var>`` in the same order as the inputs (feed them back at t + 1).

The prediction after t steps is the argmax of the running mean of ``logits``
(:func:`trt_nm.metrics.accuracy.cumulative_mean`); an exit rule of :mod:`trt_nm.early_exit`
applied to that running mean stops a sample exactly where the simulator's post-hoc evaluation
says it exits (``tests/test_onnx_export.py``).

Time-loop file (:func:`to_onnx`): ``input`` ``[T, batch, *input_shape]`` (float32) ->
``logits`` ``[T, batch, C]``; with ``spikes=True`` also one output ``spikes_<node>``
``[T, batch, *shape]`` per neuron layer (NIR node names, see ``docs/nir.md``). It is the step
graph inside one ONNX ``Scan`` over the time axis, with zero initial states of the input's
batch size, so the file's size and the export time do not grow with T (an unrolled trace of
T = 100,000 steps ran out of memory).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trt_nm.atomic import atomic_write_path, check_writable
from trt_nm.errors import ConfigError, MissingDependencyError
from trt_nm.limits import check_batch, check_T
from trt_nm.nir.export import to_nir
from trt_nm.nir.importer import NIRNetwork, build_network
from trt_nm.nir.nodes import NODE_KINDS
from trt_nm.nir.validate import validate_graph


class StepNetwork(nn.Module):
    """One timestep of a NIR network with explicit state:
    ``forward(x_t, *state) -> (logits_t, *new_state[, *spikes_t])``.

    ``x_t`` is ``[B, *input_shape]``; ``state`` holds one tensor ``[B, *shape]`` per entry of
    :attr:`state_vars` (zeros at t = 1, :meth:`init_state`); the new state comes back in the
    same order. With ``spikes=True`` the output of every neuron node follows (``[B, *shape]``,
    :attr:`spike_names` order). Built by :func:`step_network`.

    Attributes:
        net: the :class:`~trt_nm.nir.importer.NIRNetwork` (generic NIR neurons).
        state_vars: ``(node, var, batch-free shape)`` per state tensor, in execution order.
        spike_names: the neuron nodes whose outputs follow with ``spikes=True``.
    """

    def __init__(self, net: NIRNetwork, shapes: dict[str, tuple[int, ...]], *, spikes: bool = False) -> None:
        super().__init__()
        self.net = net
        neurons = [n for n, _ in net.neurons()]
        self.state_vars = [(n, var, tuple(shapes[n])) for n in neurons for var in NODE_KINDS[net.kinds[n]].state]
        self.spike_names = neurons if spikes else []

    @property
    def state_names(self) -> list[str]:
        """``<node>_<var>`` per state tensor (the ONNX names add ``state_in_``/``state_out_``)."""
        return [f"{n}_{v}" for n, v, _ in self.state_vars]

    def init_state(self, batch: int, *, dtype: torch.dtype = torch.float32,
                   device: str | torch.device | None = None) -> tuple[torch.Tensor, ...]:
        """The state at t = 1: zeros ``[batch, *shape]`` per state variable."""
        batch = check_batch(batch)
        return tuple(torch.zeros((batch, *shape), dtype=dtype, device=device) for _, _, shape in self.state_vars)

    def forward(self, x: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        net = self.net
        if len(state) != len(self.state_vars):
            raise ConfigError(f"the step network takes {len(self.state_vars)} state tensors, got {len(state)}")
        outs: dict[str, torch.Tensor] = {net.input_name: x}
        new_state: list[torch.Tensor] = []
        k = 0
        for name in net.order:
            preds = net.preds[name]
            h = outs[preds[0]]
            for p in preds[1:]:
                h = h + outs[p]
            kind = NODE_KINDS[net.kinds[name]]
            if kind.role == "io":
                outs[name] = h
            elif kind.stateful:
                n = len(kind.state)
                y, st = net.nodes[net.keys[name]].step(h, tuple(state[k:k + n]))
                k += n
                new_state.extend(st)
                outs[name] = y
            else:
                outs[name] = net.nodes[net.keys[name]](h)
        result = [outs[net.output_name], *new_state, *[outs[n] for n in self.spike_names]]
        seen: set[int] = set()
        for j, t in enumerate(result):  # one tensor returned twice (an LI output is its state)
            if id(t) in seen:
                result[j] = t.clone()
            seen.add(id(result[j]))
        return tuple(result)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        """``x [T, B, ...]`` -> logits ``[T, B, C]``, one :meth:`forward` per step from zeros."""
        state = self.init_state(x.shape[1], dtype=x.dtype, device=x.device)
        logits = []
        for t in range(x.shape[0]):
            out = self(x[t], *state)
            logits.append(out[0])
            state = out[1:1 + len(self.state_vars)]
        return torch.stack(logits)


def _graph_of(model: Any, dt: float) -> Any:
    import nir

    if isinstance(model, nir.NIRGraph):
        validate_graph(model)
        return model
    return to_nir(model, dt=dt, reset_mode="metadata")


def step_network(model: Any, *, spikes: bool = False, dt: float = 1e-4) -> StepNetwork:
    """The :class:`StepNetwork` (eval mode, float32) of a zoo model or a ``nir.NIRGraph``.

    Args:
        model: a zoo :class:`~trt_nm.models.SpikingModel` (written as NIR with ``dt``) or a
            ``nir.NIRGraph`` (its metadata ``dt``).
        spikes: also return every neuron node's output per step.
        dt: NIR timestep for a model (does not change results).
    """
    graph = _graph_of(model, dt)
    shapes = validate_graph(graph) or {}
    net = build_network(graph, backend=None).eval()
    return StepNetwork(net, shapes, spikes=spikes).eval()


def _require_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise MissingDependencyError("onnx is not installed; install it with: pip install onnx") from None
    return onnx


def _step_proto(step: StepNetwork, batch: int, opset: int, *, x_name: str = "x") -> Any:
    """The ONNX ModelProto of ``step`` (legacy exporter, dynamic batch)."""
    onnx = _require_onnx()
    x = torch.zeros((batch, *step.net.input_shape))
    state = step.init_state(batch)
    in_names = [x_name, *[f"state_in_{s}" for s in step.state_names]]
    out_names = ["logits", *[f"state_out_{s}" for s in step.state_names],
                 *[f"spikes_{n}" for n in step.spike_names]]
    axes = {n: {0: "batch"} for n in (*in_names, *out_names)}
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(step, (x, *state), buf, input_names=in_names, output_names=out_names,
                          dynamic_axes=axes, opset_version=opset, dynamo=False)
    return onnx.load_from_string(buf.getvalue())


def _check_args(path: str | os.PathLike, batch: int, opset: int) -> Path:
    check_batch(batch, where="batch")
    return check_writable(path, what="ONNX output")


def _save(proto: Any, path: Path) -> Path:
    onnx = _require_onnx()
    onnx.checker.check_model(proto)
    try:
        return atomic_write_path(path, lambda tmp: onnx.save(proto, tmp))
    except OSError as exc:
        raise ConfigError(f"cannot write ONNX file {path}: {exc.strerror or exc}") from None


def to_onnx_step(model: Any, path: str | os.PathLike, *, batch: int = 1, opset: int = 17,
                 dt: float = 1e-4) -> Path:
    """Export ONE timestep of ``model`` to ONNX: ``(x, state_in_*) -> (logits, state_out_*)``
    (see the module docstring; dynamic batch, states zeros at t = 1).

    Args:
        model: a zoo :class:`~trt_nm.models.SpikingModel` or a ``nir.NIRGraph``.
        path: output ``.onnx`` file (replaced atomically; checked writable first).
        batch: batch size of the example input used for tracing (the file accepts any).
        opset: ONNX opset.
        dt: NIR timestep used for the intermediate graph (does not change results).

    Returns:
        The written path.
    """
    path = _check_args(path, batch, opset)
    _require_onnx()
    step = step_network(model, dt=dt)
    return _save(_step_proto(step, batch, opset), path)


def _prefixed(graph: Any, prefix: str) -> None:
    """Rename every value and node of an ONNX graph in place (``name`` -> ``prefix + name``)."""
    for v in (*graph.input, *graph.output, *graph.value_info):
        v.name = prefix + v.name
    for t in graph.initializer:
        t.name = prefix + t.name
    for node in graph.node:
        node.name = prefix + node.name
        for i, n in enumerate(node.input):
            if n:
                node.input[i] = prefix + n
        for i, n in enumerate(node.output):
            if n:
                node.output[i] = prefix + n


def to_onnx(model: Any, path: str | os.PathLike, *, T: int, batch: int = 1,
            spikes: bool = False, opset: int = 17, dt: float = 1e-4) -> Path:
    """Export ``model`` over ``T`` timesteps to ONNX (dynamic batch dimension): the step graph
    of :func:`to_onnx_step` inside one ``Scan`` over time (see the module docstring).

    Args:
        model: a zoo :class:`~trt_nm.models.SpikingModel` or a ``nir.NIRGraph``.
        path: output ``.onnx`` file (replaced atomically; checked writable first).
        T: timesteps of the input (declared in the file; checked by :func:`trt_nm.limits.check_T`).
        batch: batch size of the example input used for tracing (the file accepts any).
        spikes: also output every neuron layer's spikes.
        opset: ONNX opset.
        dt: NIR timestep used for the intermediate graph (does not change results).

    Returns:
        The written path. Output names: ``logits`` and, with ``spikes``, ``spikes_<node>``.
    """
    T = check_T(T)
    path = _check_args(path, batch, opset)
    _require_onnx()
    from onnx import TensorProto, helper

    step = step_network(model, spikes=spikes, dt=dt)
    proto = _step_proto(step, batch, opset)
    body = proto.graph
    n_state = len(step.state_vars)
    # Scan's body: the state inputs, then the scan input; the new states, then the scan outputs
    inputs = list(body.input)
    outputs = list(body.output)
    del body.input[:]
    del body.output[:]
    body.input.extend([*inputs[1:], inputs[0]])
    body.output.extend([*outputs[1:1 + n_state], outputs[0], *outputs[1 + n_state:]])
    body.name = "step"
    _prefixed(body, "step/")
    out_names = ["logits", *[f"spikes_{n}" for n in step.spike_names]]
    nodes = []
    init = []
    states0 = []
    if n_state:
        nodes += [helper.make_node("Shape", ["input"], ["input_shape"]),
                  helper.make_node("Gather", ["input_shape", "batch_axis"], ["batch_dim"], axis=0)]
        init.append(helper.make_tensor("batch_axis", TensorProto.INT64, [1], [1]))
        zero = helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0])
        for (_, _, shape), name in zip(step.state_vars, step.state_names, strict=True):
            init.append(helper.make_tensor(f"shape_{name}", TensorProto.INT64, [len(shape)], list(shape)))
            nodes += [helper.make_node("Concat", ["batch_dim", f"shape_{name}"], [f"full_shape_{name}"], axis=0),
                      helper.make_node("ConstantOfShape", [f"full_shape_{name}"], [f"state0_{name}"], value=zero)]
            states0.append(f"state0_{name}")
    finals = [f"state_final_{name}" for name in step.state_names]
    nodes.append(helper.make_node("Scan", [*states0, "input"], [*finals, *out_names], body=body,
                                  num_scan_inputs=1, name="time_loop"))
    x_info = helper.make_tensor_value_info("input", TensorProto.FLOAT, [T, "batch", *step.net.input_shape])
    out_info = []
    for name, src in zip(out_names, outputs[:1] + outputs[1 + n_state:], strict=True):
        dims = [d.dim_param or d.dim_value for d in src.type.tensor_type.shape.dim]
        out_info.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [T, "batch", *dims[1:]]))
    graph = helper.make_graph(nodes, "trt_nm", [x_info], out_info, initializer=init)
    outer = helper.make_model(graph, opset_imports=list(proto.opset_import), producer_name="trt_nm")
    outer.ir_version = proto.ir_version
    return _save(outer, path)


__all__ = ["StepNetwork", "step_network", "to_onnx_step", "to_onnx"]
