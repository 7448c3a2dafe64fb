#!/usr/bin/env bash
# First lease of a session on the lent GPU: measure before designing. Builds the
# synthetic Qwen2-7B shape, then (each under its own time limit, results under $OUT):
# the fast-path designs against the two sides that bound them, the user's own load
# traced, the decode levers, and the disk read patterns on a freshly written file.
set -uo pipefail
OUT="${OUT:-/tmp/llmprof-out}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
export CUDA_DEVICE_ORDER=PCI_BUS_ID LLMPROF_PROGRESS=0 TOKENIZERS_PARALLELISM=false
PY="${PYTHON:-python3}"
step() { echo; echo "=== $(date +%T) ($SECONDS s) $*"; }

step machine
nvidia-smi --query-gpu=name,driver_version,memory.total,pcie.link.gen.current,pcie.link.width.current,power.draw --format=csv
"$PY" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
nproc; free -g | head -2; df -h "$HOME" | tail -1; grep -c hypervisor /proc/cpuinfo | head -1

step "build synthetic:qwen2-7b"
"$PY" -m profiler models --build synthetic:qwen2-7b 2>&1 | tail -1
FOLDER=$("$PY" -c "from profiler.sources import resolve_local; print(resolve_local('synthetic:qwen2-7b').path)")
ls -la "$FOLDER"

step "disk read patterns (cold, each shard evicted and checked first)"
timeout 90 "$PY" scripts/gpu_disk_patterns.py "$FOLDER" "$OUT/disk.json"

step "fast path designs (warm)"
timeout 170 "$PY" scripts/gpu_fastpath_sweep.py "$FOLDER" "$OUT/sweep.json"

step "trace of the user's own load (warm)"
timeout 100 "$PY" scripts/gpu_trace_check.py "$FOLDER" "$OUT"

step "decode levers"
timeout 290 "$PY" scripts/gpu_decode_explore.py "$FOLDER" "$OUT/decode.json"
step done
