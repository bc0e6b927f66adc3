#!/usr/bin/env bash
# The GPU check: one command, about 5-8 minutes on one GPU, writes benchmarks/results-gpu.json.
#
#   bash benchmarks/gpu_check.sh [--data-dir DIR] [--out FILE]
#
# Measures, on the first visible CUDA device (see benchmarks/gpu_check.py):
#   1. images/s of cnn-small and resnet18 on CIFAR-10 through the harness (bf16, channels_last), without
#      and with torch.compile, and the fraction of step time spent outside the model;
#   2. one leaderboard cell trained on CUDA end to end (`prunebench leaderboard`, MLflow tracking);
#   3. two leaderboard jobs placed on one GPU (--jobs 2 --gpus-per-run 0.5), each worker's CUDA_VISIBLE_DEVICES.
# Without a CUDA GPU it stops at once with one line and exit code 2.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ! python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu_check: no CUDA GPU visible to torch (torch.cuda.is_available() is False); run it on a machine with one" >&2
  exit 2
fi
exec timeout --signal=TERM 480 python benchmarks/gpu_check.py "$@"
