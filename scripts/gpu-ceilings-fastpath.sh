#!/usr/bin/env bash
# Issue 15 on the lent GPU, in one run (about 6 minutes; step timeouts cap it at 10):
#   bash scripts/gpu-ceilings-fastpath.sh OUT        (or OUT=... bash scripts/...)
# 1. builds synthetic:qwen2-7b (random weights, 15.2 GB bf16, 4 shards);
# 2. `llmprof ceilings` with every pattern, FIRST, on the model's filesystem (scratch
#    file sized from the model: 1 GiB) -> OUT/ceilings.{txt,json};
# 3. `llmprof load --variants` cold and warm, judged against those ceilings (cached, so
#    not measured again) -> OUT/variants.{txt,json,err};
# 4. fastload equality on the GPU (pytest -m gpu) -> OUT/fastload-gpu.txt;
# 5. the tables the closing note quotes -> OUT/figures.{md,json};
# 6. last (least needed): llmprof's copier at 6 plans, warm, in one process
#    -> OUT/copier-sweep.{md,json} (rows for reports/gpu-h200/fastpath-sweep.md).
# DEVICE=cpu MODEL=synthetic:tiny runs it without a GPU (all but step 4), as tested here.
set -uo pipefail
OUT="${1:-${OUT:-/tmp/llmprof-i15}}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
export LLMPROF_PROGRESS=0
PY="${PYTHON:-python3}"
DEVICE="${DEVICE:-cuda}"
MODEL="${MODEL:-synthetic:qwen2-7b}"
T0=$(date +%s)
step() { echo; echo "=== $(date +%T) ($(( $(date +%s) - T0 )) s) $*" | tee -a "$OUT/steps.log"; }

step "machine"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null || true
  "$PY" -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__)"
  nproc; free -g | head -2; } | tee "$OUT/machine.txt"

step "build $MODEL"
FOLDER=$("$PY" - "$MODEL" <<'PYEOF'
import sys
from profiler.sources import resolve_local
print(resolve_local(sys.argv[1], progress=lambda m: print(m, file=sys.stderr)).path)
PYEOF
)
echo "model folder: $FOLDER"; du -sh "$FOLDER"

step "ceilings, every pattern (first: the loads below are judged against these)"
timeout 120 "$PY" -m profiler ceilings --device "$DEVICE" --refresh --path "$FOLDER" \
  --json "$OUT/ceilings.json" > "$OUT/ceilings.txt" 2> "$OUT/ceilings.err"
echo "rc=$?"; cat "$OUT/ceilings.txt"

step "ways of loading, cold and warm"
timeout 300 "$PY" -m profiler load "$MODEL" --device "$DEVICE" --dtype bfloat16 --cache cold,warm \
  --variants --no-decode --timeout 150 --json "$OUT/variants.json" \
  > "$OUT/variants.txt" 2> "$OUT/variants.err"
echo "rc=$?"; cat "$OUT/variants.txt"; tail -5 "$OUT/variants.err"

if [ "$DEVICE" != "cpu" ]; then
  step "fastload equals transformers on the GPU"
  timeout 90 "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/integration/test_fastload.py \
    "tests/integration/test_staged_equals_native.py::test_cuda_loads_equal_from_pretrained_on_the_device" \
    > "$OUT/fastload-gpu.txt" 2>&1
  echo "rc=$?"; tail -3 "$OUT/fastload-gpu.txt"
fi

step "figures"
"$PY" scripts/fastpath_figures.py "$OUT/variants.json" "$OUT/ceilings.json" "$OUT" > /dev/null
cat "$OUT/figures.md"
step "llmprof's copier at several plans, warm (in one process)"
timeout 90 "$PY" scripts/gpu_copier_sweep.py "$FOLDER" "$OUT" "$DEVICE" > "$OUT/copier-sweep.txt" 2>&1
echo "rc=$?"; tail -9 "$OUT/copier-sweep.txt"

step "done"
