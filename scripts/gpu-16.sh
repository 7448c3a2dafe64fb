#!/usr/bin/env bash
# Issue 16 on a machine with 2 GPUs: a model split across both GPUs with
# device_map="auto", and loaded with tensor parallelism under torchrun (--tp), each
# with a cold then a warm page cache. Writes JSON records, console output, a merged
# markdown report and figures.json (the numbers to quote) into the output folder.
#   bash scripts/gpu-16.sh OUT            # Qwen2-7B shape (15.2 GB bf16), 2 GPUs
#   LLMPROF_GPU16_CPU=1 bash scripts/gpu-16.sh OUT   # CPU fallback: tiny model, gloo
# Falls back to CPU by itself when fewer than 2 GPUs are visible. Run from the repo root.
set -uo pipefail
OUT="${1:-${OUT:-/tmp/llmprof-gpu16}}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
export CUDA_DEVICE_ORDER=PCI_BUS_ID LLMPROF_PROGRESS=0 TOKENIZERS_PARALLELISM=false
PY="${PYTHON:-python3}"
step() { echo; echo "=== $(date +%T) $*"; }

NGPU=$("$PY" -c "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)" 2>/dev/null || echo 0)
if [ "${LLMPROF_GPU16_CPU:-0}" = "1" ] || [ "$NGPU" -lt 2 ]; then
  MODE=cpu MODEL="${MODEL:-synthetic:tiny}" DEVICE=cpu TOKENS=4 CALLS=1 LIMIT=240
else
  MODE=gpu MODEL="${MODEL:-synthetic:qwen2-7b}" DEVICE=cuda TOKENS=32 CALLS=2 LIMIT=200
fi
echo "mode $MODE, model $MODEL, $NGPU GPU(s) visible" | tee "$OUT/mode.txt"
[ "$MODE" = gpu ] && nvidia-smi --query-gpu=index,name,memory.total,pci.bus_id --format=csv | tee "$OUT/gpus.csv"

step "build $MODEL (random weights; the build is not part of any profile)"
"$PY" -m profiler models --build "$MODEL" 2>&1 | tail -1

COMMON=(--dtype bfloat16 --new-tokens "$TOKENS" --warm-calls "$CALLS" --ceilings off)
for page in cold warm; do
  step "device_map=auto, page cache $page"
  timeout "$LIMIT" "$PY" -m profiler load "$MODEL" --device "$DEVICE" --device-map auto \
    --page "$page" "${COMMON[@]}" --json "$OUT/device-map-$page.json" \
    > "$OUT/device-map-$page.txt" 2> "$OUT/device-map-$page.err"
  echo "exit $?"; grep -A8 "^devices" "$OUT/device-map-$page.txt"
done
for page in cold warm; do
  step "tensor parallel (torchrun, 2 ranks), page cache $page"
  timeout "$LIMIT" "$PY" -m torch.distributed.run --standalone --nproc-per-node 2 \
    -m profiler load "$MODEL" --tp --device "$DEVICE" --page "$page" "${COMMON[@]}" \
    --json "$OUT/tp-$page.json" > "$OUT/tp-$page.txt" 2> "$OUT/tp-$page.err"
  echo "exit $?"; grep -A6 "^ranks" "$OUT/tp-$page.txt"
done

step "merged report and figures"
"$PY" -m profiler report "$OUT"/device-map-*.json "$OUT"/tp-*.json -o "$OUT/report.md" 2>&1 | tail -1
"$PY" - "$OUT" <<'PY'
import json, sys
from pathlib import Path
from profiler.analysis.placement import run_placement
from profiler.analysis.ranks import rank_spreads
from profiler.records.io import load_runs
out = Path(sys.argv[1]); figures = {}
for f in sorted(out.glob("*.json")):
    if f.name == "figures.json":
        continue
    runs = load_runs(f)
    for sp in rank_spreads(runs):
        figures[f.stem] = {
            "load_s_slowest_rank": sp.load_s, "slowest_rank": sp.slowest_rank,
            "skew_s": sp.skew_s, "end_skew_s": sp.end_skew_s,
            "ranks": [{"rank": r.rank, "device": r.device, "load_s": r.load_s,
                       "pg_init_s": r.pg_init_s, "barrier_s": r.barrier_s,
                       "bytes_held": r.bytes_placed, "decode_tokens_per_s": r.tokens_per_s,
                       "cache": r.cache} for r in sp.ranks]}
    for run in runs:
        p = run_placement(run)
        if p is not None:
            figures[f.stem] = {
                "load_s": p.load_s, "imbalance": p.imbalance, "bounding": p.bounding,
                "bound_by": p.bound_by, "cache": run.cache.label,
                "devices": [d.__dict__ | {"h2d_gbps": d.h2d_gbps} for d in p.devices]}
(out / "figures.json").write_text(json.dumps(figures, indent=1) + "\n")
print(json.dumps(figures, indent=1))
PY
step "done"
