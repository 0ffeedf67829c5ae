"""Run a trt_nm Speck deployment through sinabs 3.1.3's discretized DYNAP-CNN network.

Run by the speck vendor venv's python (numpy, stdlib, torch, nir 1.0.4, sinabs; never trt_nm):

* ``python speck_runner.py DEPLOY_DIR RESULT_NPZ``: reads ``DEPLOY_DIR/speck.nir`` with
  ``nir.read``, imports it with ``sinabs.from_nir``, builds ``DynapcnnNetwork(snn,
  input_shape, discretize=True)``, maps its layers onto speck2fdevkit's cores
  (``map_layers_to_cores``) and runs the software forward on every sample of
  ``DEPLOY_DIR/expected.npz["x"]`` (int ``[T, B, C, H, W]``). Writes ``out`` (int64
  ``[T, B, n_out]`` output spike counts), ``layer:NAME`` (int64 ``[T, B, C, H, W]`` spikes of
  each core's neurons, before pooling; NAME is the weight node's name in the NIR file),
  ``versions``, ``memory_summary`` (sinabs' ``memory_summary()``), ``layer2core``, ``cores``
  (per-core config values from sinabs' config builder) and ``discretized_unchanged`` (json
  texts).
* ``python speck_runner.py map NIR_FILE``: exit 0 when sinabs imports the graph, discretizes it
  and maps it onto speck2fdevkit; exit 3 with sinabs' message on one line when it refuses.

Errors of the runner itself: one line on stderr, exit 2. samna is a stand-in here (the real
one cannot be installed offline); specksim is therefore not available.
"""

from __future__ import annotations

import json
import sys
import traceback
from importlib.metadata import version
from pathlib import Path

import numpy as np

DEVICE = "speck2fdevkit"
CHUNK = 64  # samples per forward call


