"""The fast path's figures (:mod:`profiler.analysis.fastpath`) as one table."""

from __future__ import annotations

from collections.abc import Sequence

from profiler.analysis.fastpath import FastPathFigures
from profiler.render.format import num, percent, ratio
from profiler.render.tables import Column, make_table, render_table


def fastpath_table(rows: Sequence[FastPathFigures], fmt: str = "pipe") -> str:
    """Cache state, read+copy GB/s, % of pinned H2D, % of its stage ceiling, load
    totals of the fast path and of from_pretrained + .to(), and the speed-up."""
    table = make_table(
        [
            Column("page cache", tuple(r.cache for r in rows), align="left"),
            Column("read+copy (GB/s)", tuple(num(r.read_copy_gbps) for r in rows)),
            Column("pinned H2D (GB/s)", tuple(num(r.pinned_gbps) for r in rows)),
            Column("% of pinned", tuple(percent(r.pinned_fraction) for r in rows)),
            Column(
                "% of stage ceiling",
                tuple(f"{percent(r.ceiling_fraction)} ({r.ceiling_name or '?'})" for r in rows),
            ),
            Column("fast load (s)", tuple(num(r.fast_load_s) for r in rows)),
            Column("from_pretrained+.to() (s)", tuple(num(r.tutorial_load_s) for r in rows)),
            Column("speed-up", tuple(ratio(r.speedup) for r in rows)),
            Column("n", tuple(str(r.runs) for r in rows)),
        ]
    )
    return render_table(table, fmt)
