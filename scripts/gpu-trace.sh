#!/usr/bin/env bash
# Issue 13 on the lent GPU: trace the user's own load of the synthetic Qwen2-7B shape
# (15.2 GB bf16), cold and warm, with .to("cuda") and with device_map="cuda".
#   bash scripts/gpu-trace.sh OUT_DIR        (or OUT=... bash scripts/gpu-trace.sh)
# Writes under OUT_DIR:
#   to.json.gz, device-map.json.gz          run records (staged + traced native view)
#   trace-to.json.gz, trace-device-map.json.gz   Chrome trace-event files (--trace)
#   to.txt, device-map.txt                  the console tables (native phases first)
#   attribution-summary.json / .md                attribution per run, staged beside it,
#                                           top imports of a fresh process
#   timeline_*.png                          the timeline pictures
#   report.md + report_files/               the markdown report of all runs
# About 4-5 minutes: the build (~1 min) and 8 fresh processes (~10 s of imports each).
# CPU dry run: TRACE_MODEL=smollm2-135m TRACE_DEVICE=cpu bash scripts/gpu-trace.sh /tmp/x
set -uo pipefail
OUT="${1:-${OUT:-/tmp/llmprof-trace}}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
export CUDA_DEVICE_ORDER=PCI_BUS_ID LLMPROF_PROGRESS=0 TOKENIZERS_PARALLELISM=false
PY="${PYTHON:-python3}"
MODEL="${TRACE_MODEL:-synthetic:qwen2-7b}"
DEVICE="${TRACE_DEVICE:-cuda}"
CACHE="${TRACE_CACHE:-cold,warm}"
step() { echo; echo "=== $(date +%T) ($SECONDS s) $*"; }

step machine
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null || true
"$PY" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"

if [[ "$MODEL" == synthetic:* ]]; then
  step "build $MODEL"
  "$PY" -m profiler models --build "$MODEL" 2>&1 | tail -1
fi

for mode in to device-map; do
  extra=()
  [ "$mode" = device-map ] && extra=(--device-map)
  step "$MODEL · native with $mode · cache $CACHE (traced)"
  timeout 170 "$PY" -m profiler load "$MODEL" --device "$DEVICE" --dtype bfloat16 \
    --cache "$CACHE" --no-decode --ceilings off "${extra[@]}" \
    --trace "$OUT/trace-$mode.json" --json "$OUT/$mode.json" > "$OUT/$mode.txt" 2> "$OUT/$mode.err"
  echo "exit $?"; cat "$OUT/$mode.txt"; tail -3 "$OUT/$mode.err"
done

step "attribution summary and timelines"
runs=()
for mode in to device-map; do [ -s "$OUT/$mode.json" ] && runs+=("$OUT/$mode.json"); done
if [ "${#runs[@]}" -gt 0 ]; then
  "$PY" scripts/trace_summary.py "$OUT" "${runs[@]}" > /dev/null && cat "$OUT/attribution-summary.md"
  "$PY" -m profiler report "${runs[@]}" --out "$OUT/report.md" 2>&1 | tail -1
fi

step "validate and compress the trace files"
for f in "$OUT"/trace-to.json "$OUT"/trace-device-map.json; do
  [ -s "$f" ] || continue
  "$PY" -c "import json,sys; from profiler.render.chrome_trace import validate; d=json.load(open(sys.argv[1])); p=validate(d); print(sys.argv[1], len(d['traceEvents']), 'events,', 'valid' if not p else p[:3])" "$f"
done
gzip -f "$OUT"/trace-to.json "$OUT"/trace-device-map.json "$OUT"/to.json "$OUT"/device-map.json 2>/dev/null
ls -la "$OUT"
step done
