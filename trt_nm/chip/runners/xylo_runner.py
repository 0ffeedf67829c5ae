"""Xylo vendor runner: run a trt_nm deployment in rockpool 3.1.0's XyloSim (xylosim 0.1.3).

Run by the vendor venv's python (numpy, stdlib and vendor packages only; never trt_nm):

* ``python xylo_runner.py DEPLOY_DIR RESULT_NPZ``: loads ``DEPLOY_DIR/spec.npz`` ->
  ``syns61201.XyloSim.from_specification(**spec)``, runs every sample of
  ``DEPLOY_DIR/expected.npz["x"]`` (``[T, B, 16]`` event counts; the state is reset before
  each sample) and writes ``out`` (``Vmem_out``, int64 ``[T, B, C]``), ``layer:hidden`` (spike
  counts of the whole hidden population, ``[T, B, H]``), ``layer:out_spikes`` and ``versions``. It also loads ``DEPLOY_DIR/network.nir`` with rockpool's ``from_nir`` ->
  ``as_graph`` -> ``syns61201.mapper`` -> ``channel_quantize`` and fails (exit 2) unless that
  gives the same specification as ``spec.npz``: the NIR file and spec.npz are one network.
* ``python xylo_runner.py map NIR_FILE``: exit 0 if the mapper accepts the graph, exit 3 with
  its message on one line if it rejects it. The mapper's DRC *warnings* (more than 16 input or
  8 output channels, weight biases that are not transferred) count as rejections.

``rockpool.devices.xylo``'s ``__init__`` imports samna (not installable offline), so the bare
package is registered as a namespace module before ``syns61201`` is imported.
"""

from __future__ import annotations

import json
import os
import sys
import types
import warnings
from importlib.metadata import version
from pathlib import Path

import numpy as np

SPEC_KEYS_INT = ("weights_in", "weights_rec", "weights_out", "dash_mem", "dash_mem_out",
                 "dash_syn", "dash_syn_2", "dash_syn_out", "threshold", "threshold_out",
                 "bias", "bias_out")


class RunnerError(Exception):
    pass


def _xylo():
    """``rockpool.devices.xylo.syns61201`` without importing the samna-bound package init."""
    import rockpool

    name = "rockpool.devices.xylo"
    if name not in sys.modules:
        import rockpool.devices

        mod = types.ModuleType(name)
        mod.__path__ = [str(Path(rockpool.devices.__file__).parent / "xylo")]
        sys.modules[name] = mod
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from rockpool.devices.xylo import syns61201
    return rockpool, syns61201


def _map(nir_file: str, strict: bool):
    """NIR file -> quantized specification dict (raises the mapper's error)."""
    import nir
    from rockpool.nn.modules.torch.nir import from_nir
    from rockpool.transform.quantize_methods import channel_quantize

    _, x = _xylo()
    graph = nir.read(nir_file)
    with warnings.catch_warnings():
        if strict:
            warnings.simplefilter("error", x.xylo_mapper.DRCWarning)
        else:
            warnings.simplefilter("ignore")
        net = from_nir(graph)
        spec = x.mapper(net.as_graph(), weight_dtype="float", threshold_dtype="float",
                        dash_dtype="float")
    spec.pop("mapped_graph", None)
    spec.update(channel_quantize(**spec))
    return spec


def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    cause = exc.__cause__
    if cause is not None:
        text += f" (caused by {type(cause).__name__}: {cause})"
    return " ".join(text.split())


def cmd_map(nir_file: str) -> int:
    try:
        spec = _map(nir_file, strict=True)
    except Exception as exc:  # noqa: BLE001 - the vendor's verdict, reported on one line
        print(f"rejected by rockpool syns61201.mapper: {_one_line(exc)}")
        return 3
    w_in, w_out = np.asarray(spec["weights_in"]), np.asarray(spec["weights_out"])
    print(f"accepted by rockpool syns61201.mapper: {w_in.shape[0]} inputs, {w_in.shape[1]} hidden, "
          f"{w_out.shape[1]} outputs")
    return 0