def _js(obj) -> np.ndarray:
    """json text as a 0-d numpy string (numpy scalars become numbers)."""
    return np.array(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def _fail(msg: str, code: int = 2) -> None:
    sys.stderr.write(msg.replace("\n", " ").strip() + "\n")
    sys.exit(code)


def _chain(graph) -> list[str]:
    """Node names in topological order (Kahn)."""
    succ: dict[str, list[str]] = {n: [] for n in graph.nodes}
    indeg = {n: 0 for n in graph.nodes}
    for a, b in graph.edges:
        succ[a].append(b)
        indeg[b] += 1
    ready = sorted(n for n, d in indeg.items() if d == 0)
    order = []
    while ready:
        n = ready.pop(0)
        order.append(n)
        for m in succ[n]:
            indeg[m] -= 1
            if indeg[m] == 0:
                ready.append(m)
    return order


def _input_shape(graph) -> tuple[int, ...]:
    import nir

    for node in graph.nodes.values():
        if isinstance(node, nir.Input):
            return tuple(int(s) for s in np.asarray(node.input_type["input"]).ravel())
    raise ValueError("the NIR graph has no Input node")


def _build(nir_file: str, T: int):
    """(network, weight node names in order, input shape) -- everything sinabs does."""
    import nir
    import sinabs
    from sinabs.backend.dynapcnn import DynapcnnNetwork

    graph = nir.read(nir_file)
    shape = _input_shape(graph)
    names = [n for n in _chain(graph) if isinstance(graph.nodes[n], (nir.Conv2d, nir.Affine, nir.Linear))]
    snn = sinabs.from_nir(graph, num_timesteps=T)
    net = DynapcnnNetwork(snn, input_shape=shape, discretize=True)
    return graph, net, names, shape


def _mapping(net) -> dict[int, int]:
    from sinabs.backend.dynapcnn.chip_factory import ChipFactory

    return ChipFactory(DEVICE).get_config_builder().map_layers_to_cores(net.dynapcnn_layers)


def map_mode(nir_file: str) -> None:
    try:
        import nir

        nir.read(nir_file)
    except Exception as exc:  # noqa: BLE001
        _fail(f"cannot read {nir_file}: {type(exc).__name__}: {exc}")
    try:
        _, net, _, _ = _build(nir_file, 1)
        cores = _mapping(net)
    except Exception as exc:  # noqa: BLE001 - the vendor's verdict, whatever it raises
        print(f"sinabs rejects the graph: {type(exc).__name__}: {exc}".replace("\n", " "))
        sys.exit(3)
    print(f"sinabs maps the graph onto {DEVICE}: layer->core {cores}")


def _layer_values(graph, net, names) -> tuple[bool, list[dict]]:
    """Whether discretisation left the file's integers unchanged, and per-core config values."""
    from sinabs.backend.dynapcnn.chip_factory import ChipFactory

    builder = ChipFactory(DEVICE).get_config_builder()
    cores = _mapping(net)
    same = True
    rows = []
    for (idx, layer), name in zip(sorted(net.dynapcnn_layers.items()), names):
        w_file = np.asarray(graph.nodes[name].weight, dtype=np.float32)
        w_disc = layer.conv_layer.weight.detach().numpy()
        same &= bool(np.array_equal(w_disc.reshape(w_file.shape), w_file))
        cfg = builder.get_dynapcnn_layer_config_dict(
            layer=layer, layer2core_map=cores, destination_indices=net.layer_destination_map[idx])
        thr_file = float(np.asarray(graph.nodes[name + "_if"].v_threshold).ravel()[0]) \
            if name + "_if" in graph.nodes else None
        same &= thr_file is None or cfg["threshold_high"] == thr_file
        rows.append({"layer": name, "index": int(idx), "core": int(cores[idx]),
                     "threshold_high": cfg["threshold_high"], "threshold_low": cfg["threshold_low"],
                     "return_to_zero": bool(cfg["return_to_zero"]),
                     "leak_enable": bool(cfg["leak_enable"]),
                     "kernel_size": cfg["dimensions"]["kernel_size"],
                     "weights_min": int(np.min(cfg["weights"])), "weights_max": int(np.max(cfg["weights"])),
                     "destinations": cfg["destinations"]})
    return same, rows


def run_mode(deploy_dir: str, result: str) -> None:
    import torch

    d = Path(deploy_dir)
    nir_file = d / "speck.nir"
    if not nir_file.is_file():
        _fail(f"no speck.nir in {d}")
    try:
        with np.load(d / "expected.npz", allow_pickle=False) as z:
            x = np.asarray(z["x"])
    except Exception as exc:  # noqa: BLE001
        _fail(f"cannot read {d / 'expected.npz'}: {type(exc).__name__}: {exc}")
    if x.ndim != 5:
        _fail(f"expected.npz x has shape {list(x.shape)}, want [T, B, C, H, W]")
    T, B = int(x.shape[0]), int(x.shape[1])
    try:
        graph, net, names, shape = _build(str(nir_file), T)
        cores = _mapping(net)
    except Exception as exc:  # noqa: BLE001
        _fail(f"sinabs rejects {nir_file}: {type(exc).__name__}: {exc}", 3)
    if tuple(x.shape[2:]) != shape:
        _fail(f"inputs {list(x.shape[2:])} do not match the NIR input {list(shape)}")
    layers = [layer for _, layer in sorted(net.dynapcnn_layers.items())]
    if len(layers) != len(names):
        _fail(f"sinabs built {len(layers)} DYNAP-CNN layers for {len(names)} weight nodes")
    same, core_rows = _layer_values(graph, net, names)

    captured: dict[int, list] = {i: [] for i in range(len(layers))}
    hooks = [layer.spk_layer.register_forward_hook(lambda m, a, out, i=i: captured[i].append(out.detach().clone()))
             for i, layer in enumerate(layers)]
    outs = []
    with torch.no_grad():
        for s0 in range(0, B, CHUNK):
            xb = torch.from_numpy(x[:, s0:s0 + CHUNK].astype(np.float32))  # [T, b, ...]
            b = xb.shape[1]
            for layer in layers:
                layer.spk_layer.reset_states()
            flat = xb.transpose(0, 1).reshape(b * T, *shape)  # sinabs: [batch * time] batch-major
            out = net(flat)
            outs.append(out.reshape(b, T, -1).transpose(0, 1))
    for h in hooks:
        h.remove()
    res: dict[str, np.ndarray] = {}
    res["out"] = torch.cat(outs, 1).round().to(torch.int64).numpy()
    for i, name in enumerate(names):
        s = torch.cat([c.reshape(-1, T, *c.shape[1:]) for c in captured[i]], 0)  # [B, T, ...]
        res["layer:" + name] = s.transpose(0, 1).round().to(torch.int64).numpy()
    mem = net.memory_summary()
    res["memory_summary"] = _js({k: {names[j]: int(v[idx]) for j, idx in enumerate(sorted(v))}
                                 for k, v in mem.items()})
    res["layer2core"] = _js({names[j]: int(cores[idx]) for j, idx in enumerate(sorted(cores))})
    res["cores"] = _js(core_rows)
    res["discretized_unchanged"] = _js(bool(same))
    res["versions"] = _js({
        "sinabs": version("sinabs"), "nir": version("nir"), "nirtorch": version("nirtorch"),
        "torch": torch.__version__, "numpy": np.__version__, "device": DEVICE,
        "simulator": "sinabs DynapcnnNetwork(discretize=True) torch forward (specksim needs samna: not run)"})
    tmp = Path(result).with_name(Path(result).name + ".tmp.npz")
    np.savez(tmp, **res)
    tmp.replace(result)


def main(argv: list[str]) -> None:
    if len(argv) == 2 and argv[0] == "map":
        map_mode(argv[1])
    elif len(argv) == 2:
        run_mode(argv[0], argv[1])
    else:
        _fail("usage: speck_runner.py DEPLOY_DIR RESULT_NPZ | speck_runner.py map NIR_FILE")


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001
        tb = traceback.extract_tb(exc.__traceback__)
        where = f" ({Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
        _fail(f"speck runner failed: {type(exc).__name__}: {exc}{where}")
