"""The native view's timeline, read: where its wall time went, and why it differs from
the staged view. Pure functions over records.

The native view times only the few calls a user makes (tokenizer, from_pretrained,
to_device, eval); its trace says what was in flight inside them. :func:`native_attribution`
splits the time of those calls into phases (:func:`profiler.analysis.timeline.attribute`
per call, the same phase summed over calls), so the phases add up to the native total.
:func:`gap_causes` sets measured figures of both views side by side: import time in
each, time with several activities overlapped, threads that did the per-tensor work,
and the per-activity time of the native load against the staged stage that does the
same work alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from profiler.analysis.timeline import OTHER, Attribution, Phase, activity_totals, attribute
from profiler.records.run import NativeView, RunRecord
from profiler.records.stage import StageRecord

# Per-tensor activities of the loader's worker threads.
TENSOR_WORK: frozenset[str] = frozenset({"read", "cast", "copy", "attach", "materialize"})

# Native activity → the staged stages that do the same work alone, one at a time.
STAGED_COUNTERPART: dict[str, tuple[str, ...]] = {
    "read": ("weight_read", "read_copy", "deserialize"),
    "cast": ("dtype_cast",),
    "copy": ("h2d_copy", "read_copy"),
    "attach": ("attach",),
    "tokenizer": ("tokenizer",),
    "init": ("model_init",),
}


def native_attribution(view: NativeView) -> Attribution | None:
    """Phases of the native view's calls, summed over calls; None without a trace."""
    if view.trace is None:
        return None
    totals: dict[str, float] = {}
    acts: dict[str, tuple[str, ...]] = {}
    wall = 0.0
    for stage in view.stages:
        if stage.status != "ok":
            continue
        a = attribute(view.trace.spans, stage.start_ns, stage.end_ns)
        wall += a.wall_s
        for p in a.phases:
            totals[p.label] = totals.get(p.label, 0.0) + p.seconds
            acts[p.label] = p.activities
    phases = tuple(
        Phase(label, acts[label], secs)
        for label, secs in sorted(totals.items(), key=lambda kv: -kv[1])
    )
    return Attribution(wall, phases)


def overlap_s(attribution: Attribution) -> float:
    """Seconds during which two or more activities were in flight at once."""
    return sum(p.seconds for p in attribution.phases if len(p.activities) > 1)


def worker_threads(view: NativeView) -> int:
    """Distinct threads that did per-tensor work (read, cast, copy, attach)."""
    if view.trace is None:
        return 0
    return len({s.thread_id for s in view.trace.spans if s.category in TENSOR_WORK})


def import_seconds(stages: Sequence[StageRecord], outside: frozenset[str] = frozenset()) -> float:
    """Import time inside the ok stages (those named in ``outside`` left out)."""
    return sum(s.import_s for s in stages if s.status == "ok" and s.name not in outside)


@dataclass(frozen=True)
class GapCause:
    """One measured difference between the views: what, native and staged seconds
    (or counts), and a sentence saying it."""

    what: str
    native: float
    staged: float
    text: str


def gap_causes(run: RunRecord) -> list[GapCause]:
    """Measured differences that explain native against staged, largest first."""
    from profiler.records.stage import OUTSIDE_LOAD

    view = run.native
    if view is None or view.trace is None:
        return []
    attribution = native_attribution(view)
    if attribution is None:
        return []
    out: list[GapCause] = []
    staged_imports = import_seconds(run.stages, OUTSIDE_LOAD)
    native_imports = import_seconds(view.stages)
    out.append(
        GapCause(
            "imports",
            native_imports,
            staged_imports,
            f"lazy imports inside the load: native {native_imports:.3f} s, "
            f"staged {staged_imports:.3f} s",
        )
    )
    ov = overlap_s(attribution)
    out.append(
        GapCause(
            "overlap",
            ov,
            0.0,
            f"activities overlapped in the native load for {ov:.3f} s "
            "(the staged view runs one stage at a time)",
        )
    )
    totals = activity_totals(attribution)
    for activity, names in STAGED_COUNTERPART.items():
        staged = sum(s.own_s for s in run.stages if s.status == "ok" and s.name in names)
        native = totals.get(activity, 0.0)
        if staged > 0 or native > 0:
            out.append(
                GapCause(
                    activity,
                    native,
                    staged,
                    f"{activity}: in flight {native:.3f} s native, staged "
                    f"{'+'.join(names)} {staged:.3f} s own time",
                )
            )
    threads = worker_threads(view)
    counts = [s.counters.get("threads") for s in run.stages]
    staged_threads = max((int(v) for v in counts if isinstance(v, int | float)), default=0)
    out.append(
        GapCause(
            "threads",
            float(threads),
            float(staged_threads),
            f"threads doing per-tensor work: native {threads}, staged readers {staged_threads}",
        )
    )
    return sorted(out, key=lambda c: -abs(c.native - c.staged))


def phase_rows(attribution: Attribution) -> list[tuple[str, float, float]]:
    """(phase, seconds, share of the wall) for a table, "other" last."""
    rows = [
        (p.label, p.seconds, p.seconds / attribution.wall_s if attribution.wall_s else 0.0)
        for p in attribution.phases
        if p.label != OTHER
    ]
    other = attribution.other_s
    rows.append((OTHER, other, other / attribution.wall_s if attribution.wall_s else 0.0))
    return rows
