"""Builders for tests of the ceiling logic: patterns, ceilings and a run whose read
beats its ceiling."""

from __future__ import annotations

from dataclasses import replace

from profiler.machine.patterns import best_of, pattern_from_trials
from profiler.records.ceilings import GBPS, Ceilings, Pattern
from profiler.records.run import RunRecord
from profiler.records.stage import StageRecord
from tests.support.fake_runs import make_run

MIB = 1 << 20


def pat(label: str, *trials: float, notes: tuple[str, ...] = ()) -> Pattern:
    """A buffered 4-thread pattern with these trials."""
    return pattern_from_trials(label, trials, mode="buffered", threads=4, notes=notes)


def ceilings_of(disk: float, page: float) -> Ceilings:
    """disk_read and page_cache_read, one pattern each."""
    items = {
        "disk_read": best_of("disk_read", GBPS, [pat("direct 4t × 16 MiB", disk)]),
        "page_cache_read": best_of("page_cache_read", GBPS, [pat("16t × 2 MiB", page)]),
    }
    return Ceilings(fingerprint={}, measured_at="now", items=items)


def beating_run(read_gbps: float) -> RunRecord:
    """A cold CPU run whose weight_read ran at ``read_gbps`` with 16 threads × 16 MiB,
    every byte from the disk."""
    run = make_run(cache="cold")
    stages = []
    for st in run.stages:
        if st.name == "weight_read":
            assert st.bytes
            st = replace(
                st,
                end_ns=st.start_ns + int(st.bytes / read_gbps),
                disk_read_bytes=st.bytes,
                counters={**st.counters, "threads": 16, "chunk_bytes": 16 * MIB},
            )
        stages.append(st)
    return replace(run, stages=tuple(stages))


def stage_of(run: RunRecord, name: str) -> StageRecord:
    return next(s for s in run.stages if s.name == name)
