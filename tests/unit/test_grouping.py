"""Grouping and per-group arithmetic on records with known numbers."""

from __future__ import annotations

import dataclasses

import pytest

from profiler.analysis.cold_warm import cold_warm_pairs
from profiler.analysis.grouping import cache_temperature, group_runs, varying_fields
from profiler.analysis.stats import summarize
from profiler.analysis.summaries import (
    native_gap,
    summarize_group,
    summarize_runs,
    summarize_stages,
)
from profiler.records.run import CacheState, NativeView, RunRecord
from profiler.records.stage import StageRecord
from tests.support import fake_runs as fr

COLD_TOTAL = sum(row[1] for row in fr.CPU_STAGES)  # 2.424 s
WARM_TOTAL = sum(row[2] for row in fr.CPU_STAGES)  # 1.392 s
# The load alone leaves out python_start and import (records.OUTSIDE_LOAD).
COLD_LOAD = COLD_TOTAL - 0.040 - 1.100  # 1.284 s
WARM_LOAD = WARM_TOTAL - 0.040 - 0.950  # 0.402 s
# Jitter of repetitions 0, 1, 2: 1.00, 1.03, 0.98 -> median 1.00, MAD 0.02.
MAD_FACTOR = 0.02


def _stage(name: str, seconds: float, status: str = "ok", **kw: object) -> StageRecord:
    return StageRecord(name=name, status=status, start_ns=0, end_ns=int(seconds * 1e9), **kw)


def _runs(*per_run: list[StageRecord]) -> list[RunRecord]:
    """One run per stage list (the rest of each record is the fixture's)."""
    return [dataclasses.replace(fr.make_run(), stages=tuple(stages)) for stages in per_run]


def test_groups_split_by_cache_and_keep_cold_first() -> None:
    runs = list(reversed(fr.cpu_cold_warm()))  # warm first in the input
    groups = group_runs(runs)
    assert [g.key.cache for g in groups] == ["cold", "warm"]
    assert [len(g.runs) for g in groups] == [3, 3]
    assert [r.repetition for r in groups[0].runs] == [0, 1, 2]


def test_groups_split_by_model_device_and_machine() -> None:
    groups = group_runs(fr.mixed_runs())
    keys = [(g.key.model, g.key.device, g.key.cache) for g in groups]
    assert keys == [
        (fr.SPEC, "cpu", "cold"),
        (fr.SPEC, "cpu", "warm"),
        (fr.SPEC, "cuda:0", "cold"),
        (fr.SPEC, "cuda:0", "warm"),
        ("synthetic:llama-tiny", "cpu", "warm"),
    ]
    assert varying_fields([g.key for g in groups]) == ("model", "device", "cache", "machine")
    assert varying_fields([groups[0].key]) == ("cache",)


def test_variant_is_part_of_the_subject() -> None:
    runs = [fr.make_run(), dataclasses.replace(fr.make_run(), variant="read_threads=1")]
    groups = group_runs(runs)
    assert [g.key.variant for g in groups] == ["", "read_threads=1"]
    assert groups[0].key.subject != groups[1].key.subject
    assert varying_fields([g.key for g in groups]) == ("variant",)


def test_dtype_is_part_of_the_key() -> None:
    runs = [fr.make_run(dtype="bfloat16"), fr.make_run(dtype="float32")]
    groups = group_runs(runs)
    assert len(groups) == 2
    assert varying_fields([g.key for g in groups]) == ("dtype",)


@pytest.mark.parametrize(
    ("cache", "temperature"),
    [
        (CacheState(page="cold", page_verified=True), "cold"),
        (CacheState(page="cold", page_verified=False), "not-cold"),
        (CacheState(hub="warm", page="warm"), "warm"),
        (CacheState(page="uncontrolled", process="in-process"), "uncontrolled"),
    ],
)
def test_cache_temperature(cache: CacheState, temperature: str) -> None:
    assert cache_temperature(cache.label) == temperature