def _compare(nir_spec: dict, spec: dict) -> list[str]:
    bad = []
    for k in SPEC_KEYS_INT:
        if k not in spec:
            continue
        a = np.asarray(nir_spec.get(k, np.zeros(0))).astype(np.int64)
        b = np.asarray(spec[k]).astype(np.int64)
        if a.shape != b.shape:
            bad.append(f"{k}: shape {list(a.shape)} from network.nir vs {list(b.shape)} in spec.npz")
        elif not np.array_equal(a, b):
            n = int((a != b).sum())
            bad.append(f"{k}: {n} of {a.size} values differ (first at {np.argwhere(a != b)[0].tolist()})")
    for k in ("weight_shift_in", "weight_shift_rec", "weight_shift_out"):
        if k in spec and int(nir_spec.get(k, 0)) != int(spec[k]):
            bad.append(f"{k}: {nir_spec.get(k)} vs {int(spec[k])}")
    if "dt" in spec and not np.isclose(float(nir_spec.get("dt") or 0.0), float(spec["dt"]), rtol=1e-6):
        bad.append(f"dt: {nir_spec.get('dt')} vs {float(spec['dt'])}")
    return bad


def cmd_run(deploy_dir: str, result: str) -> int:
    d = Path(deploy_dir)
    rockpool, x = _xylo()
    with np.load(d / "spec.npz", allow_pickle=False) as z:
        spec = {k: (z[k].item() if z[k].ndim == 0 else z[k]) for k in z.files}
    nir_file = d / "network.nir"
    if not nir_file.is_file():
        raise RunnerError(f"{nir_file} is missing")
    bad = _compare(_map(str(nir_file), strict=True), spec)
    if bad:
        raise RunnerError("network.nir (via from_nir + mapper + channel_quantize) does not give "
                          "spec.npz: " + "; ".join(bad))
    with np.load(d / "expected.npz", allow_pickle=False) as z:
        xs = np.asarray(z["x"])
    T, B = xs.shape[:2]
    xs = xs.reshape(T, B, -1)
    sim = x.XyloSim.from_specification(**spec)
    C = np.asarray(spec["weights_out"]).shape[1]
    H = np.asarray(spec["weights_in"]).shape[1]
    out = np.zeros((T, B, C), np.int64)
    out_spikes = np.zeros((T, B, C), np.int64)
    hidden = np.zeros((T, B, H), np.int64)
    for b in range(B):
        sim.reset_state()
        o, _, rec = sim(xs[:, b, :].astype(np.int64), record=True)
        out[:, b] = np.asarray(rec["Vmem_out"]).reshape(T, C)
        out_spikes[:, b] = np.asarray(o).reshape(T, C)
        hidden[:, b] = np.asarray(rec["Spikes"]).reshape(T, H)
    res = {"out": out, "layer:hidden": hidden, "layer:out_spikes": out_spikes}
    res["versions"] = np.array(json.dumps({
        "rockpool": rockpool.__version__, "xylosim": version("xylosim"), "nir": version("nir"),
        "numpy": np.__version__, "torch": version("torch"),
        "simulator": "rockpool.devices.xylo.syns61201.XyloSim (xylosim.v2)",
        "nir_matches_spec": True, "samples": int(B)}))
    tmp = f"{result}.tmp.npz"
    np.savez(tmp, **res)
    os.replace(tmp, result)
    print(f"XyloSim ran {B} samples x {T} steps; network.nir maps to spec.npz exactly")
    return 0


def main(argv: list[str]) -> int:
    try:
        if len(argv) == 2 and argv[0] == "map":
            return cmd_map(argv[1])
        if len(argv) == 2:
            return cmd_run(argv[0], argv[1])
        raise RunnerError("usage: xylo_runner.py DEPLOY_DIR RESULT_NPZ | xylo_runner.py map NIR_FILE")
    except Exception as exc:  # noqa: BLE001 - one line on stderr, exit 2
        sys.stderr.write(f"xylo runner: {_one_line(exc)}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
