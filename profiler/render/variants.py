"""The variants ranking as a table (console and markdown share it)."""

from __future__ import annotations

from collections.abc import Sequence

from tabulate import tabulate

from profiler.analysis.ranking import rank_variants
from profiler.records.run import RunRecord


def render_variants(runs: Sequence[RunRecord], fmt: str = "simple") -> str:
    parts: list[str] = []
    for cache, rows in rank_variants(runs).items():
        table = [
            [
                i + 1,
                r.variant,
                f"{r.total.median:.3f} ± {r.total.spread:.3f}",
                r.total.n,
                f"{r.speedup_vs_first:.2f}×",
                r.description,
            ]
            for i, r in enumerate(rows)
        ]
        parts.append(f"Ways of loading, page cache {cache} (load total: tokenizer → eval)")
        parts.append(
            tabulate(
                table,
                headers=["#", "variant", "load s", "n", "vs tutorial", "how"],
                tablefmt=fmt,
                colalign=("right", "left", "right", "right", "right", "left"),
            )
        )
    return "\n\n".join(parts) if parts else "no variant completed"
