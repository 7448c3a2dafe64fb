"""Cold against warm: the same subject's stages with only the cache state changed.

Pure functions over group summaries: per stage, cold − warm is the cost of reading
from storage and cold / warm the factor; groups are paired only when model, device,
dtype, variant, machine and process mode all match.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from profiler.analysis.grouping import GroupKey, Subject, cache_temperature
from profiler.analysis.stats import Summary
from profiler.analysis.summaries import GroupSummary
from profiler.records.stage import sort_stages


@dataclass(frozen=True)
class ColdWarmRow:
    """One stage, cold against warm. ``difference_s`` = cold − warm; ``ratio`` = cold / warm."""

    stage: str
    cold: Summary | None
    warm: Summary | None
    difference_s: float | None
    ratio: float | None


@dataclass(frozen=True)
class ColdWarmComparison:
    cold: GroupKey
    warm: GroupKey
    rows: tuple[ColdWarmRow, ...]
    load_total: ColdWarmRow  # the model load alone
    total: ColdWarmRow  # every stage


def _cold_warm_row(stage: str, cold: Summary | None, warm: Summary | None) -> ColdWarmRow:
    diff = ratio = None
    if cold is not None and warm is not None:
        diff = cold.median - warm.median
        ratio = cold.median / warm.median if warm.median > 0 else None
    return ColdWarmRow(stage, cold, warm, diff, ratio)


def compare_cold_warm(cold: GroupSummary, warm: GroupSummary) -> ColdWarmComparison:
    """Stage by stage, the cold group against the warm one (plus the staged total)."""
    c = {s.name: s.time for s in cold.stages}
    w = {s.name: s.time for s in warm.stages}
    names = sort_stages([s.name for s in cold.stages] + [s.name for s in warm.stages])
    rows = tuple(_cold_warm_row(n, c.get(n), w.get(n)) for n in names)
    load = _cold_warm_row("load total", cold.load_total, warm.load_total)
    total = _cold_warm_row("staged total", cold.staged_total, warm.staged_total)
    return ColdWarmComparison(cold.key, warm.key, rows, load, total)


def cold_warm_pairs(summaries: Sequence[GroupSummary]) -> list[ColdWarmComparison]:
    """Comparisons for groups that differ only in their cache state.

    Each cold group is paired with each warm group of its subject and process mode
    (fresh subprocess or in-process). A run requested cold that turned out not cold
    stands in for the cold side only when the subject has no verified cold group,
    and keeps its "not-cold" label so the reader sees it.
    """
    out = []
    subjects: dict[Subject, list[GroupSummary]] = {}
    for s in summaries:
        subjects.setdefault(s.key.subject, []).append(s)
    for members in subjects.values():
        temps = {id(m): cache_temperature(m.key.cache) for m in members}
        colds = [m for m in members if temps[id(m)] == "cold"]
        if not colds:
            colds = [m for m in members if temps[id(m)] == "not-cold"]
        warms = [m for m in members if temps[id(m)] == "warm"]
        for c in colds:
            for w in warms:
                same_process = ("in-process" in c.key.cache) == ("in-process" in w.key.cache)
                if same_process and c.stages and w.stages:
                    out.append(compare_cold_warm(c, w))
    return out
