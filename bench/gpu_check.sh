#!/usr/bin/env bash
# GPU check for an offline machine that has torch (+ torchvision, triton) but no network.
#
#   bash bench/gpu_check.sh [WHEEL_DIR]     # default wheels/ (built by bench/make_wheelhouse.sh)
#
# 1. installs trt-nm and its dependencies from the local wheel directory into a venv that
#    sees the system torch (--system-site-packages; nothing is downloaded),
# 2. runs bench/train_step.py (full sizes) -> bench/out/train_step.json + the table,
# 3. trains cnn-small on the embedded mnist5k for 2 epochs in fp32 eager and in
#    bf16 autocast + torch.compile, and prints both test accuracies (they must agree
#    within 0.5 pp) and the epoch times.
# Everything it prints is also in bench/out/gpu_check.log.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS="$(cd "${1:-wheels}" && pwd)"
OUT=bench/out
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
PY="${PYTHON:-python3}"
VENV="${VENV:-/tmp/trt_nm_gpu_venv}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv --system-site-packages "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --no-index --find-links "$WHEELS" \
  trt-nm snntorch norse nir nirtorch h5py spikingjelly
P="$VENV/bin/python"
"$P" - <<'PY'
import torch, platform
print("torch", torch.__version__, "cuda", torch.version.cuda, "python", platform.python_version())
print("card", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "NO GPU")
for m in ("snntorch", "norse", "spikingjelly", "triton"):
    try:
        mod = __import__(m); print(m, getattr(mod, "__version__", "?"))
    except Exception as e:
        print(m, "MISSING", type(e).__name__)
PY
date -u +"date %Y-%m-%dT%H:%M:%SZ"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader || true

echo "== training step benchmark"
"$P" bench/train_step.py --device cuda --json "$OUT/train_step.json"

echo "== 2-epoch training, fp32 eager vs bf16 + compile (cnn-small, mnist5k, T=4)"
COMMON=(--model cnn-small -T 4 --epochs 2 --batch-size 128 --device cuda --quiet --seed 0)
"$P" -m trt_nm train "${COMMON[@]}" --out "$OUT/run_fp32" | tee "$OUT/run_fp32.txt"
"$P" -m trt_nm train "${COMMON[@]}" --amp bf16 --compile --out "$OUT/run_fast" | tee "$OUT/run_fast.txt"
"$P" - "$OUT" <<'PY'
import csv, sys
out = sys.argv[1]
acc = {}
for k in ("run_fp32", "run_fast"):
    rows = list(csv.DictReader(open(f"{out}/{k}/log.csv")))
    acc[k] = float(rows[-1]["test_acc"])
    print(f"{k}: test acc {acc[k]:.2f}%  epoch seconds {[r['seconds'] for r in rows]}")
d = abs(acc["run_fp32"] - acc["run_fast"])
print(f"accuracy difference fp32 vs bf16+compile: {d:.2f} pp ({'OK' if d <= 0.5 else 'ABOVE 0.5 pp'})")
PY
if [ "$(nproc)" -ge 2 ] && "$P" -c "import torch,sys; sys.exit(torch.cuda.device_count() < 2)"; then
  echo "== 2-GPU torchrun, 1 epoch"
  "$VENV/bin/torchrun" --standalone --nproc_per_node 2 -m trt_nm train "${COMMON[@]}" --epochs 1 \
    --out "$OUT/run_ddp"
fi
echo "done: $OUT/train_step.json, $OUT/gpu_check.log"
