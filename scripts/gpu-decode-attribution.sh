#!/usr/bin/env bash
# Issue 14 (part B) on the lent GPU: what bounds a decode step of the Qwen2-7B shape
# at batch 1 (step attribution, energy per token, anatomy), the prompt-length sweep,
# and the GPU tests of the step profiler. Everything lands in the output folder:
#   decode.json / decode.txt / report.md (+ report_files/)   plain generate(), prompt 32
#   sweep.json / sweep.txt / sweep.md (+ sweep_files/)      --prompt-tokens 32,512,2048
#   summary.md                                              the figures to quote
#   gpu-tests.txt                                           pytest -m gpu of this part
# Usage: bash scripts/gpu-decode-attribution.sh OUT_DIR        (about 4 minutes)
# CPU dry run of the same steps (small, to check the script itself):
#   DEVICE=cpu MODEL=synthetic:tiny DTYPE=float32 CEILINGS=off NEW_TOKENS=8 SWEEP=32,256 \
#     bash scripts/gpu-decode-attribution.sh /tmp/i14b-dry
set -uo pipefail
OUT="${1:-${OUT:-/tmp/llmprof-i14b}}"
mkdir -p "$OUT"
DEVICE="${DEVICE:-cuda}"
MODEL="${MODEL:-synthetic:qwen2-7b}"
DTYPE="${DTYPE:-bfloat16}"
CEILINGS="${CEILINGS:-quick}"
NEW="${NEW_TOKENS:-64}"
SWEEP="${SWEEP:-32,512,2048}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
export CUDA_DEVICE_ORDER=PCI_BUS_ID LLMPROF_PROGRESS=0
PY="${PYTHON:-python3}"
llmprof() { "$PY" -m profiler "$@"; }
step() { echo; echo "=== $(date +%T) $*"; }

step "machine"
if [ "$DEVICE" != "cpu" ]; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit --format=csv
fi
"$PY" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
"$PY" -c "import pynvml" 2>/dev/null && echo "pynvml: present" || echo "pynvml: ABSENT (energy will be skipped with the reason)"

step "build $MODEL (random weights; not part of any profile)"
llmprof models --build "$MODEL" 2>&1 | tail -1

step "decode: plain generate(), prompt 32, $NEW new tokens, 3 warm calls"
llmprof decode "$MODEL" --device "$DEVICE" --dtype "$DTYPE" --prompt-tokens 32 --new-tokens "$NEW" \
  --warm-calls 3 --ceilings "$CEILINGS" --json "$OUT/decode.json" --report "$OUT/report.md" \
  > "$OUT/decode.txt" 2> "$OUT/decode.err"
echo "exit $?"; tail -25 "$OUT/decode.txt"

step "prompt-length sweep: $SWEEP ($NEW new tokens, 2 warm calls)"
llmprof decode "$MODEL" --device "$DEVICE" --dtype "$DTYPE" --prompt-tokens "$SWEEP" \
  --new-tokens "$NEW" --warm-calls 2 --ceilings off --json "$OUT/sweep.json" --report "$OUT/sweep.md" \
  > "$OUT/sweep.txt" 2> "$OUT/sweep.err"
echo "exit $?"; grep -A8 "prompt-length sweep" "$OUT/sweep.txt"

step "bad input: prompt beyond the context (expect exit 2, one line)"
llmprof decode "$MODEL" --device "$DEVICE" --prompt-tokens 32,1000000 --ceilings off; echo "exit $?"

step "summary"
"$PY" - "$OUT" <<'PYEOF' | tee "$OUT/summary.md"
import sys
from pathlib import Path

from profiler.analysis.decode_metrics import decode_figures, group_by_shape
from profiler.analysis.summaries import summarize_runs
from profiler.analysis.step_text import step_lines
from profiler.records.io import load_runs
from profiler.render import decode_bounds
from profiler.render.tables import render_table

out = Path(sys.argv[1])
for name in ("decode.json", "sweep.json"):
    path = out / name
    if not path.exists():
        print(f"## {name}: missing"); continue
    runs = [r for r in load_runs(path) if r.status == "ok"]
    print(f"## {name}\n")
    for recs in group_by_shape(d for r in runs for d in r.decode):
        f = decode_figures(recs)
        print(f"- prompt {f.prompt_tokens}, batch {f.batch_size}: step {f.step.median*1e3:.2f} ms, "
              f"{f.tokens_per_s_seq:.1f} tok/s, MBU {f.mbu if f.mbu is None else round(f.mbu*100, 1)}%, "
              f"TTFT {f.ttft.median*1e3:.1f} ms")
        for line in step_lines(recs, f, runs[0].device, runs[0].environment.cpu_count):
            print(f"  - {line}")
    for g in summarize_runs(runs):
        for title, t in decode_bounds.tables_of(g):
            print(f"\n**{title}**\n\n{render_table(t, 'pipe')}")
    print()
PYEOF

if [ "$DEVICE" != "cpu" ]; then
  step "gpu tests (step profiler, energy)"
  "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/integration/test_step_profile.py 2>&1 | tail -5 | tee "$OUT/gpu-tests.txt"
fi
step "done: $OUT"
ls -la "$OUT"
