"""Multi-rank arithmetic: per-rank figures, the slowest rank, the skew, merging by run id."""

from __future__ import annotations

import dataclasses

import pytest

from profiler.analysis.ranks import RankFigures, is_multi_rank, rank_of, rank_spreads, spread
from profiler.records.run import RunRecord
from profiler.records.stage import StageRecord
from profiler.render.ranks import rank_diagnosis, rank_lines
from tests.support import fake_runs as fr


def _fig(rank: int, load_s: float, end_ns: int | None = None) -> RankFigures:
    return RankFigures(rank, "cpu", load_s, 0.1, 0.0, end_ns, 100, None, "warm")


def _rank_run(
    rank: int, world: int, loads: dict[str, float], run_id: str = "r1", host: str = "box"
) -> RunRecord:
    """A rank's record: stages laid end to end from t=0 with the given durations."""
    stages, t = [], 1_000_000_000 * (rank + 1)
    for name, s in loads.items():
        end = t + int(s * 1e9)
        stages.append(
            StageRecord(
                name=name,
                status="ok",
                start_ns=t,
                end_ns=end,
                rank=rank,
                world_size=world,
                device="cpu",
            )
        )
        t = end
    base = fr.make_run(cache="warm", native=False, decode_batches=())
    env = dataclasses.replace(base.environment, hostname=host)
    return dataclasses.replace(
        base, stages=tuple(stages), run_id=run_id, environment=env, variant=f"tp{world}/rank{rank}"
    )


def test_slowest_rank_bounds_the_load_and_skew_is_slowest_minus_fastest() -> None:
    sp = spread([_fig(0, 7.74), _fig(1, 7.461), _fig(2, 7.5)], "x", 3)
    assert sp.slowest_rank == 0
    assert sp.load_s == pytest.approx(7.74)
    assert sp.skew_s == pytest.approx(0.279)
    assert [r.rank for r in sp.ranks] == [0, 1, 2]


def test_end_skew_needs_every_rank_end_and_missing_ranks_are_named() -> None:
    sp = spread([_fig(1, 2.0, 5_000_000_000), _fig(0, 1.0, 4_250_000_000)], "x", 3)
    assert sp.end_skew_s == pytest.approx(0.75)
    assert sp.missing_ranks == (2,)
    assert spread([_fig(0, 1.0, 1), _fig(1, 1.0, None)], "x", 2).end_skew_s is None


def test_spread_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        spread([], "x", 2)


def test_ranks_are_merged_by_run_id_and_single_runs_ignored() -> None:
    a0 = _rank_run(
        0,
        2,
        {
            "pg_init": 0.2,
            "tokenizer": 0.5,
            "from_pretrained": 3.0,
            "eval": 0.01,
            "load_barrier": 0.0,
        },
    )
    a1 = _rank_run(
        1,
        2,
        {
            "pg_init": 0.1,
            "tokenizer": 0.5,
            "from_pretrained": 2.0,
            "eval": 0.01,
            "load_barrier": 1.0,
        },
    )
    b0 = _rank_run(0, 2, {"tokenizer": 1.0, "eval": 0.0}, run_id="r2")
    b1 = _rank_run(1, 2, {"tokenizer": 1.5, "eval": 0.0}, run_id="r2")
    single = fr.make_run(cache="warm")
    spreads = rank_spreads([a1, single, b0, a0, b1])
    assert [s.run_id for s in spreads] == ["r1", "r2"]
    first = spreads[0]
    # pg_init and the barrier wait are not a rank's load work
    assert first.load_s == pytest.approx(3.51)
    assert first.skew_s == pytest.approx(1.0)
    assert first.ranks[0].pg_init_s == pytest.approx(0.2)
    assert first.ranks[1].barrier_s == pytest.approx(1.0)
    assert spreads[1].slowest_rank == 1
    assert not is_multi_rank(single) and rank_of(single) == (0, 1)


def test_end_skew_is_not_computed_across_hosts() -> None:
    r0 = _rank_run(0, 2, {"tokenizer": 1.0, "eval": 0.1}, host="a")
    r1 = _rank_run(1, 2, {"tokenizer": 1.0, "eval": 0.1}, host="b")
    assert rank_spreads([r0, r1])[0].end_skew_s is None
    same = rank_spreads([r0, dataclasses.replace(r1, environment=r0.environment)])[0]
    assert same.end_skew_s == pytest.approx(1.0)  # rank 1's clock starts 1 s later


def test_stage_records_without_rank_fields_read_as_single_rank() -> None:
    st = StageRecord(
        name="eval", status="ok", start_ns=0, end_ns=5, rank=1, world_size=2, device="cuda:1"
    )
    d = st.to_dict()
    assert (d["rank"], d["world_size"], d["device"]) == (1, 2, "cuda:1")
    assert StageRecord.from_dict(d) == st
    for k in ("rank", "world_size", "device"):
        del d[k]
    old = StageRecord.from_dict(d)
    assert (old.rank, old.world_size, old.device) == (0, 1, "")


def test_rank_section_shows_each_rank_and_names_the_slowest() -> None:
    r0 = _rank_run(0, 2, {"tokenizer": 1.0, "eval": 0.1})
    r1 = _rank_run(1, 2, {"tokenizer": 2.0, "eval": 0.1})
    text = "\n".join(rank_lines([r0, r1], "simple"))
    assert "slowest rank 1 of 2" in text and "skew between ranks 1.00 s" in text
    assert rank_lines([fr.make_run()], "simple") == []
    assert rank_diagnosis([r0, r1])[0].startswith("rank 1 (cpu) bounds the load")
