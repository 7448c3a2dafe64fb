"""A load's timeline as Chrome trace-event JSON (opens in Perfetto and chrome://tracing).

Threads are tracks (``X`` complete events, one per span), the stages of the load are
one more track on top, and sampled counters are counter tracks (``C`` events): the
disk read rate, RSS split anonymous/file-backed, GPU memory and the host-to-device
rate. Times are microseconds from the start of the trace. :func:`validate` checks a
document against the parts of the trace-event format used here, so a file that
passes opens in both viewers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from profiler.records.stage import StageRecord
from profiler.records.trace import CounterTrack, LoadTrace

PID = 1
STAGES_TID = 0  # the track of the stages (tokenizer, from_pretrained, to_device, eval)
MB = 1e6
MIB = float(1 << 20)


def _us(ns: int, origin: int) -> float:
    return (ns - origin) / 1e3


def chrome_trace(
    trace: LoadTrace, stages: Sequence[StageRecord] = (), title: str = "llmprof load"
) -> dict[str, Any]:
    """The trace-event document of ``trace`` (and of the ``stages`` around it)."""
    origin = min(
        [
            trace.start_ns,
            *(s.start_ns for s in stages if s.status == "ok"),
            *(s.start_ns for s in trace.spans),
            *(c.times_ns[0] for c in trace.counters if c.times_ns),
        ]
    )
    events: list[dict[str, Any]] = [
        {"name": "process_name", "ph": "M", "pid": PID, "tid": 0, "args": {"name": title}},
        _thread_name(STAGES_TID, "stages"),
    ]
    for s in stages:
        if s.status == "ok":
            events.append(_complete(s.name, "stage", s.start_ns, s.end_ns, STAGES_TID, origin, {}))
    tids: dict[int, int] = {}
    for span in trace.spans:
        tid = tids.get(span.thread_id, 0)
        if not tid:  # a new thread: name its track once
            tid = tids[span.thread_id] = len(tids) + 1
            events.append(_thread_name(tid, span.thread_name or f"thread {span.thread_id}"))
        events.append(
            _complete(
                span.name or span.category,
                span.category,
                span.start_ns,
                span.end_ns,
                tid,
                origin,
                dict(span.args),
            )
        )
    for track in trace.counters:
        events.extend(_counter_events(track, origin))
    events.extend(_h2d_rate_events(trace, origin))
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "tool": "llmprof",
            "hooks": list(trace.hooks),
            "missing_hooks": list(trace.missing_hooks),
            "notes": list(trace.notes),
        },
    }


def _thread_name(tid: int, name: str) -> dict[str, Any]:
    return {"name": "thread_name", "ph": "M", "pid": PID, "tid": tid, "args": {"name": name}}


def _complete(
    name: str, cat: str, start: int, end: int, tid: int, origin: int, args: dict[str, Any]
) -> dict[str, Any]:
    return {
        "name": name,
        "cat": cat,
        "ph": "X",
        "ts": _us(start, origin),
        "dur": max(0.0, (end - start) / 1e3),
        "pid": PID,
        "tid": tid,
        "args": args,
    }


def _counter(name: str, t_ns: int, origin: int, values: dict[str, float]) -> dict[str, Any]:
    return {"name": name, "ph": "C", "ts": _us(t_ns, origin), "pid": PID, "args": values}


def _counter_events(track: CounterTrack, origin: int) -> list[dict[str, Any]]:
    out = []
    pts = [(t, v) for t, v in zip(track.times_ns, track.values, strict=True) if math.isfinite(v)]
    if track.cumulative:
        # A running total is shown as its rate between consecutive samples.
        for (t0, v0), (t1, v1) in zip(pts, pts[1:], strict=False):
            if t1 > t0:
                rate = (v1 - v0) / ((t1 - t0) / 1e9) / MB
                out.append(_counter(f"{track.name} (MB/s)", t0, origin, {"MB/s": rate}))
        if pts:
            out.append(_counter(f"{track.name} (MB/s)", pts[-1][0], origin, {"MB/s": 0.0}))
    else:
        for t, v in pts:
            out.append(_counter(f"{track.name} (MiB)", t, origin, {"MiB": v / MIB}))
    return out


def _h2d_rate_events(trace: LoadTrace, origin: int) -> list[dict[str, Any]]:
    """Host-to-device bytes per second, from the copy spans (each copy's bytes spread
    over its own duration, summed over threads)."""
    edges: list[tuple[int, float]] = []
    for s in trace.spans:
        if s.category != "copy" or not str(s.args.get("target_device", "")).startswith("cuda"):
            continue
        dur = s.end_ns - s.start_ns
        nbytes = s.args.get("bytes", 0)
        if dur <= 0 or not isinstance(nbytes, int | float):
            continue
        rate = float(nbytes) / (dur / 1e9) / MB
        edges += [(s.start_ns, rate), (s.end_ns, -rate)]
    out = []
    level = 0.0
    for t, delta in sorted(edges):
        level += delta
        out.append(_counter("host→device (MB/s)", t, origin, {"MB/s": max(0.0, level)}))
    return out


_REQUIRED = {
    "X": ("name", "ts", "dur", "pid", "tid"),
    "C": ("name", "ts", "pid", "args"),
    "M": ("name", "pid", "args"),
}
_METADATA = {"process_name", "thread_name", "process_sort_index", "thread_sort_index"}


def validate(doc: Any) -> list[str]:
    """Problems that would stop a trace viewer from reading ``doc``; [] when none."""
    if not isinstance(doc, dict) or not isinstance(doc.get("traceEvents"), list):
        return ['top level must be an object with a "traceEvents" list']
    problems: list[str] = []
    for i, ev in enumerate(doc["traceEvents"]):
        where = f"event {i}"
        if not isinstance(ev, dict):
            problems.append(f"{where}: not an object")
            continue
        ph = ev.get("ph")
        if ph not in _REQUIRED:
            problems.append(f"{where}: phase {ph!r} is not one of X, C, M")
            continue
        missing = [k for k in _REQUIRED[ph] if k not in ev]
        if missing:
            problems.append(f"{where} ({ph}): missing {', '.join(missing)}")
            continue
        problems.extend(_check_values(where, ph, ev))
    return problems


def _finite_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _check_values(where: str, ph: str, ev: dict[str, Any]) -> list[str]:
    out = []
    if not isinstance(ev["name"], str) or not ev["name"]:
        out.append(f"{where}: name must be a non-empty string")
    if not isinstance(ev["pid"], int) or ("tid" in ev and not isinstance(ev["tid"], int)):
        out.append(f"{where}: pid and tid must be integers")
    if ph in ("X", "C") and (not _finite_number(ev["ts"]) or ev["ts"] < 0):
        out.append(f"{where}: ts must be a finite number >= 0")
    if ph == "X" and (not _finite_number(ev["dur"]) or ev["dur"] < 0):
        out.append(f"{where}: dur must be a finite number >= 0")
    if ph == "C":
        args = ev["args"]
        if (
            not isinstance(args, dict)
            or not args
            or not all(_finite_number(v) for v in args.values())
        ):
            out.append(f"{where}: counter args must map names to finite numbers")
    if ph == "M":
        if ev["name"] not in _METADATA:
            out.append(f"{where}: unknown metadata {ev['name']!r}")
        elif (
            not isinstance(ev["args"], dict)
            or "name" not in ev["args"]
            and "sort_index" not in ev["args"]
        ):
            out.append(f"{where}: metadata args need a name or sort_index")
    return out
