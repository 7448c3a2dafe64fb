"""The ranking of the ways of loading as tables, one per cache state (``--variants``)."""

from __future__ import annotations

from collections.abc import Sequence

from profiler.analysis.ranking import VariantRank, rank_variants
from profiler.records.run import RunRecord
from profiler.render.format import MISSING, med_spread, ratio, time_unit
from profiler.render.tables import Column, Table, make_table, render_table


def variants_table(rows: Sequence[VariantRank]) -> Table:
    """Rank, variant, load total, repetitions, speed-up against the tutorial way, how.

    A variant whose every repetition failed has no rank and says "failed"; one that
    failed in some repetitions shows how many finished (``1/2``).
    """
    tu = time_unit([r.total.median for r in rows if r.total is not None])
    ranks = []
    place = 0
    for r in rows:
        place += r.total is not None
        ranks.append(str(place) if r.total is not None else MISSING)
    return make_table(
        [
            Column("#", tuple(ranks)),
            Column("variant", tuple(r.variant for r in rows), align="left"),
            Column(
                f"load ({tu.name})",
                tuple(med_spread(r.total, tu) if r.total is not None else "failed" for r in rows),
            ),
            Column(
                "n", tuple(str(r.n_runs) if not r.failed else f"{r.n_ok}/{r.n_runs}" for r in rows)
            ),
            Column("vs tutorial", tuple(ratio(r.speedup) for r in rows)),
            Column("how", tuple(r.description for r in rows), align="left"),
        ]
    )


def render_variants(runs: Sequence[RunRecord], fmt: str = "simple") -> str:
    """Every cache state's ranking; ``fmt`` is "simple" (terminal) or "pipe" (markdown)."""
    parts: list[str] = []
    for cache, rows in rank_variants(runs).items():
        title = f"Ways of loading, page cache {cache} (load total: tokenizer → eval)"
        parts.append(f"{title}\n{render_table(variants_table(rows), fmt)}")
    return "\n\n".join(parts) if parts else "no variant ran"
