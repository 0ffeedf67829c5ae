"""Speck 2f's cores: per-layer kernel, neuron and bias memory as sinabs 3.1.3 computes it, and
the assignment of layers to ``speck2fdevkit``'s nine cores (one layer per core).

Formulas (sinabs ``DynapcnnLayer.memory_summary``): kernel ``c_in * 2^(ceil(log2(k*k)) +
ceil(log2(c_out)))``, neurons ``c_out * 2^(ceil(log2(h_out)) + ceil(log2(w_out)))``, bias
``c_out``; per-core tables from ``sinabs/backend/dynapcnn/chips/dynapcnn.py``. Used by the
chip (:mod:`trt_nm.chip.speck`) and the exporter's ``--check`` (:mod:`trt_nm.exporters.speck`).
"""

from __future__ import annotations

from typing import Any

#: the device sinabs maps onto (plain "speck2f" has no config builder)
DEVICE = "speck2fdevkit"
#: per-core memories of speck2fdevkit (entries), sinabs 3.1.3 chips/dynapcnn.py
KERNEL_MEMORY = tuple(k * 1024 for k in (16, 16, 16, 32, 32, 64, 64, 16, 16))
NEURON_MEMORY = tuple(k * 1024 for k in (64, 64, 64, 32, 32, 16, 16, 16, 16))
BIAS_MEMORY = 1024
#: hardware kernel side limit (checked by samna's validate_configuration, which needs samna)
MAX_KERNEL = 16
#: sum-pooling sizes a core can apply to its output
POOL_SIZES = (1, 2, 4)


def _ceil_log2(n: int) -> int:
    return 0 if n <= 1 else int(n - 1).bit_length()


def kernel_memory(c_in: int, k: int | tuple[int, int], c_out: int) -> int:
    """Kernel memory entries of one layer with kernel side ``k`` (or ``(kh, kw)``), as sinabs'
    ``memory_summary()['kernel']``."""
    kh, kw = (k, k) if isinstance(k, int) else k
    return int(c_in) * 2 ** (_ceil_log2(int(kh) * int(kw)) + _ceil_log2(int(c_out)))


def neuron_memory(c_out: int, h: int, w: int) -> int:
    """Neuron memory entries of one layer (sinabs ``memory_summary()['neuron']``)."""
    return int(c_out) * 2 ** (_ceil_log2(int(h)) + _ceil_log2(int(w)))


def assign_cores(needs: list[tuple[int, int, int]]) -> list[int] | None:
    """Cores for layers ``[(kernel, neuron, bias) entries]`` (one layer per core, a bipartite
    matching as sinabs' ``get_valid_mapping`` finds one); None when no assignment exists."""
    fits = [[c for c in range(len(KERNEL_MEMORY))
             if k <= KERNEL_MEMORY[c] and n <= NEURON_MEMORY[c] and b <= BIAS_MEMORY]
            for k, n, b in needs]
    owner: dict[int, int] = {}

    def place(i: int, seen: set[int]) -> bool:
        free = [c for c in fits[i] if c not in owner]
        if free:  # the lowest free core first, then augmenting paths
            owner[free[0]] = i
            return True
        for c in fits[i]:
            if c in seen:
                continue
            seen.add(c)
            if place(owner[c], seen):
                owner[c] = i
                return True
        return False

    for i in range(len(needs)):
        if not place(i, set()):
            return None
    cores = [0] * len(needs)
    for c, i in owner.items():
        cores[i] = c
    return cores


def memory_table(layers: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-layer memory needs (sinabs' formulas) and the core assignment of a layer list."""
    rows = []
    for spec in layers:
        c_out, h, w = spec["out_shape"]
        rows.append({"name": spec["name"],
                     "kernel": kernel_memory(spec["in_shape"][0], spec["kernel"], c_out),
                     "neuron": neuron_memory(c_out, h, w), "bias": int(c_out)})
    cores = assign_cores([(r["kernel"], r["neuron"], r["bias"]) for r in rows])
    return {"device": DEVICE, "layers": rows, "layer2core": cores}


def layer_problems(layers: list[dict[str, Any]]) -> list[str]:
    """Design-rule violations of a Speck layer list (each one line; empty: it maps)."""
    out: list[str] = []
    if len(layers) > len(KERNEL_MEMORY):
        out.append(f"{len(layers)} layers > {len(KERNEL_MEMORY)} cores on {DEVICE} (one layer per core)")
    table = memory_table(layers)
    for spec, row in zip(layers, table["layers"]):
        name = spec["name"]
        if row["kernel"] > max(KERNEL_MEMORY):
            out.append(f"{name}: kernel memory {row['kernel']:,} > {max(KERNEL_MEMORY):,} entries "
                       "(largest core); use fewer channels or a smaller kernel")
        if row["neuron"] > max(NEURON_MEMORY):
            out.append(f"{name}: neuron memory {row['neuron']:,} > {max(NEURON_MEMORY):,} entries "
                       "(largest core); use fewer channels or a larger stride / pooling")
        if row["bias"] > BIAS_MEMORY:
            out.append(f"{name}: {row['bias']} output channels > {BIAS_MEMORY} (bias memory)")
        if spec["kernel"] > MAX_KERNEL:
            out.append(f"{name}: kernel {spec['kernel']} > {MAX_KERNEL} (hardware limit)")
        if spec["pool"] not in POOL_SIZES:
            out.append(f"{name}: sum pooling {spec['pool']} not in {POOL_SIZES}")
        if spec["kind"] == "dense" and spec["in_shape"][1] != spec["in_shape"][2]:
            out.append(f"{name}: a dense layer becomes a conv over its {spec['in_shape'][1]}x"
                       f"{spec['in_shape'][2]} input; sinabs needs a square kernel")
    if len(layers) <= len(KERNEL_MEMORY) and table["layer2core"] is None and not out:
        out.append(f"no assignment of the {len(layers)} layers to {DEVICE}'s cores fits their memories")
    return out
