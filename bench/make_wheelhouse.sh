#!/usr/bin/env bash
# Build a wheel directory for bench/gpu_check.sh on an OFFLINE GPU machine that already has
# torch, torchvision and triton. torch, torchvision, triton and the nvidia-* CUDA wheels are
# NOT included (they are several GB and already installed there).
#
#   PYTHON=/tmp/venv/bin/python bash bench/make_wheelhouse.sh [WHEEL_DIR]   # default wheels/
#
# The package set is the one in PYTHON's environment (a working trt-nm dev venv), pinned to
# the exact installed versions and downloaded with --no-deps, so pip never pulls torch in.
# Needs PyPI access here. Wheels are for this interpreter's Python version; set
# PY_VERSION=3.12 (for example) to fetch binary wheels for another one. Never commit wheels/.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-wheels}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
"$PY" -m pip wheel --no-deps --no-build-isolation -w "$OUT" . >/dev/null   # trt-nm itself
REQS="$(mktemp)"
# everything installed except torch & co, the project itself and tools the check does not use
"$PY" -m pip list --format=freeze --exclude-editable \
  | grep -viE '^(nvidia-|cuda-)' \
  | grep -viE '^(torch|torchvision|torchaudio|triton|trt-nm|pip|setuptools|wheel|ruff|pytest|pluggy|iniconfig|onnx|onnxruntime|onnxscript|tensorboard|tensorboard-data-server)==' \
  > "$REQS"
EXTRA=()
if [ -n "${PY_VERSION:-}" ]; then
  EXTRA=(--python-version "$PY_VERSION" --only-binary=:all:)
fi
"$PY" -m pip download --no-deps -d "$OUT" "${EXTRA[@]}" -r "$REQS" >/dev/null
rm -f "$REQS"
echo "wheelhouse: $OUT ($(ls "$OUT" | wc -l) files, $(du -sh "$OUT" | cut -f1))"
