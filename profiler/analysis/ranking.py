"""Ranking the ways of loading (``llmprof load --variants``): pure functions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from profiler.analysis.stats import Summary, summarize
from profiler.records.run import RunRecord


@dataclass(frozen=True)
class VariantRank:
    variant: str
    cache: str
    total: Summary  # load total (tokenizer → eval), seconds
    speedup_vs_first: float  # the first variant's median / this median (>1 = faster)
    failed: int
    description: str


def rank_variants(runs: Sequence[RunRecord]) -> dict[str, list[VariantRank]]:
    """Per cache label, variants sorted by median load total (fastest first).

    The reference for the speed-up is the first variant planned, which is the plain
    ``from_pretrained`` + ``.to()`` a tutorial would write.
    """
    order: list[str] = []
    by_key: dict[tuple[str, str], list[RunRecord]] = {}
    for r in runs:
        if r.variant is None:
            continue
        if r.variant not in order:
            order.append(r.variant)
        by_key.setdefault((r.cache.label, r.variant), []).append(r)
    out: dict[str, list[VariantRank]] = {}
    for cache in dict.fromkeys(k[0] for k in by_key):
        rows: list[VariantRank] = []
        ref = None
        for variant in order:
            group = by_key.get((cache, variant), [])
            ok = [r.load_total_s for r in group if r.status == "ok"]
            if not ok:
                continue
            s = summarize(ok)
            if ref is None:
                ref = s.median
            desc = group[0].notes[-1] if group[0].notes else ""
            rows.append(
                VariantRank(
                    variant,
                    cache,
                    s,
                    ref / s.median if s.median else 0.0,
                    sum(r.status != "ok" for r in group),
                    desc,
                )
            )
        out[cache] = sorted(rows, key=lambda v: v.total.median)
    return out
