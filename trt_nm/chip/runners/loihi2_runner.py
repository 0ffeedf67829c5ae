"""Run a trt_nm Loihi 2 deployment in Lava's bit-accurate CPU simulation (vendor venv only).

Runs with the vendor venv's Python (lava-nc 0.10.0, lava-dl 0.6.0 netx, h5py, numpy); never
imports trt_nm.

Usage:
    python loihi2_runner.py DEPLOY_DIR RESULT_NPZ
        loads DEPLOY_DIR/network.net with lava-dl's ``netx.hdf5.Network``, feeds
        DEPLOY_DIR/expected.npz["x"] ([T, B, ...] binary spikes) through a
        ``lava.proc.io.source.RingBuffer``, records every layer's spikes with
        ``lava.proc.io.sink.RingBuffer`` processes and writes RESULT_NPZ: ``out`` int64
        [T, B, C], ``layer:NAME`` int64 [T, B, n] per hidden layer, ``versions`` (json text),
        ``seconds`` (Lava run time) and ``steps`` (Lava steps run).
    python loihi2_runner.py load NETX_FILE
        builds the netx network and runs it for 2 steps: exit 0 if Lava accepts it, exit 3 with
        Lava's error on one line if it rejects it.
    python loihi2_runner.py map NIR_FILE
        exit 2: Lava has no NIR importer.

All samples run in ONE Lava run: sample b occupies steps [b P, (b + 1) P) with P = T + L (L
dense layers; the L extra zero steps let the last sample's spikes reach the readout) and
netx's ``reset_interval = P``, ``reset_offset = 1``: layer l's u and v are zeroed at the start
of its own window (netx offsets each layer's reset by one step per layer). Lava's step tau
(1-based) integrates input step tau - 2 - l in layer l, and a sink stores step tau at index
tau - 1, so sample b's record of every layer is sink index b P + t, t = 0..T-1.

Errors: one line on stderr, exit 2.
"""

import json
import os
import platform
import sys
import time

import numpy as np

#: samples per Lava run (bounds the ring buffers' memory)
CHUNK = 1024


def fail(msg, code=2):
    sys.stderr.write(" ".join(str(msg).split()) + "\n")
    sys.exit(code)


def versions():
    from importlib.metadata import version

    out = {"python": platform.python_version(), "numpy": np.__version__}
    for pkg in ("lava-nc", "lava-dl", "h5py"):
        try:
            out[pkg] = version(pkg)
        except Exception:  # noqa: BLE001
            out[pkg] = "unknown"
    return out


def layer_names(path):
    import h5py

    with h5py.File(path, "r") as f:
        layers = f["layer"]
        keys = sorted(layers.keys(), key=int)
        names = []
        for k in keys:
            g = layers[k]
            kind = g["type"][()]
            kind = (kind[0] if getattr(kind, "shape", ()) else kind).decode("ascii")
            # netx builds one block per dense/conv layer (and per input layer with a neuron);
            # flatten only rewires, any other type makes netx raise
            if kind == "flatten" or (kind == "input" and "neuron" not in g):
                continue
            name = g.attrs.get("name", f"layer{k}")
            names.append(name.decode() if isinstance(name, bytes) else str(name))
    return names


def run_lava(path, x, names):
    """x: int [T, B, n_in]; returns {name: int64 [T, B, n]} and the Lava seconds and steps."""
    from lava.lib.dl.netx.hdf5 import Network
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    T, B, n_in = x.shape
    L = len(names)
    P = T + L
    steps = B * P + 1
    data = np.zeros((n_in, steps), np.int32)
    xs = np.zeros((B, P, n_in), np.int32)
    xs[:, :T] = (x != 0).transpose(1, 0, 2)
    data[:, :B * P] = xs.reshape(B * P, n_in).T
    net = Network(net_config=path, reset_interval=P, reset_offset=1)
    if len(net.layers) != L:
        raise RuntimeError(f"netx built {len(net.layers)} layers, the file names {L}")
    if net.inp.shape != (n_in,):
        raise RuntimeError(f"network takes {net.inp.shape} inputs, x has {n_in}")
    src = Source(data=data)
    src.s_out.connect(net.inp)
    sinks = []
    for layer in net.layers:
        sink = Sink(shape=layer.out.shape, buffer=steps)
        layer.out.connect(sink.a_in)
        sinks.append(sink)
    t0 = time.perf_counter()
    try:
        net.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        recs = [np.asarray(s.data.get()) for s in sinks]
    finally:
        net.stop()
    seconds = time.perf_counter() - t0
    out = {}
    for name, r in zip(names, recs):
        r = r[:, :B * P].reshape(r.shape[0], B, P)[:, :, :T]  # [n, B, T]
        out[name] = r.transpose(2, 1, 0).astype(np.int64)
    return out, seconds, steps


def deploy_mode(deploy_dir, result):
    path = os.path.join(deploy_dir, "network.net")
    exp = os.path.join(deploy_dir, "expected.npz")
    for p in (path, exp):
        if not os.path.isfile(p):
            fail(f"missing {p}")
    with np.load(exp, allow_pickle=False) as z:
        x = z["x"]
    T, B = x.shape[:2]
    x = x.reshape(T, B, -1)
    names = layer_names(path)
    parts = {n: [] for n in names}
    seconds, steps = 0.0, 0
    for b0 in range(0, B, CHUNK):
        recs, s, n = run_lava(path, x[:, b0:b0 + CHUNK], names)
        seconds += s
        steps += n
        for k, v in recs.items():
            parts[k].append(v)
    res = {}
    for name in names:
        res["out" if name == "out" else "layer:" + name] = np.concatenate(parts[name], axis=1)
    res["versions"] = np.array(json.dumps(versions()))
    res["seconds"] = np.array(seconds)
    res["steps"] = np.array(steps)
    tmp = result + ".tmp.npz"
    np.savez(tmp, **res)
    os.replace(tmp, result)


def load_mode(path):
    if not os.path.isfile(path):
        fail(f"missing {path}")
    try:
        names = layer_names(path)
        import h5py

        with h5py.File(path, "r") as f:
            n_in = int(np.prod(f["layer"]["0"]["shape"][()]))
        run_lava(path, np.zeros((1, 1, n_in), np.int32), names or ["out"])
    except Exception as exc:  # noqa: BLE001 - Lava's verdict, on one line
        msg = " ".join(str(exc).split())
        print(f"lava rejects {os.path.basename(path)}: {type(exc).__name__}: {msg}")
        sys.exit(3)
    print(f"lava accepts {os.path.basename(path)} ({len(names)} layers)")


def main(argv):
    if len(argv) == 3 and argv[1] == "map":
        fail("Lava (lava-nc 0.10.0, lava-dl 0.6.0) has no NIR importer; it loads netx HDF5 "
             "files (use `load NETX_FILE`)")
    if len(argv) == 3 and argv[1] == "load":
        load_mode(argv[2])
        return
    if len(argv) != 3:
        fail("usage: loihi2_runner.py DEPLOY_DIR RESULT_NPZ | load NETX_FILE")
    try:
        deploy_mode(argv[1], argv[2])
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001 - one line for trt_nm
        fail(f"{type(exc).__name__}: {exc}")


if __name__ == "__main__":
    main(sys.argv)