def test_stage_medians_spreads_and_shares_on_known_numbers() -> None:
    cold = summarize_runs(fr.cpu_cold_warm())[0]
    assert cold.n_ok == 3
    assert cold.staged_total is not None
    assert cold.staged_total.median == pytest.approx(COLD_TOTAL)
    assert cold.staged_total.spread == pytest.approx(COLD_TOTAL * MAD_FACTOR)
    wr = next(s for s in cold.stages if s.name == "weight_read")
    assert wr.n == 3
    assert wr.time is not None
    assert wr.time.median == pytest.approx(0.950)
    assert wr.time.spread == pytest.approx(0.950 * MAD_FACTOR)
    assert wr.share_of_total == pytest.approx(0.950 / COLD_TOTAL)
    assert wr.bytes == fr.WEIGHT_BYTES
    assert wr.disk_read_bytes == fr.WEIGHT_BYTES
    assert wr.gbps is not None
    assert wr.gbps.median == pytest.approx(fr.WEIGHT_BYTES / 0.950 / 1e9, rel=1e-6)
    assert wr.ceiling_fraction == pytest.approx(fr.WEIGHT_BYTES / 0.950 / 1e9 / 1.2, rel=1e-6)
    assert wr.rss_file_after == int(12 * fr.MIB) + fr.WEIGHT_BYTES
    assert wr.notes == ("read through mmap: pages faulted in on first touch",)
    # Shares of the ok stages sum to 1: every stage scales with the same jitter here.
    assert sum(s.share_of_total or 0.0 for s in cold.stages) == pytest.approx(1.0)


def test_stage_order_follows_the_pipeline() -> None:
    cold = summarize_runs(fr.cpu_cold_warm())[0]
    names = [s.name for s in cold.stages]
    assert names == [
        "python_start",
        "import",
        "cuda_init",
        "tokenizer",
        "config",
        "model_init",
        "weight_read",
        "dtype_cast",
        "h2d_copy",
        "attach",
        "eval",
    ]


def test_skipped_stage_has_reason_and_no_time() -> None:
    cold = summarize_runs(fr.cpu_cold_warm())[0]
    cuda = next(s for s in cold.stages if s.name == "cuda_init")
    assert cuda.time is None
    assert cuda.n == 0
    assert cuda.share_of_total is None
    assert cuda.statuses == {"skipped": 3}
    assert cuda.skipped_reason == "device is cpu"


def test_summarize_stages_median_and_mad_by_hand() -> None:
    runs = _runs(*([_stage("a", s)] for s in (1.0, 2.0, 3.0, 10.0)))
    (a,) = summarize_stages(runs, total=None)
    assert a.time is not None
    assert a.time.median == pytest.approx(2.5)
    assert a.time.spread == pytest.approx(1.0)  # |x - 2.5| = 1.5, .5, .5, 7.5 -> 1.0
    assert a.time.n == 4
    assert a.share_of_total is None


def test_shares_use_medians_of_stage_and_total() -> None:
    # Stages that vary independently: shares are median/median and sum to ~1, not 1.
    runs = _runs(
        [_stage("a", 1.0), _stage("b", 3.0)],
        [_stage("a", 2.0), _stage("b", 2.0)],
        [_stage("a", 3.0), _stage("b", 2.5)],
    )

    total = summarize([4.0, 4.0, 5.5])
    a, b = summarize_stages(runs, total)
    assert a.share_of_total == pytest.approx(2.0 / 4.0)
    assert b.share_of_total == pytest.approx(2.5 / 4.0)


def test_partly_skipped_stage_counts_ok_repetitions_only() -> None:
    runs = _runs(
        [_stage("a", 1.0)],
        [_stage("a", 3.0)],
        [_stage("a", 0.0, "skipped", notes=("not needed",))],
    )
    (a,) = summarize_stages(runs, None)
    assert a.n == 2
    assert a.time is not None and a.time.median == pytest.approx(2.0)
    assert a.statuses == {"ok": 2, "skipped": 1}
    assert a.skipped_reason == "not needed"


