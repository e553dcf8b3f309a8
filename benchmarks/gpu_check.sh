#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py): sd15 preset at 512x512 in bf16 on CUDA, under 8 minutes.
# Writes benchmarks/results/gpu_check.json. Extra arguments go to the script (e.g. --dry-run on a CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec timeout 480 "$PY" benchmarks/gpu_check.py "$@"
