"""Trace the user's own load on the lent GPU (exploration before the product had it):

    python scripts/gpu_trace_check.py MODEL_FOLDER OUT_DIR

In one fresh process: lazy imports timed from the first line, then a warm
from_pretrained + .to("cuda") and a from_pretrained(device_map="cuda"), each traced,
with the attribution printed and the Chrome trace written to OUT_DIR."""

from __future__ import annotations

import time

T0 = time.monotonic_ns()

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

from profiler.measure.imports import ImportTracker  # noqa: E402

TRACKER = ImportTracker()
TRACKER.install()

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

T1 = time.monotonic_ns()


def main() -> None:
    from pathlib import Path

    from profiler.analysis.timeline import attribute, import_time, imports_by_package
    from profiler.measure.counters import CounterSampler
    from profiler.measure.load_trace import LoadTracer
    from profiler.render.chrome_trace import chrome_trace, validate

    folder, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, object] = {
        "transformers": transformers.__version__,
        "torch": torch.__version__,
    }
    summary["imports"] = [
        (p.package, round(p.seconds, 3), p.modules)
        for p in imports_by_package(TRACKER.spans, T0, T1)[:12]
    ]
    summary["import_wall_s"] = (T1 - T0) / 1e9
    device = os.environ.get("TRACE_DEVICE", "cuda")  # cpu: a dry run of this script
    cuda = device.startswith("cuda")
    if cuda:
        torch.empty(1, device=device)
    for how in ("to", "device_map"):
        gpu = torch.cuda.memory_allocated if cuda else None
        with LoadTracer(imports=TRACKER, sampler=CounterSampler(0.01, gpu_allocated=gpu)) as tr:
            t_tok = time.monotonic_ns()
            AutoTokenizer.from_pretrained(folder)
            t_model = time.monotonic_ns()
            if how == "to":
                model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16)
                with tr.tensor_copies(model):
                    model.to(device)
            else:
                model = AutoModelForCausalLM.from_pretrained(
                    folder, dtype=torch.bfloat16, device_map=device
                )
            if cuda:
                torch.cuda.synchronize()
        trace = tr.result()
        a = attribute(trace.spans, trace.start_ns, trace.end_ns)
        it = import_time(trace.spans, trace.start_ns, trace.end_ns)
        row = {
            "wall_s": a.wall_s,
            "tokenizer_s": (t_model - t_tok) / 1e9,
            "phases": [(p.label, round(p.seconds, 3)) for p in a.phases],
            "imports_s": it.seconds,
            "missing_hooks": list(trace.missing_hooks),
            "notes": list(trace.notes),
            "spans": len(trace.spans),
        }
        summary[how] = row
        doc = chrome_trace(trace, title=f"from_pretrained + {how}")
        problems = validate(doc)
        row["trace_problems"] = problems[:5]
        (out / f"trace-{how}.json").write_text(json.dumps(doc))
        print(how, json.dumps(row)[:1500], flush=True)
        del model
        if cuda:
            torch.cuda.empty_cache()
    (out / "trace-summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary["imports"]))


if __name__ == "__main__":
    main()