def test_failed_repetition_is_listed_not_averaged() -> None:
    group = group_runs([*fr.cpu_cold_warm(), fr.failed_run()])[0]
    s = summarize_group(group)
    assert (s.n_runs, s.n_ok) == (4, 3)
    assert s.staged_total is not None
    assert s.staged_total.median == pytest.approx(COLD_TOTAL)
    (f,) = s.failed
    assert f.exit_code == 137
    assert f.repetition == 3
    assert f.error is not None and "OOM" in f.error


def test_not_cold_runs_are_flagged_with_residency() -> None:
    s = summarize_runs([fr.not_cold_run()])[0]
    assert s.key.cache == "not-cold"
    assert s.unverified_cold_runs == 1
    assert s.residency_before is not None
    assert s.residency_before.median == pytest.approx(0.42)


def test_load_total_leaves_out_process_start() -> None:
    cold, warm = summarize_runs(fr.cpu_cold_warm())
    assert cold.load_total is not None and warm.load_total is not None
    assert cold.load_total.median == pytest.approx(COLD_LOAD)
    assert cold.load_total.spread == pytest.approx(COLD_LOAD * MAD_FACTOR)
    assert warm.load_total.median == pytest.approx(WARM_LOAD)
    gpu = summarize_runs(fr.gpu_cold_warm())[0]
    assert gpu.load_total is not None and gpu.staged_total is not None
    # cuda_init (0.9 s) is startup too.
    assert gpu.staged_total.median - gpu.load_total.median == pytest.approx(0.04 + 1.1 + 0.9)


def test_native_total_and_gap_against_the_load_total() -> None:
    cold, warm = summarize_runs(fr.cpu_cold_warm())
    assert cold.native_total is not None
    assert cold.native_total.median == pytest.approx(1.10)
    gap = native_gap(cold)
    assert gap is not None
    assert gap[0] == pytest.approx(1.10 - COLD_LOAD)
    assert gap[1] == pytest.approx((1.10 - COLD_LOAD) / COLD_LOAD)
    assert cold.native_attribution["from_pretrained.disk_read_bytes"] == fr.WEIGHT_BYTES
    assert warm.native_attribution["from_pretrained.major_faults"] == 0
    assert cold.unattributed == ("0.21 s between the last weight read and the first forward",)


def test_cold_vs_warm_rows() -> None:
    groups = summarize_runs(fr.cpu_cold_warm())
    (cmp,) = cold_warm_pairs(groups)
    assert (cmp.cold.cache, cmp.warm.cache) == ("cold", "warm")
    wr = next(r for r in cmp.rows if r.stage == "weight_read")
    assert wr.difference_s == pytest.approx(0.950 - 0.110)
    assert wr.ratio == pytest.approx(0.950 / 0.110)
    skipped = next(r for r in cmp.rows if r.stage == "cuda_init")
    assert skipped.cold is None and skipped.ratio is None
    assert cmp.total.difference_s == pytest.approx(COLD_TOTAL - WARM_TOTAL)
    assert cmp.total.ratio == pytest.approx(COLD_TOTAL / WARM_TOTAL)
    assert cmp.load_total.ratio == pytest.approx(COLD_LOAD / WARM_LOAD)


def test_cold_warm_pairs_one_per_subject() -> None:
    pairs = cold_warm_pairs(summarize_runs(fr.mixed_runs()))
    assert [(p.cold.device, p.warm.device) for p in pairs] == [("cpu", "cpu"), ("cuda:0", "cuda:0")]


