"""Ranking the ways of loading (``llmprof load --variants``): pure functions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from profiler.analysis.stats import Summary, summarize
from profiler.records.run import RunRecord


@dataclass(frozen=True)
class VariantRank:
    """One way of loading in one cache state, over its repetitions.

    ``total`` is the load total (tokenizer → eval, seconds) of the repetitions that
    finished, None when none did; ``speedup`` is the reference's median over this
    median (> 1 = faster than the reference), None when either did not finish.
    """

    variant: str
    cache: str
    total: Summary | None
    speedup: float | None
    n_runs: int
    failed: int
    description: str

    @property
    def n_ok(self) -> int:
        return self.n_runs - self.failed


def rank_variants(runs: Sequence[RunRecord]) -> dict[str, list[VariantRank]]:
    """Per cache label, the variants that finished by median load total (fastest
    first), then those that never finished, in the order they were planned.

    The reference for the speed-up is the first variant planned, the plain
    ``from_pretrained`` + ``.to()`` a tutorial would write. A variant's description
    is the last note of its runs (see :func:`profiler.run.variants.profile_variants`).
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
        totals = {}
        for variant in order:
            ok = [r.load_total_s for r in by_key.get((cache, variant), []) if r.status == "ok"]
            totals[variant] = summarize(ok) if ok else None
        ref = totals.get(order[0])
        rows = []
        for variant in order:
            group = by_key.get((cache, variant), [])
            if not group:
                continue
            total = totals[variant]
            speedup = None
            if total is not None and ref is not None and total.median > 0:
                speedup = ref.median / total.median
            rows.append(
                VariantRank(
                    variant=variant,
                    cache=cache,
                    total=total,
                    speedup=speedup,
                    n_runs=len(group),
                    failed=sum(r.status != "ok" for r in group),
                    description=group[0].notes[-1] if group[0].notes else "",
                )
            )
        done = [r for r in rows if r.total is not None]
        done.sort(key=lambda r: r.total.median if r.total is not None else 0.0)
        out[cache] = done + [r for r in rows if r.total is None]
    return out
