"""The native load's timeline in words and tables: its phases (what the user's own
``from_pretrained`` did, second by second), its imports apart, the imports of a fresh
process by package, and the measured differences from the staged view.

Medians over the group's repetitions; the figures come from
:mod:`profiler.analysis.native_trace`.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import median

from profiler.analysis.native_trace import gap_causes, native_attribution
from profiler.analysis.summaries import GroupSummary
from profiler.analysis.timeline import OTHER
from profiler.records.run import RunRecord
from profiler.render.format import percent, quantity, time_unit
from profiler.render.tables import Column, Table, make_table

OTHER_LABEL = "other (Python between hooked calls, idle)"


def _traced(group: GroupSummary) -> list[RunRecord]:
    return [
        r
        for r in group.runs
        if r.status == "ok" and r.native is not None and r.native.trace is not None
    ]


def native_phase_table(group: GroupSummary) -> Table | None:
    """Phases of the native load (median seconds over repetitions), largest first,
    the untraced remainder and the total last; None when no run has a trace."""
    attrs = [a for r in _traced(group) if r.native and (a := native_attribution(r.native))]
    if not attrs:
        return None
    labels = list(dict.fromkeys(p.label for a in attrs for p in a.phases if p.label != OTHER))
    secs = {
        label: median(sum(p.seconds for p in a.phases if p.label == label) for a in attrs)
        for label in labels
    }
    ordered = sorted(labels, key=lambda k: -secs[k])
    other = median(a.other_s for a in attrs)
    wall = median(a.wall_s for a in attrs)
    rows = [(label, secs[label]) for label in ordered] + [(OTHER_LABEL, other)]
    tu = time_unit([wall])
    names = [r[0] for r in rows] + ["native total (phases + other)"]
    times = [quantity(r[1], tu) for r in rows] + [quantity(wall, tu)]
    shares = [percent(r[1] / wall) if wall else "" for r in rows] + ["100.0"]
    return make_table(
        [
            Column("phase (∥ = at the same time)", tuple(names), align="left"),
            Column(f"time ({tu.name})", tuple(times)),
            Column("share (%)", tuple(shares)),
        ]
    )


def native_imports_line(group: GroupSummary) -> str | None:
    """The native calls' own work apart from the lazy imports they paid."""
    parts = []
    for s in group.native_stages:
        if s.time is None or not s.import_s:
            continue
        gc = f" + gc {s.gc_s:.3f} s" if s.gc_s else ""
        parts.append(
            f"{s.name} {s.time.median:.3f} s = imports {s.import_s:.3f} s "
            f"({s.import_modules or 0} modules){gc} + own work {s.own_s or 0.0:.3f} s"
        )
    return "lazy imports apart (native): " + "; ".join(parts) if parts else None


def import_packages_line(group: GroupSummary, top: int = 8) -> str | None:
    """The ``import`` stage of a fresh process by top-level package (own seconds)."""
    per_run = [
        s.import_packages
        for r in group.runs
        if r.status == "ok"
        for s in r.stages
        if s.name == "import" and s.status == "ok" and s.import_packages
    ]
    if not per_run:
        return None
    names = list(dict.fromkeys(k for d in per_run for k in d))
    secs = {k: median(d.get(k, 0.0) for d in per_run) for k in names}
    ranked = sorted(names, key=lambda k: -secs[k])[:top]
    return "import stage by package: " + ", ".join(f"{k} {secs[k]:.3f} s" for k in ranked)


def gap_lines(group: GroupSummary) -> list[str]:
    """Measured differences between the native and the staged view (first traced run)."""
    runs = _traced(group)
    if not runs:
        return []
    return [c.text for c in gap_causes(runs[0])]


def missing_hooks_line(runs: Sequence[RunRecord]) -> str | None:
    """Hook points this transformers lacked: their part of the load is counters only."""
    missing = sorted(
        {h for r in runs if r.native and r.native.trace for h in r.native.trace.missing_hooks}
    )
    if not missing:
        return None
    return (
        "trace incomplete, hook points absent in this transformers (their work shows as "
        f"'other'; counters still apply): {', '.join(missing)}"
    )