def test_not_cold_stands_in_only_without_a_verified_cold_group() -> None:
    warm = [fr.make_run(cache="warm", repetition=i) for i in range(2)]
    with_cold = summarize_runs([fr.make_run(cache="cold"), fr.not_cold_run(1), *warm])
    assert [(p.cold.cache, p.warm.cache) for p in cold_warm_pairs(with_cold)] == [("cold", "warm")]
    without = summarize_runs([fr.not_cold_run(1), *warm])
    assert [(p.cold.cache, p.warm.cache) for p in cold_warm_pairs(without)] == [
        ("not-cold", "warm")
    ]


def test_in_process_runs_are_not_paired_with_fresh_ones() -> None:
    cold = fr.make_run(cache="cold")
    warm = fr.make_run(cache="warm")
    warm = dataclasses.replace(warm, cache=dataclasses.replace(warm.cache, process="in-process"))
    assert cold_warm_pairs(summarize_runs([cold, warm])) == []


def test_decode_summary_arithmetic() -> None:
    s = summarize_runs(fr.cpu_cold_warm())[1]
    d1, d4 = s.decode
    assert (d1.batch_size, d4.batch_size) == (1, 4)
    assert d1.n_calls == 9  # 3 warm calls x 3 repetitions
    # Warm calls: TTFT 0.030 × (1.00, 1.02, 0.99) -> median 0.030.
    f1, f4 = d1.figures, d4.figures
    assert f1.ttft is not None and f1.ttft.median == pytest.approx(0.030, abs=1e-9)
    # Intervals per call: six of 0.020·f and one of 0.032·f; median is 0.020·f.
    assert f1.interval is not None
    assert f1.interval.median == pytest.approx(0.020, abs=1e-9)
    assert f1.interval.max == pytest.approx(0.032 * 1.02, abs=1e-9)
    mean_interval = (6 * 0.020 + 0.032) / 7
    assert f1.step is not None and f1.step.median == pytest.approx(mean_interval, rel=1e-6)
    assert f1.tokens_per_s_seq == pytest.approx(1 / mean_interval, rel=1e-6)
    assert f4.tokens_per_s_batch is not None and f4.tokens_per_s_seq is not None
    assert f4.tokens_per_s_batch == pytest.approx(4 * f4.tokens_per_s_seq)
    # First call: TTFT 4 × 0.030, then 0.040 and six of 0.025.
    assert d1.first_ttft is not None and d1.first_ttft.median == pytest.approx(0.120, abs=1e-9)
    assert d1.first_by_position_s == pytest.approx((0.040,) + (0.025,) * 6, abs=1e-9)
    assert d1.warm_by_position_s == pytest.approx((0.020,) * 3 + (0.032,) + (0.020,) * 3, abs=1e-9)
    # MBU: weights + KV at the mean context, over the median step, against 20 GB/s.
    step_bytes = fr.WEIGHT_BYTES + fr.KV_BYTES_PER_TOKEN * 1 * (16 + 8 / 2)
    assert f1.mbu == pytest.approx(step_bytes / mean_interval / 1e9 / 20.0, rel=1e-6)
    assert f1.kv_counted
    # plain calls are 0.99 × hooked: overhead 1/0.99 - 1.
    assert d1.hook is not None
    assert d1.hook.fraction == pytest.approx(1 / 0.99 - 1, rel=1e-4)
    assert d1.text == "The capital of France is Paris. It is"


def test_empty_decode_and_native_are_none() -> None:
    run = fr.make_run(decode_batches=(), native=False)
    s = summarize_runs([run])[0]
    assert s.decode == ()
    assert s.native_total is None
    assert native_gap(s) is None


def test_native_stages_keep_the_order_they_ran_in() -> None:
    calls = ("tokenizer", "from_pretrained", "to_device", "eval")
    native = NativeView(stages=tuple(_stage(n, 0.1) for n in calls))
    run = dataclasses.replace(fr.make_run(), native=native)
    (s,) = summarize_runs([run])
    assert [st.name for st in s.native_stages] == list(calls)
