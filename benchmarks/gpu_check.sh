#!/usr/bin/env bash
# One GPU check (see benchmarks/gpu_check.py): about 8 minutes on one H100/H200; without a CUDA
# device, or with --cpu-only, only its CPU part runs. Results: benchmarks/results/gpu_check.json.
#   bash benchmarks/gpu_check.sh [--cpu-only] [more gpu_check.py options]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}"
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" exec "$PYTHON" benchmarks/gpu_check.py "$@"
