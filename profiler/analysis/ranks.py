"""Multi-rank runs (torchrun): per-rank figures, the slowest rank and the skew.

Pure functions over run records. A multi-rank run is stored as one RunRecord per
rank sharing a ``run_id``; every stage carries ``rank`` and ``world_size``. A rank's
load time is its own work (``RunRecord.load_total_s``: process-group set-up and the
wait for other ranks are left out, see ``OUTSIDE_LOAD``); the load of the whole job
is the slowest rank's, as loaders define it, and the skew is how far apart the
ranks finished their own work.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from profiler.analysis.decode_metrics import decode_figures
from profiler.records.run import RunRecord


@dataclass(frozen=True)
class RankFigures:
    """What one rank measured."""

    rank: int
    device: str
    load_s: float  # the rank's own load work (tokenizer to eval)
    pg_init_s: float | None  # torch.distributed process-group set-up
    barrier_s: float | None  # waiting for the other ranks after its load
    own_end_ns: int | None  # when its own load work ended (CLOCK_MONOTONIC, one host)
    bytes_placed: int | None  # bytes of weights this rank holds (its shards)
    tokens_per_s: float | None  # decode with tensor parallelism, batch of its first record
    cache: str  # page-cache label, verified on this rank


@dataclass(frozen=True)
class RankSpread:
    """The ranks of one multi-rank run, side by side."""

    run_id: str
    world_size: int
    ranks: tuple[RankFigures, ...]
    slowest_rank: int
    load_s: float  # the slowest rank's load: the job is loaded when every rank is
    skew_s: float  # slowest minus fastest rank load
    end_skew_s: float | None  # spread of the moments ranks finished (same host only)
    missing_ranks: tuple[int, ...] = ()


def rank_of(run: RunRecord) -> tuple[int, int]:
    """``(rank, world_size)`` of a run, read from its stages (0, 1 for single runs)."""
    for s in run.stages:
        return s.rank, s.world_size
    return 0, 1


def is_multi_rank(run: RunRecord) -> bool:
    return rank_of(run)[1] > 1


def _stage_s(run: RunRecord, name: str) -> float | None:
    st = run.stage(name)
    return st.duration_s if st is not None and st.status == "ok" else None


def _own_end_ns(run: RunRecord) -> int | None:
    ends = [s.end_ns for s in run.stages if s.status == "ok" and s.name == "eval"]
    return ends[0] if ends else None


def _tokens_per_s(run: RunRecord) -> float | None:
    for d in run.decode:
        return decode_figures([d]).tokens_per_s_batch
    return None


def rank_figures(run: RunRecord) -> RankFigures:
    rank, _world = rank_of(run)
    device = next((s.device for s in run.stages if s.device), run.device)
    placed = run.stage("from_pretrained")
    return RankFigures(
        rank=rank,
        device=device,
        load_s=run.load_total_s,
        pg_init_s=_stage_s(run, "pg_init"),
        barrier_s=_stage_s(run, "load_barrier"),
        own_end_ns=_own_end_ns(run),
        bytes_placed=placed.bytes if placed is not None else None,
        tokens_per_s=_tokens_per_s(run),
        cache=run.cache.label,
    )


def spread(ranks: Sequence[RankFigures], run_id: str, world_size: int) -> RankSpread:
    """Slowest rank, load time (the slowest rank's) and skew of ``ranks``."""
    if not ranks:
        raise ValueError("no ranks to compare")
    ordered = tuple(sorted(ranks, key=lambda r: r.rank))
    slowest = max(ordered, key=lambda r: r.load_s)
    fastest = min(ordered, key=lambda r: r.load_s)
    ends = [r.own_end_ns for r in ordered if r.own_end_ns is not None]
    end_skew = (max(ends) - min(ends)) / 1e9 if len(ends) == len(ordered) else None
    present = {r.rank for r in ordered}
    return RankSpread(
        run_id=run_id,
        world_size=world_size,
        ranks=ordered,
        slowest_rank=slowest.rank,
        load_s=slowest.load_s,
        skew_s=slowest.load_s - fastest.load_s,
        end_skew_s=end_skew,
        missing_ranks=tuple(r for r in range(world_size) if r not in present),
    )


def rank_spreads(runs: Iterable[RunRecord]) -> list[RankSpread]:
    """One :class:`RankSpread` per multi-rank run (ranks grouped by ``run_id``), in order."""
    by_id: dict[str, list[RunRecord]] = {}
    for run in runs:
        if run.status == "ok" and is_multi_rank(run):
            by_id.setdefault(run.run_id, []).append(run)
    out = []
    for run_id, group in by_id.items():
        world = rank_of(group[0])[1]
        # Same-host end times are comparable only when every rank ran on one machine.
        figures = [rank_figures(r) for r in group]
        if len({r.environment.hostname for r in group}) > 1:
            figures = [dataclasses.replace(f, own_end_ns=None) for f in figures]
        out.append(spread(figures, run_id, world))
    return out
