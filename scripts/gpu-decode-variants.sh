#!/usr/bin/env bash
# Issue 14 (part A) on the lent GPU: the ways of decoding, ranked, and every first
# call explained, for the Qwen2-7B shape in bfloat16 at batch 1.
#
#   bash scripts/gpu-decode-variants.sh OUT        (or OUT=... bash scripts/...)
#
# Settings from the environment (defaults for the GPU check):
#   VARIANTS    comma list or "all" [all]: generate, static, static-compile,
#               static-fullgraph, attn:sdpa, attn:eager, attn:flash_attention_2,
#               seed-loop, graph-loop
#   MODEL [synthetic:qwen2-7b]  DEVICE [cuda]  DTYPE [bfloat16]  NEW_TOKENS [64]
#   WARM_CALLS [3]  CHILD_TIMEOUT [240] seconds per variant  PYTHON [python3]
# On CPU, for a dry run: MODEL=synthetic:tiny DEVICE=cpu DTYPE=float32 bash ... OUT
#
# Writes into OUT: decode-variants.json (run records, one per variant),
# decode-variants.md (report with the ranked table), console.txt (the table as
# printed), ranked.json (the ranked rows and first-call lines as JSON),
# stderr.txt (progress), versions.txt and gpu.txt (what it ran on).
# Expected: about 6-7 minutes for all variants on an H200 (the model is built
# first, about 1 minute; each variant loads it in a fresh process); the whole
# command is cut at 560 s. Where one 600 s call is too short, run two subsets into
# two folders (the reference `generate` is always run, so both tables compare
# with it, and the built model is reused from the cache):
#   VARIANTS=static,static-compile,static-fullgraph,graph-loop bash ... OUT/a
#   VARIANTS=attn:sdpa,attn:eager,attn:flash_attention_2,seed-loop bash ... OUT/b
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-${OUT:-/tmp/llmprof-decode-variants}}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
export CUDA_DEVICE_ORDER=PCI_BUS_ID LLMPROF_PROGRESS=0
PY="${PYTHON:-python3}"
MODEL="${MODEL:-synthetic:qwen2-7b}"
DEVICE="${DEVICE:-cuda}"
DTYPE="${DTYPE:-bfloat16}"
NEW_TOKENS="${NEW_TOKENS:-64}"
WARM_CALLS="${WARM_CALLS:-3}"
CHILD_TIMEOUT="${CHILD_TIMEOUT:-240}"
VARIANTS="${VARIANTS:-all}"

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.memory --format=csv \
  >"$OUT/gpu.txt" 2>&1 || echo "no nvidia-smi" >"$OUT/gpu.txt"
"$PY" - >"$OUT/versions.txt" 2>&1 <<'PYEOF'
import importlib.util, torch, transformers
print("torch", torch.__version__, "transformers", transformers.__version__)
print("flash_attn installed:", importlib.util.find_spec("flash_attn") is not None)
PYEOF

echo "$(date +%T) decode variants: $MODEL $DEVICE $DTYPE, $NEW_TOKENS tokens, [$VARIANTS]"
timeout 560 "$PY" -m profiler decode "$MODEL" --device "$DEVICE" --dtype "$DTYPE" \
  --batch 1 --new-tokens "$NEW_TOKENS" --warm-calls "$WARM_CALLS" \
  --variants "$VARIANTS" --timeout "$CHILD_TIMEOUT" --ceilings off \
  --json "$OUT/decode-variants.json" --report "$OUT/decode-variants.md" \
  >"$OUT/console.txt" 2>"$OUT/stderr.txt"
rc=$?
echo "$(date +%T) llmprof exit $rc"
if [ -f "$OUT/decode-variants.json" ]; then
  "$PY" -m profiler.render.decode_variants "$OUT/decode-variants.json" >"$OUT/ranked.json"
fi
cat "$OUT/console.txt"
tail -5 "$OUT/stderr.txt"
exit "$rc"
