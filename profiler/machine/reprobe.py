"""When a stage beats its ceiling: re-probe with the stage's own pattern, keep the
higher figure, and never show more than 100% without saying why.

A ceiling is the best of the patterns :mod:`profiler.machine.patterns` tried; a
stage that reads another way (more threads, other request sizes) can still beat
it. Then the ceiling was not one: :func:`reprobe_ceilings` measures the stage's own
read pattern (threads, request size, buffered) on a scratch file of the same
filesystem, adds it to the ceiling's patterns (``origin="reprobe"``) and the best
of them becomes the ceiling. :func:`explain_over` then writes a note on every stage
still above its ceiling, with the measured reason.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from profiler.machine.patterns import ReadSpec, best_of
from profiler.machine.plan import MIB
from profiler.records.ceilings import GBPS, Ceiling, Ceilings, Pattern
from profiler.records.run import RunRecord
from profiler.records.stage import StageRecord

# Ceilings a re-probe can measure with a stage's read pattern.
READ_CEILINGS = ("disk_read", "page_cache_read")

# Request size of a stage that does not record one: the staged view's reader
# (profiler.load.read.read_file_into) reads 64 MiB requests.
DEFAULT_REQUEST = 64 * MIB

OVER_NOTE = "above its ceiling"


def over_ceiling(stage: StageRecord) -> bool:
    """Whether the stage ran faster than the ceiling attached to it."""
    f = stage.ceiling_fraction
    return f is not None and f > 1.0


def stage_read_spec(stage: StageRecord) -> ReadSpec:
    """The stage's own read pattern, from its counters: buffered reads (llmprof's
    loads and transformers' all read through the page cache) of its thread count
    and request size."""

    def counter(name: str, default: int) -> int:
        try:
            return max(1, int(stage.counters.get(name, default)))
        except (TypeError, ValueError):
            return default

    return ReadSpec(
        direct=False,
        threads=counter("threads", 1),
        request_bytes=counter("chunk_bytes", DEFAULT_REQUEST),
        files=counter("files", 1),
    )


def beaten(runs: Sequence[RunRecord]) -> dict[str, list[ReadSpec]]:
    """Per read ceiling, the distinct patterns of the stages that beat it."""
    out: dict[str, list[ReadSpec]] = {}
    for run in runs:
        for st in run.stages:
            if st.ceiling_name in READ_CEILINGS and over_ceiling(st):
                spec = stage_read_spec(st)
                specs = out.setdefault(st.ceiling_name, [])
                if spec not in specs:
                    specs.append(spec)
    return out


def with_patterns(ceiling: Ceiling, extra: Sequence[Pattern]) -> Ceiling:
    """``ceiling`` with ``extra`` patterns added; the best of all becomes the value."""
    kept = [p for p in ceiling.patterns if p.value is not None]
    if not kept and ceiling.value is not None:
        # A version-1 record: its one way becomes a pattern so it stays a candidate.
        kept = [Pattern(ceiling.method or "as measured", ceiling.value, ceiling.trials)]
    base = ceiling.method.split("; winner:")[0]
    method = f"{base}, re-probed with {len(extra)} stage pattern(s)"
    return best_of(
        ceiling.name,
        GBPS,
        [*kept, *extra],
        notes=ceiling.notes,
        size_bytes=ceiling.size_bytes,
        method=method,
    )


Measure = Callable[[str, ReadSpec], Pattern]


def reprobe_ceilings(
    runs: Sequence[RunRecord], ceilings: Ceilings, measure: Measure
) -> tuple[Ceilings, bool]:
    """(ceilings with each beaten read ceiling re-probed with the beating stages'
    patterns, whether any was). ``measure(ceiling_name, spec)`` times one pattern
    the way that ceiling is measured (cold for ``disk_read``, warm otherwise)."""
    todo = beaten(runs)
    if not todo:
        return ceilings, False
    items = dict(ceilings.items)
    for name, specs in todo.items():
        old = items.get(name)
        if old is None:
            continue
        extra = [replace(measure(name, s), origin="reprobe") for s in specs]
        items[name] = with_patterns(old, extra)
    return replace(ceilings, items=items), True


def explain_over(run: RunRecord, ceilings: Ceilings) -> RunRecord:
    """``run`` with a note on every stage above its ceiling saying why it can be."""
    stages = []
    for st in run.stages:
        if over_ceiling(st) and st.ceiling_name:
            st = replace(st, notes=(*st.notes, over_note(st, ceilings.get(st.ceiling_name))))
        stages.append(st)
    return replace(run, stages=tuple(stages))


def over_note(stage: StageRecord, ceiling: Ceiling | None) -> str:
    """Why ``stage`` ran above ``ceiling``, from what was measured."""
    frac = stage.ceiling_fraction or 0.0
    head = f"{frac:.0%} of {stage.ceiling_name}: {OVER_NOTE}"
    if stage.ceiling_name == "disk_read" and stage.disk_read_bytes is not None and stage.bytes:
        share = stage.disk_read_bytes / stage.bytes
        if share < 1.0:
            return (
                f"{head} because only {share:.0%} of its bytes came from the disk "
                "(kernel count); the rest were in memory"
            )
    reprobed = ceiling is not None and any(p.origin == "reprobe" for p in ceiling.patterns)
    if reprobed:
        return (
            f"{head} even after re-probing with its own pattern: the probe's scratch file "
            "and the stage's files differ in placement or caching below the page cache"
        )
    return (
        f"{head}: the ceiling was not re-probed with this stage's pattern (only read "
        "ceilings are); the stage's copy pattern beats every way the probe tried"
    )


def measure_on_scratch(folder: Path, size: int, trials: int = 2) -> Measure:
    """A :data:`Measure` that times patterns on a scratch file of ``size`` bytes in
    ``folder``'s filesystem, written afresh for each pattern and removed after."""
    from profiler.caches.page import evict_fd
    from profiler.machine.disk import scratch_dir, write_scratch
    from profiler.machine.patterns import measure_read
    from profiler.machine.scratch import scratch_file

    def measure(name: str, spec: ReadSpec) -> Pattern:
        where = scratch_dir(folder, size)
        with scratch_file(where, size) as path:
            write_scratch(path, size)
            fd = os.open(path, os.O_RDONLY)
            try:
                cold = name == "disk_read"
                if cold:
                    evict_fd(fd)
                else:
                    os.posix_fadvise(fd, 0, size, os.POSIX_FADV_WILLNEED)
                    measure_read(fd, -1, size, spec, 1, cold=False)  # bring it in
                return measure_read(fd, -1, size, replace(spec, files=1), trials, cold=cold)
            finally:
                os.close(fd)

    return measure
