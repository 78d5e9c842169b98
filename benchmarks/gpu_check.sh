#!/usr/bin/env bash
# What one GPU gives: training seconds per epoch and inference images/s of the seed-000 network and
# the segmentation U-Net, on the CPU and on the first CUDA GPU (mixed precision), synthetic data.
# Prints JSON lines (the last ones: gpu_speedup_train / gpu_speedup_infer per network). Run once:
#
#   benchmarks/gpu_check.sh            # a few minutes on the CPU (under 2 on one busy core), seconds on a GPU
#   QUICK=1 benchmarks/gpu_check.sh    # small version (a minute)
#   LIMIT_S=300 benchmarks/gpu_check.sh
#
# Each step runs under a hard time limit (LIMIT_S seconds, default 600); a step that passes it
# prints a "timed_out" line and the script goes on. Without a GPU it says why and stops after the CPU.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
LIMIT=${LIMIT_S:-600}
EXTRA=()
[ -n "${QUICK:-}" ] && EXTRA+=(--quick)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

step() {  # step NAME ARGS...: one device under the time limit; its lines are printed and kept
    local name=$1 rc
    shift
    timeout --kill-after=15 "$LIMIT" "$PY" -m her2dlr.bench.device_speed "$@" "${EXTRA[@]}" | tee "$tmp/$name.jsonl"
    rc=${PIPESTATUS[0]}
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        printf '{"bench": "gpu-check", "metric": "timed_out", "value": %s, "step": "%s"}\n' "$LIMIT" "$name"
    elif [ "$rc" -ne 0 ]; then
        printf '{"bench": "gpu-check", "metric": "failed", "value": %s, "step": "%s"}\n' "$rc" "$name"
    fi
}

step cpu --device cpu
step gpu --device cuda
if grep -q '"train_seconds_per_epoch"' "$tmp/gpu.jsonl" 2>/dev/null; then
    timeout 60 "$PY" -m her2dlr.bench.device_speed --compare "$tmp/cpu.jsonl" "$tmp/gpu.jsonl"
fi
