#!/usr/bin/env bash
# GPU check of issue #14: the paper-shape bench (crema_d) on the GPU, then real epochs of joint and mie on a
# generated CREMA-D-sized release; writes reports/perf_gpu.csv (samples/s, peak memory, GPU-busy fraction, the
# projected time of the full IGM CREMA-D run). Options are benchmark/gpu_check.py's:
#
#   scripts/gpu_check.sh                     # on a CUDA machine (about 10 minutes on one H100-class GPU)
#   scripts/gpu_check.sh --bench-minutes 2 --workers 12
#   scripts/gpu_check.sh --dry-run --reports /tmp/r   # every step at toy sizes, any device (the test suite runs it)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi
exec "$PYTHON" -m benchmark.gpu_check "$@"
