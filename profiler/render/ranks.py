"""Multi-rank runs (torchrun): the per-rank table, the slowest rank and the skew.

Built from :func:`profiler.analysis.ranks.rank_spreads`; shared by the console
and the markdown report, which each add one call.
"""

from __future__ import annotations

from collections.abc import Sequence

from profiler.analysis.ranks import RankSpread, rank_spreads
from profiler.records.run import RunRecord
from profiler.render.format import bytes_unit, human_seconds, num, quantity, time_unit
from profiler.render.tables import Column, Table, make_table, render_table


def rank_table(sp: RankSpread) -> Table:
    """One row per rank: its load, process-group set-up, wait, bytes, decode rate."""
    t = time_unit([r.load_s for r in sp.ranks] + [r.pg_init_s for r in sp.ranks])
    b = bytes_unit([r.bytes_placed for r in sp.ranks])
    ranks = sp.ranks
    return make_table(
        [
            Column("rank", tuple(str(r.rank) for r in ranks)),
            Column("device", tuple(r.device for r in ranks), align="left"),
            Column("cache", tuple(r.cache for r in ranks), align="left"),
            Column(f"pg_init ({t.name})", tuple(quantity(r.pg_init_s, t) for r in ranks)),
            Column(f"load ({t.name})", tuple(quantity(r.load_s, t) for r in ranks)),
            Column(
                f"behind slowest ({t.name})",
                tuple(quantity(sp.load_s - r.load_s, t) for r in ranks),
            ),
            Column(f"barrier wait ({t.name})", tuple(quantity(r.barrier_s, t) for r in ranks)),
            Column(f"weights held ({b.name})", tuple(quantity(r.bytes_placed, b) for r in ranks)),
            Column(
                "decode (tokens/s)",
                tuple(num(r.tokens_per_s) for r in ranks),
                show=any(r.tokens_per_s is not None for r in ranks),
            ),
            Column(
                "slowest",
                tuple("◀" if r.rank == sp.slowest_rank else "" for r in ranks),
                align="left",
            ),
        ]
    )


def spread_line(sp: RankSpread) -> str:
    """The headline of a multi-rank run: load time (slowest rank) and skew."""
    parts = [
        f"load {human_seconds(sp.load_s)} (slowest rank {sp.slowest_rank} of {sp.world_size})",
        f"skew between ranks {human_seconds(sp.skew_s)}",
    ]
    if sp.end_skew_s is not None:
        parts.append(f"ranks finished their own load {human_seconds(sp.end_skew_s)} apart")
    if sp.missing_ranks:
        parts.append("missing ranks: " + ", ".join(str(r) for r in sp.missing_ranks))
    return "; ".join(parts)


def rank_lines(runs: Sequence[RunRecord], fmt: str, heading: str = "") -> list[str]:
    """Per-rank section for every multi-rank run in ``runs`` (empty when there are none)."""
    out: list[str] = []
    for sp in rank_spreads(runs):
        title = f"ranks · run {sp.run_id} · world size {sp.world_size}"
        out += [f"{heading}{title}", ""] if heading else [title]
        out += [spread_line(sp), ""] if heading else [spread_line(sp)]
        out += [render_table(rank_table(sp), fmt), ""]
    return out


def rank_diagnosis(runs: Sequence[RunRecord]) -> list[str]:
    """Diagnosis lines: which rank bounds each multi-rank load, and by how much."""
    out = []
    for sp in rank_spreads(runs):
        slow = next(r for r in sp.ranks if r.rank == sp.slowest_rank)
        pg = max((r.pg_init_s or 0.0) for r in sp.ranks)
        out.append(
            f"rank {slow.rank} ({slow.device}) bounds the load: {human_seconds(slow.load_s)}, "
            f"{human_seconds(sp.skew_s)} behind the fastest rank; process-group set-up "
            f"took up to {human_seconds(pg)} more"
        )
    return out
