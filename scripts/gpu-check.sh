#!/usr/bin/env bash
# The whole GPU check in one script, for a lent GPU machine with torch and
# transformers preinstalled and no network: builds synthetic models there (never
# shipped), profiles them cold and warm, ranks the ways of loading, and writes
# everything under $GPU_OUT (default /tmp/llmprof-gpu). Run from the repo root.
#   bash scripts/gpu-check.sh [quick]
set -uo pipefail
OUT="${GPU_OUT:-/tmp/llmprof-gpu}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
export CUDA_DEVICE_ORDER=PCI_BUS_ID LLMPROF_PROGRESS=0
PY="${PYTHON:-python3}"
llmprof() { "$PY" -m profiler "$@"; }
step() { echo; echo "=== $(date +%T) $*"; }

step "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,pcie.link.gen.current,pcie.link.width.current --format=csv
"$PY" -c "import torch, transformers, huggingface_hub as h; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__, 'hub', h.__version__)"
df -h "$HOME" | tail -1; free -g | head -2; nproc

if [ "${1:-}" = "fastpath" ]; then
  step "build qwen2-7b"
  llmprof models --build synthetic:qwen2-7b 2>&1 | tail -1
  step "fast-path reader sweep"
  "$PY" scripts/gpu_fastpath_sweep.py synthetic:qwen2-7b 2>&1 | tee "$OUT/sweep.txt"
  step "ceilings (remeasured)"
  llmprof ceilings --device cuda --refresh --json "$OUT/ceilings.json" > "$OUT/ceilings.txt" 2>&1
  grep -E "^(disk|page|host|h2d|d2h|device|matmul)" "$OUT/ceilings.txt"
  step "qwen2-7b: ways of loading, ranked"
  llmprof load synthetic:qwen2-7b --device cuda --dtype bfloat16 --cache cold,warm --variants \
    --no-decode --timeout 300 --json "$OUT/qwen2-7b-variants.json" > "$OUT/variants.txt" 2> "$OUT/variants.err"
  cat "$OUT/variants.txt"
  step "done"
  exit 0
fi

step "gpu tests"
"$PY" -m pytest -q -m gpu tests 2>&1 | tail -5

step "smoke: tiny on cuda"
llmprof load synthetic:tiny --device cuda --new-tokens 8 --ceilings off --json "$OUT/tiny.json" > "$OUT/tiny.txt" 2>&1 || { tail -40 "$OUT/tiny.txt"; }
tail -5 "$OUT/tiny.txt"

step "ceilings"
llmprof ceilings --device cuda --json "$OUT/ceilings.json" 2>&1 | tee "$OUT/ceilings.txt"

[ "${1:-}" = "quick" ] && exit 0

step "build qwen2-0.5b and qwen2-7b (random weights; build time is not part of any profile)"
llmprof models --build synthetic:qwen2-0.5b 2>&1 | tail -2
llmprof models --build synthetic:qwen2-7b 2>&1 | tail -2

step "qwen2-0.5b: cold and warm, decode batch 1 and 16"
llmprof load synthetic:qwen2-0.5b --device cuda --dtype bfloat16 --cache cold,warm --repeat 2 \
  --batch 1,16 --new-tokens 64 --timeout 300 --json "$OUT/qwen2-0.5b.json" > "$OUT/qwen2-0.5b.txt" 2> "$OUT/qwen2-0.5b.err"
cat "$OUT/qwen2-0.5b.txt" | head -120

step "qwen2-7b: cold and warm, decode batch 1 and 16"
llmprof load synthetic:qwen2-7b --device cuda --dtype bfloat16 --cache cold,warm --repeat 2 \
  --batch 1,16 --new-tokens 64 --timeout 400 --json "$OUT/qwen2-7b.json" > "$OUT/qwen2-7b.txt" 2> "$OUT/qwen2-7b.err"
cat "$OUT/qwen2-7b.txt" | head -150

step "qwen2-7b: ways of loading, ranked"
llmprof load synthetic:qwen2-7b --device cuda --dtype bfloat16 --cache cold,warm --variants \
  --no-decode --timeout 300 --json "$OUT/qwen2-7b-variants.json" > "$OUT/variants.txt" 2> "$OUT/variants.err"
cat "$OUT/variants.txt"

step "report"
llmprof report "$OUT/qwen2-0.5b.json" "$OUT/qwen2-7b.json" -o "$OUT/report/gpu.md" --title "llmprof on the lent GPU machine"
step "done"
