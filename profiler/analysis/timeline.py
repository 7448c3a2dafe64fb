"""Where the wall time of a traced load went: pure functions over spans.

:func:`attribute` splits an interval of wall time by what was in flight at each
instant, across every thread. At any instant each thread is doing the innermost span
it has open (an import inside model construction counts as import, not init; a garbage
collection counts as "gc" unless it ran inside an import); the
set of those activities over all threads is the instant's phase, written with "∥"
when several overlap ("read ∥ copy"). An instant with no traced work open on any
thread is "other": Python between hooked calls, the interpreter, or waiting. Phases
therefore add up to the interval exactly, by construction; the test that they do
(within 2%) guards the arithmetic, not a measurement.

:func:`import_time` is the part of an interval during which any thread was importing
a module: what a stage timer would otherwise bill as the stage's own work.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from profiler.records.trace import Span

OTHER = "other"
OVERLAP = " ∥ "

# Order of activities inside an overlap label; categories not listed sort after.
ACTIVITY_ORDER: tuple[str, ...] = (
    "import",
    "gc",
    "tokenizer",
    "config",
    "init",
    "open",
    "read",
    "cast",
    "copy",
    "attach",
    "tie",
    "finalize",
)

# Spans that only frame other work (a whole from_pretrained, a whole state-dict load)
# are drawn on the timeline but are no activity of their own.
FRAMING: frozenset[str] = frozenset({"frame"})


@dataclass(frozen=True)
class Phase:
    """A set of activities in flight together, and for how long."""

    label: str
    activities: tuple[str, ...]
    seconds: float


@dataclass(frozen=True)
class Attribution:
    """The phases of an interval, largest first; they sum to ``wall_s``."""

    wall_s: float
    phases: tuple[Phase, ...]

    @property
    def attributed_s(self) -> float:
        return sum(p.seconds for p in self.phases if p.label != OTHER)

    @property
    def other_s(self) -> float:
        return sum(p.seconds for p in self.phases if p.label == OTHER)


def _order(category: str) -> tuple[int, str]:
    try:
        return (ACTIVITY_ORDER.index(category), category)
    except ValueError:
        return (len(ACTIVITY_ORDER), category)


def label_of(activities: Iterable[str]) -> str:
    acts = sorted(set(activities), key=_order)
    return OVERLAP.join(acts) if acts else OTHER


def attribute(spans: Sequence[Span], start_ns: int, end_ns: int) -> Attribution:
    """Split ``[start_ns, end_ns)`` into phases by what every thread was doing."""
    if end_ns <= start_ns:
        return Attribution(0.0, ())
    work = [
        s
        for s in spans
        if s.category not in FRAMING and s.end_ns > start_ns and s.start_ns < end_ns
    ]
    events: list[tuple[int, int, int]] = []  # (time, 0 = end / 1 = start, index)
    for i, s in enumerate(work):
        events.append((max(s.start_ns, start_ns), 1, i))
        events.append((min(s.end_ns, end_ns), 0, i))
    events.sort()
    open_by_thread: dict[int, list[int]] = {}
    totals: dict[str, float] = {}
    activities: dict[str, tuple[str, ...]] = {}
    now = start_ns
    k = 0
    while now < end_ns:
        while k < len(events) and events[k][0] <= now:
            t, kind, i = events[k]
            stack = open_by_thread.setdefault(work[i].thread_id, [])
            if kind == 1:
                stack.append(i)
            elif i in stack:
                stack.remove(i)
            k += 1
        nxt = events[k][0] if k < len(events) else end_ns
        nxt = min(nxt, end_ns)
        acts = tuple(
            sorted(
                {_innermost(work, stack) for stack in open_by_thread.values() if stack},
                key=_order,
            )
        )
        label = label_of(acts)
        totals[label] = totals.get(label, 0.0) + (nxt - now) / 1e9
        activities[label] = acts
        now = nxt
    phases = tuple(
        Phase(label, activities[label], secs)
        for label, secs in sorted(totals.items(), key=lambda kv: -kv[1])
        if secs > 0
    )
    return Attribution((end_ns - start_ns) / 1e9, phases)


def _innermost(work: Sequence[Span], stack: Sequence[int]) -> str:
    """The category of the most recently started span open on a thread (the
    innermost, since spans on one thread nest)."""
    best = max(stack, key=lambda i: (work[i].start_ns, -work[i].end_ns))
    category = work[best].category
    if category == "gc" and any(work[i].category == "import" for i in stack):
        # A collection during an import is import time, as import_time counts it.
        return "import"
    return category


def activity_totals(attribution: Attribution) -> dict[str, float]:
    """Seconds during which each activity was in flight, overlapped or not."""
    out: dict[str, float] = {}
    for p in attribution.phases:
        for a in p.activities:
            out[a] = out.get(a, 0.0) + p.seconds
    return out


def union_ns(intervals: Iterable[tuple[int, int]]) -> int:
    """Total length covered by the intervals (overlaps counted once)."""
    total = 0
    cur_start = cur_end = None
    for a, b in sorted(intervals):
        if b <= a:
            continue
        if cur_end is None or a > cur_end:
            if cur_end is not None and cur_start is not None:
                total += cur_end - cur_start
            cur_start, cur_end = a, b
        else:
            cur_end = max(cur_end, b)
    if cur_end is not None and cur_start is not None:
        total += cur_end - cur_start
    return total


@dataclass(frozen=True)
class ImportTime:
    """Time spent importing inside an interval, and how many modules were loaded."""

    seconds: float
    modules: int


def import_time(spans: Sequence[Span], start_ns: int, end_ns: int) -> ImportTime:
    """Wall time inside ``[start_ns, end_ns)`` during which some thread was importing
    (nested imports counted once) and the number of modules loaded in it."""
    imports = [s for s in spans if s.category == "import"]
    clipped = [
        (max(s.start_ns, start_ns), min(s.end_ns, end_ns))
        for s in imports
        if s.end_ns > start_ns and s.start_ns < end_ns
    ]
    loaded = sum(1 for s in imports if start_ns < s.end_ns <= end_ns)
    return ImportTime(union_ns(clipped) / 1e9, loaded)


def gc_outside_imports(spans: Sequence[Span], start_ns: int, end_ns: int) -> float:
    """Seconds of garbage collection inside ``[start_ns, end_ns)`` that no import
    covers (a collection during an import is already import time)."""

    def clipped(category: str) -> list[tuple[int, int]]:
        return [
            (max(s.start_ns, start_ns), min(s.end_ns, end_ns))
            for s in spans
            if s.category == category and s.end_ns > start_ns and s.start_ns < end_ns
        ]

    imports = clipped("import")
    return (union_ns(imports + clipped("gc")) - union_ns(imports)) / 1e9


@dataclass(frozen=True)
class PackageImports:
    """Import time of one top-level package: its modules' own time, summed."""

    package: str
    seconds: float
    modules: int


def imports_by_package(spans: Sequence[Span], start_ns: int, end_ns: int) -> list[PackageImports]:
    """Own ("self") import time per top-level package for the modules loaded inside
    the interval, largest first. Self time leaves out nested imports, so ``import
    transformers`` importing torch is billed to torch, not to transformers."""
    acc: dict[str, tuple[float, int]] = {}
    for s in spans:
        if s.category != "import" or not (start_ns < s.end_ns <= end_ns):
            continue
        own = s.args.get("self_ns", s.end_ns - s.start_ns)
        package = s.name.split(".", 1)[0]
        secs, n = acc.get(package, (0.0, 0))
        acc[package] = (secs + float(own) / 1e9, n + 1)
    return sorted(
        (PackageImports(p, secs, n) for p, (secs, n) in acc.items()),
        key=lambda x: -x.seconds,
    )
