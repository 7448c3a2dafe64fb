"""The timeline picture of a native load, and its section of the markdown report.

Top: one lane per thread, each span a bar coloured by what it was (read, cast, copy,
attach, init, import, ...), innermost on top. Bottom: the disk read rate (from the
``/proc/self/io`` counter track) and the host-to-device rate (each copy span's bytes
spread over its own duration, summed over threads). :func:`timeline_data` computes
what is drawn (pure, tested); :func:`timeline_figure` only draws it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from profiler.analysis.native_trace import native_attribution
from profiler.analysis.timeline import FRAMING
from profiler.records.run import RunRecord
from profiler.records.trace import LoadTrace

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MB = 1e6
COLOURS: dict[str, str] = {
    "import": "#9e9e9e",
    "gc": "#616161",
    "tokenizer": "#8e24aa",
    "config": "#6d4c41",
    "init": "#fb8c00",
    "open": "#00897b",
    "read": "#1e88e5",
    "materialize": "#3949ab",
    "cast": "#fdd835",
    "copy": "#e53935",
    "attach": "#43a047",
    "tie": "#00acc1",
    "finalize": "#5e35b1",
}
FILE_PREFIX = "timeline_"


@dataclass(frozen=True)
class Lane:
    """One thread: its name and its spans as (start s, duration s, category)."""

    name: str
    bars: tuple[tuple[float, float, str], ...]


@dataclass(frozen=True)
class TimelineData:
    lanes: tuple[Lane, ...]
    disk_mbps: tuple[tuple[float, float], ...]  # (time s, MB/s) from the start
    h2d_mbps: tuple[tuple[float, float], ...]
    duration_s: float


def timeline_data(trace: LoadTrace) -> TimelineData:
    """Lanes (threads in order of first activity) and rate curves of ``trace``."""
    origin = trace.start_ns
    lanes: dict[int, tuple[str, list[tuple[float, float, str]]]] = {}
    for s in sorted(trace.spans, key=lambda s: (s.start_ns, -s.end_ns)):
        if s.category in FRAMING:
            continue
        _, bars = lanes.setdefault(s.thread_id, (s.thread_name or str(s.thread_id), []))
        bars.append(((s.start_ns - origin) / 1e9, (s.end_ns - s.start_ns) / 1e9, s.category))
    disk: list[tuple[float, float]] = []
    for c in trace.counters:
        if not c.cumulative:
            continue
        pts = [(t, v) for t, v in zip(c.times_ns, c.values, strict=True) if v == v]
        for (t0, v0), (t1, v1) in zip(pts, pts[1:], strict=False):
            if t1 > t0:
                disk.append(((t0 - origin) / 1e9, (v1 - v0) / ((t1 - t0) / 1e9) / MB))
        break
    edges: list[tuple[int, float]] = []
    for s in trace.spans:
        if s.category != "copy" or not str(s.args.get("target_device", "")).startswith("cuda"):
            continue
        nbytes = s.args.get("bytes", 0)
        if s.end_ns > s.start_ns and isinstance(nbytes, int | float):
            rate = float(nbytes) / ((s.end_ns - s.start_ns) / 1e9) / MB
            edges += [(s.start_ns, rate), (s.end_ns, -rate)]
    h2d: list[tuple[float, float]] = []
    level = 0.0
    for t, delta in sorted(edges):
        level += delta
        h2d.append(((t - origin) / 1e9, max(0.0, level)))
    return TimelineData(
        lanes=tuple(Lane(name, tuple(bars)) for name, bars in lanes.values()),
        disk_mbps=tuple(disk),
        h2d_mbps=tuple(h2d),
        duration_s=(trace.end_ns - trace.start_ns) / 1e9,
    )


def timeline_figure(data: TimelineData, title: str) -> Figure:
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    n = max(1, len(data.lanes))
    fig = Figure(figsize=(10.0, 2.2 + 0.35 * n), dpi=110)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[max(2, n), 2])
    seen: set[str] = set()
    for i, lane in enumerate(data.lanes):
        for start, width, cat in lane.bars:
            seen.add(cat)
            top.broken_barh(
                [(start, max(width, data.duration_s / 4000))],
                (i - 0.4, 0.8),
                facecolors=COLOURS.get(cat, "#bdbdbd"),
                linewidth=0,
            )
    top.set_yticks(range(len(data.lanes)), [lane.name[:28] for lane in data.lanes], fontsize=7)
    top.invert_yaxis()
    top.set_title(title, fontsize=9)
    top.legend(
        handles=[Patch(color=COLOURS.get(c, "#bdbdbd"), label=c) for c in sorted(seen)],
        fontsize=7,
        ncol=min(7, max(1, len(seen))),
        loc="upper center",
        bbox_to_anchor=(0.5, -0.02),
        frameon=False,
    )
    for series, label in ((data.disk_mbps, "disk read"), (data.h2d_mbps, "host→device")):
        if series:
            bottom.step([p[0] for p in series], [p[1] for p in series], where="post", label=label)
    bottom.set_ylabel("MB/s", fontsize=8)
    bottom.set_xlabel("seconds from the start of the load", fontsize=8)
    if data.disk_mbps or data.h2d_mbps:
        bottom.legend(fontsize=7)
    fig.tight_layout()
    return fig


def timeline_label(run: RunRecord) -> str:
    """What tells traced runs apart in the report: cache state, and device_map."""
    dm = run.native.load_kwargs.get("device_map") if run.native is not None else None
    return run.cache.label + (f" device_map={dm}" if dm else "")


def write_timelines(runs: Sequence[RunRecord], folder: str | os.PathLike[str]) -> dict[str, Path]:
    """One timeline PNG per traced native view (first repetition of each cache
    state and placement); key ``timeline/<label>`` -> file."""
    from profiler.render.plots import save_png

    out: dict[str, Path] = {}
    for run in runs:
        view = run.native
        label = timeline_label(run)
        key = f"timeline/{label}"
        if run.status != "ok" or view is None or view.trace is None or key in out:
            continue
        title = f"{run.model.spec} · native load · {label} · rep {run.repetition}"
        name = FILE_PREFIX + "".join(c if c.isalnum() else "-" for c in label) + ".png"
        out[key] = save_png(timeline_figure(timeline_data(view.trace), title), Path(folder) / name)
    return out


def timeline_section(runs: Sequence[RunRecord], images: Mapping[str, str]) -> list[str]:
    """The report's section: each timeline picture with its phase split underneath."""
    keys = [k for k in images if k.startswith("timeline/")]
    if not keys:
        return []
    out = [
        "## Timeline of the native load",
        "",
        "What the user's own `from_pretrained` (and `.to()`) did, thread by thread, from "
        "hooks in transformers; lazy imports and garbage collection on the thread that paid "
        "them. Phases are what was in flight at each instant across threads (∥ = at the "
        "same time); they add up to the native calls' wall time.",
        "",
    ]
    for key in keys:
        label = key.split("/", 1)[1]
        run = next((r for r in runs if r.native and timeline_label(r) == label), None)
        out += [f"![native load timeline, {label}]({images[key]})", ""]
        a = native_attribution(run.native) if run and run.native else None
        if a is not None:
            parts = [f"{p.label} {p.seconds:.3f} s" for p in a.phases]
            out += [f"- {label}: " + "; ".join(parts) + f" (wall {a.wall_s:.3f} s)", ""]
    return out
