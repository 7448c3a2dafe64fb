"""Summarise traced llmprof runs: the native load's attribution, the staged view beside
it, the top imports of a fresh process, and the timeline pictures.

    python scripts/trace_summary.py OUT_DIR RUNS.json [RUNS.json ...]

Writes OUT_DIR/attribution-summary.json, OUT_DIR/attribution-summary.md and one timeline PNG per
traced native view (OUT_DIR/timeline_<label>.png). Every figure comes from the
records through profiler.analysis; nothing here is typed in.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from statistics import median
from typing import Any

from profiler.analysis.native_trace import gap_causes, native_attribution, overlap_s
from profiler.analysis.timeline import activity_totals
from profiler.records.io import load_runs
from profiler.records.run import RunRecord
from profiler.render.plots import save_png
from profiler.render.timeline_plot import timeline_data, timeline_figure


def run_summary(run: RunRecord, label: str) -> dict[str, Any]:
    view = run.native
    assert view is not None and view.trace is not None
    a = native_attribution(view)
    assert a is not None
    fp = next((s for s in view.stages if s.name == "from_pretrained"), None)
    td = next((s for s in view.stages if s.name == "to_device"), None)
    imp = run.stage("import")
    # The model load alone (from_pretrained + .to()), the figure users compare.
    load_only = dataclasses.replace(
        view, stages=tuple(s for s in view.stages if s.name in ("from_pretrained", "to_device"))
    )
    b = native_attribution(load_only)
    assert b is not None
    return {
        "label": label,
        "cache": run.cache.label,
        "device_map": view.load_kwargs.get("device_map", ""),
        "native_total_s": view.total_s,
        "native_stages_s": {s.name: s.duration_s for s in view.stages if s.status == "ok"},
        "from_pretrained_plus_to_s": (fp.duration_s if fp else 0.0)
        + (td.duration_s if td and td.status == "ok" else 0.0),
        "phases_s": {p.label: p.seconds for p in a.phases},
        "load_only_phases_s": {p.label: p.seconds for p in b.phases},
        "load_only_in_flight_s": activity_totals(b),
        "load_only_overlap_s": overlap_s(b),
        "phases_sum_s": sum(p.seconds for p in a.phases),
        "activity_in_flight_s": activity_totals(a),
        "overlap_s": overlap_s(a),
        "unattributed_other_s": a.other_s,
        "native_imports_s": {s.name: s.import_s for s in view.stages},
        "native_gc_s": {s.name: s.gc_s for s in view.stages},
        "staged_load_total_s": run.load_total_s,
        "staged_stages_s": {
            s.name: {"time_s": s.duration_s, "import_s": s.import_s, "own_s": s.own_s}
            for s in run.stages
            if s.status == "ok"
        },
        "gap_causes": [c.text for c in gap_causes(run)],
        "fresh_import_stage_s": imp.duration_s if imp else None,
        "fresh_imports_by_package_s": imp.import_packages if imp else {},
        "attribution_counters": dict(view.attribution),
        "missing_hooks": list(view.trace.missing_hooks),
        "notes": list(view.trace.notes),
        "spans": len(view.trace.spans),
    }


def phases_of(s: dict[str, Any], view: str) -> list[str]:
    """One traced run as markdown: the phase table, then the staged view beside it."""
    wall = s["native_total_s"]
    out = [
        f"## {s['label']} · {view}",
        "",
        f"native total {wall:.3f} s (from_pretrained + to: {s['from_pretrained_plus_to_s']:.3f} s),"
        f" phases sum {s['phases_sum_s']:.3f} s; staged load total "
        f"{s['staged_load_total_s']:.3f} s",
        "",
        "| phase | s | % |",
        "|:--|--:|--:|",
    ]
    for label, secs in sorted(s["phases_s"].items(), key=lambda kv: -kv[1]):
        out.append(f"| {label} | {secs:.3f} | {100 * secs / wall:.1f} |")
    out += [
        "",
        "In flight (overlapped time counted for each): "
        + ", ".join(
            f"{k} {v:.3f} s"
            for k, v in sorted(s["activity_in_flight_s"].items(), key=lambda kv: -kv[1])
        ),
        "",
    ]
    load = s["from_pretrained_plus_to_s"]
    out += [
        f"from_pretrained + to alone ({load:.3f} s): "
        + "; ".join(
            f"{k} {v:.3f} s"
            for k, v in sorted(s["load_only_phases_s"].items(), key=lambda kv: -kv[1])
        )
        + f"; overlap {s['load_only_overlap_s']:.3f} s",
        "",
    ]
    out += ["Against the staged view:", *[f"- {t}" for t in s["gap_causes"]], ""]
    if s["missing_hooks"]:
        out += [f"Missing hooks: {', '.join(s['missing_hooks'])}", ""]
    return out


def main() -> None:
    out_dir = Path(sys.argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    summaries: list[dict[str, Any]] = []
    md = ["# Native load traces", ""]
    for path in sys.argv[2:]:
        runs = [r for r in load_runs(path) if r.status == "ok"]
        view = Path(path).stem
        for run in runs:
            if run.native is None or run.native.trace is None:
                continue
            label = f"{view}-{run.cache.label.replace('/', '-')}-rep{run.repetition}"
            s = run_summary(run, label)
            summaries.append(s)
            md += phases_of(s, view)
            title = f"{run.model.spec} · {view} · {run.cache.label}"
            png = save_png(
                timeline_figure(timeline_data(run.native.trace), title),
                out_dir / f"timeline_{label}.png",
            )
            md += [f"![{label}]({png.name})", ""]
    packages: dict[str, list[float]] = {}
    for s in summaries:
        for k, v in s["fresh_imports_by_package_s"].items():
            packages.setdefault(k, []).append(v)
    top = sorted(((k, median(v)) for k, v in packages.items()), key=lambda kv: -kv[1])[:12]
    md += ["## Top imports of a fresh process (import stage, own seconds, median)", ""]
    md += [f"- {k}: {v:.3f} s" for k, v in top]
    (out_dir / "attribution-summary.json").write_text(
        json.dumps({"runs": summaries, "fresh_imports_top_s": dict(top)}, indent=1)
    )
    (out_dir / "attribution-summary.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
