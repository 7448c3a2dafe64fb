#!/usr/bin/env bash
# Second lease: the fast-path designs suggested by the first (small cache-resident
# slots, the per-chunk loop in C calls) and decode with no host work between steps.
set -uo pipefail
OUT="${OUT:-/tmp/llmprof-out}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
export CUDA_DEVICE_ORDER=PCI_BUS_ID LLMPROF_PROGRESS=0 TOKENIZERS_PARALLELISM=false
PY="${PYTHON:-python3}"
step() { echo; echo "=== $(date +%T) ($SECONDS s) $*"; }
step "build synthetic:qwen2-7b"
"$PY" -m profiler models --build synthetic:qwen2-7b 2>&1 | tail -1
FOLDER=$("$PY" -c "from profiler.sources import resolve_local; print(resolve_local('synthetic:qwen2-7b').path)")
step "fast path designs (warm)"
timeout 150 "$PY" scripts/gpu_fastpath_sweep.py "$FOLDER" "$OUT/sweep2.json"
step "decode, no host work between steps"
timeout 150 "$PY" scripts/gpu_decode_loop.py "$FOLDER" "$OUT/decode2.json"
step done
