"""Metric extraction from run records, the extra_info format, and load_metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from profiler.analysis.benchmark_files import load_metrics
from profiler.analysis.metrics import (
    MetricSamples,
    failed_run_counts,
    metrics_from_extra_info,
    metrics_from_runs,
    metrics_to_extra_info,
    run_prefix,
)
from profiler.errors import UserError
from profiler.records.decode import DecodeCall, DecodeRecord
from profiler.records.fields import SCHEMA_VERSION
from profiler.records.io import save_runs
from profiler.records.run import CacheState, Environment, ModelInfo, NativeView, RunRecord
from profiler.records.stage import MemorySnapshot, StageMemory, StageRecord

MIB = 1024 * 1024
PREFIX = "smollm2-135m/cpu/bfloat16/cold"


def env(**over: object) -> Environment:
    base = dict(
        python="3.11.7",
        platform="Linux",
        cpu_model="Test CPU",
        cpu_count=2,
        ram_bytes=8 * 1024 * MIB,
        torch="2.13.0",
        transformers="5.23.0",
        hostname="box-1",
    )
    base.update(over)
    return Environment(**base)  # type: ignore[arg-type]


def mem(peak_rss: int, torch_peak: int | None = None) -> StageMemory:
    snap = MemorySnapshot(rss_bytes=1, rss_anon_bytes=1, rss_file_bytes=0)
    return StageMemory(
        before=snap,
        after=snap,
        peak_rss_bytes=peak_rss,
        peak_rss_anon_bytes=peak_rss,
        torch_peak_allocated_bytes=torch_peak,
    )


def stage(
    name: str, seconds: float, status: str = "ok", memory: StageMemory | None = None
) -> StageRecord:
    return StageRecord(
        name=name,
        status=status,  # type: ignore[arg-type]
        start_ns=1_000_000_000,
        end_ns=1_000_000_000 + round(seconds * 1e9),
        memory=memory,
    )


def call(start_ms: int, token_ms: list[int], end_ms: int) -> DecodeCall:
    ms = 1_000_000
    return DecodeCall(
        start_ns=start_ms * ms,
        end_ns=end_ms * ms,
        token_times_ns=tuple(t * ms for t in token_ms),
    )


def make_run(
    rep: int = 0,
    *,
    status: str = "ok",
    weight_read_s: float = 0.5,
    dtype: str = "bfloat16",
    native_s: float | None = 1.5,
    decode: tuple[DecodeRecord, ...] = (),
    environment: Environment | None = None,
    run_id: str = "r1",
) -> RunRecord:
    stages = (
        stage("import", 0.25, memory=mem(100 * MIB)),
        stage("weight_read", weight_read_s, memory=mem(300 * MIB + rep * MIB, 200 * MIB)),
        stage("cuda_init", 0.0, status="skipped"),
        stage("dtype_cast", 0.125, memory=mem(250 * MIB, 260 * MIB)),
    )
    native = (
        NativeView(stages=(stage("from_pretrained", native_s),)) if native_s is not None else None
    )
    return RunRecord(
        model=ModelInfo(spec="smollm2-135m", source_kind="bundled", path="/m"),
        device="cpu",
        dtype_requested="auto",
        dtype_resolved=dtype,
        cache=CacheState(page="cold", page_verified=True),
        environment=environment or env(),
        repetition=rep,
        stages=stages,
        native=native,
        decode=decode,
        status=status,
        run_id=run_id,
    )


def decode_b2() -> DecodeRecord:
    # Two warm calls of 4 tokens at batch 2. Call 1: ttft 10 ms, intervals 5,5,5 ms,
    # wall 30 ms. Call 2: ttft 20 ms, intervals 5,10,15 ms, wall 60 ms.
    c1 = call(0, [10, 15, 20, 25], 30)
    c2 = call(100, [120, 125, 135, 150], 160)
    first = call(0, [500, 505, 510, 515], 520)  # cold call: must not count
    return DecodeRecord(
        batch_size=2,
        prompt_tokens=8,
        new_tokens=4,
        temperature=0.0,
        seed=0,
        first_call=first,
        calls=(c1, c2),
    )


def test_prefix_uses_spec_device_dtype_and_cache_label() -> None:
    assert run_prefix(make_run()) == PREFIX
    hub = make_run()
    hub = RunRecord(**{**hub.__dict__, "cache": CacheState(hub="warm", page="warm")})
    assert run_prefix(hub) == "smollm2-135m/cpu/bfloat16/hub-warm/warm"


def test_load_metrics_from_runs_names_counts_values() -> None:
    runs = [make_run(i, weight_read_s=0.5 + i / 8) for i in range(3)]
    m = metrics_from_runs(runs)
    names = {n.removeprefix(PREFIX + "/") for n in m}
    assert names == {
        "load.import_s",
        "load.weight_read_s",
        "load.dtype_cast_s",
        "load.staged_total_s",
        "load.native_total_s",
        "load.peak_rss_bytes",
        "load.peak_gpu_bytes",
    }
    assert all(n.startswith(PREFIX + "/") for n in m)
    wr = m[f"{PREFIX}/load.weight_read_s"]
    assert wr.samples == (0.5, 0.625, 0.75)
    assert (wr.unit, wr.direction) == ("s", "lower")
    total = m[f"{PREFIX}/load.staged_total_s"].samples
    assert total == pytest.approx((0.875, 1.0, 1.125))  # 0.25 + wr + 0.125; skipped left out
    assert m[f"{PREFIX}/load.native_total_s"].samples == (1.5, 1.5, 1.5)
    rss = m[f"{PREFIX}/load.peak_rss_bytes"]
    assert rss.samples == (300 * MIB, 301 * MIB, 302 * MIB)
    assert rss.unit == "bytes"
    assert m[f"{PREFIX}/load.peak_gpu_bytes"].samples == (260 * MIB,) * 3
    assert all(len(x.samples) == 3 for x in m.values())


def test_failed_runs_are_skipped_and_counted() -> None:
    runs = [make_run(0), make_run(1, status="failed", weight_read_s=99.0), make_run(2)]
    m = metrics_from_runs(runs)
    assert m[f"{PREFIX}/load.weight_read_s"].samples == (0.5, 0.5)
    assert failed_run_counts(runs) == {PREFIX: 1}
    assert failed_run_counts(runs[:1]) == {}


def test_groups_are_separate() -> None:
    m = metrics_from_runs([make_run(0), make_run(0, dtype="float32", weight_read_s=1.0)])
    assert m[f"{PREFIX}/load.weight_read_s"].samples == (0.5,)
    assert m["smollm2-135m/cpu/float32/cold/load.weight_read_s"].samples == (1.0,)


def test_no_native_no_gpu_metric() -> None:
    run = make_run(native_s=None)
    stages = tuple(
        StageRecord(**{**s.__dict__, "memory": mem(10 * MIB)}) if s.memory else s
        for s in run.stages
    )
    run = RunRecord(**{**run.__dict__, "stages": stages})
    m = metrics_from_runs([run])
    assert f"{PREFIX}/load.native_total_s" not in m
    assert f"{PREFIX}/load.peak_gpu_bytes" not in m
    assert m[f"{PREFIX}/load.peak_rss_bytes"].samples == (10 * MIB,)


def test_decode_metrics() -> None:
    m = metrics_from_runs([make_run(0, decode=(decode_b2(),))])
    d = f"{PREFIX}/decode.b2"
    assert m[f"{d}.ttft_s"].samples == pytest.approx((0.015,))  # median of 10 and 20 ms
    # intervals over both warm calls: 5,5,5,5,10,15 ms
    assert m[f"{d}.token_p50_s"].samples == pytest.approx((0.005,))
    # numpy-linear p99 of [5,5,5,5,10,15]: 10 + (15-10)*0.95 = 14.75 ms
    assert m[f"{d}.token_p99_s"].samples == pytest.approx((0.01475,))
    # decode step per call: 3 steps in 15 ms and in 30 ms; median 7.5 ms
    assert m[f"{d}.step_s"].samples == pytest.approx((0.0075,))
    tps = m[f"{d}.tokens_per_s_batch"]
    assert tps.samples == pytest.approx((2 / 0.0075,))  # batch 2, prefill excluded
    assert (tps.unit, tps.direction) == ("tokens/s", "higher")


def test_extra_info_round_trip() -> None:
    m = metrics_from_runs([make_run(i) for i in range(2)])
    m["x"] = MetricSamples("x", "tokens/s", "higher", (1.0, 2.0), threshold=0.2)
    info = metrics_to_extra_info(m)
    assert set(info) == {"llmprof_metrics"}
    back = metrics_from_extra_info(json.loads(json.dumps(info)))
    assert back == m
    assert metrics_from_extra_info(info["llmprof_metrics"]) == m  # inner value accepted
    assert metrics_from_extra_info({"other": 1}) == {}


@pytest.mark.parametrize(
    "entry",
    [
        {"unit": "s", "direction": "sideways", "samples": [1.0]},
        {"unit": "s", "direction": "lower", "samples": []},
        {"unit": "s", "direction": "lower", "samples": ["1"]},
        {"unit": "", "direction": "lower", "samples": [1.0]},
    ],
)
def test_extra_info_malformed(entry: dict) -> None:
    with pytest.raises(UserError):
        metrics_from_extra_info({"llmprof_metrics": {"version": 1, "metrics": {"m": entry}}})


def test_extra_info_newer_version_refused() -> None:
    with pytest.raises(UserError, match="version 2"):
        metrics_from_extra_info({"llmprof_metrics": {"version": 2, "metrics": {}}})


# ----------------------------------------------------------------- load_metrics


def test_load_llmprof_file_and_folder(tmp_path: Path) -> None:
    save_runs(tmp_path / "a.json", [make_run(0), make_run(1, status="failed")])
    sub = tmp_path / "dir"
    sub.mkdir()
    save_runs(sub / "r0.json", [make_run(0, run_id="x")])
    save_runs(sub / "r1.json", [make_run(1, run_id="x")])
    save_runs(sub / "r1copy.json", [make_run(1, run_id="x")])  # same run again

    one = load_metrics(tmp_path / "a.json")
    assert one.source_format == "llmprof"
    assert one.failed_runs == 1
    assert one.metrics[f"{PREFIX}/load.weight_read_s"].samples == (0.5,)
    assert any("1 of 2 runs" in n and "failed" in n for n in one.notes)
    assert one.machine == env().machine_key()
    assert "hostname" not in one.machine

    folder = load_metrics(sub)
    assert folder.metrics[f"{PREFIX}/load.weight_read_s"].samples == (0.5, 0.5)
    assert any("counted once" in n for n in folder.notes)


def test_load_llmprof_machines_disagree(tmp_path: Path) -> None:
    runs = [make_run(0), make_run(1, environment=env(torch="2.11.0", hostname="other"))]
    save_runs(tmp_path / "a.json", runs)
    loaded = load_metrics(tmp_path / "a.json")
    assert loaded.machine_conflicts == ("torch",)
    assert any("disagree" in n and "torch" in n for n in loaded.notes)
    # a failed run's machine does not count: it contributed no metric
    other = env(torch="2.11.0")
    save_runs(tmp_path / "b.json", [make_run(0), make_run(1, status="failed", environment=other)])
    loaded = load_metrics(tmp_path / "b.json")
    assert (loaded.machine_conflicts, loaded.machine) == ((), env().machine_key())
    # files that disagree with each other
    d = tmp_path / "d"
    d.mkdir()
    save_runs(d / "x.json", [make_run(0, run_id="x")])
    save_runs(d / "y.json", [make_run(1, run_id="x", environment=other)])
    loaded = load_metrics(d)
    assert loaded.machine_conflicts == ("torch",)
    assert any("files disagree" in n for n in loaded.notes)


def _bench_doc(with_data: bool, extra: dict | None = None) -> dict:
    stats = {"min": 0.1, "max": 0.3, "mean": 0.2, "median": 0.2, "rounds": 3}
    if with_data:
        stats["data"] = [0.1, 0.2, 0.3]
    return {
        "machine_info": {
            "node": "box-1",
            "python_version": "3.11.7",
            "cpu": {"brand_raw": "Test CPU", "count": 2, "hz_actual_friendly": "2.1 GHz"},
            "gpu_name": "H100",
            "torch_version": "2.11.0",
        },
        "commit_info": {},
        "benchmarks": [
            {
                "name": "test_load",
                "fullname": "tests/bench/test_x.py::test_load",
                "stats": stats,
                "extra_info": extra or {},
            }
        ],
        "version": "5.3.1",
    }


def test_load_pytest_benchmark_with_data(tmp_path: Path) -> None:
    carried = {"m/decode.b1.ttft_s": MetricSamples("m/decode.b1.ttft_s", "s", "lower", (1.0, 2.0))}
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(_bench_doc(True, metrics_to_extra_info(carried))))
    loaded = load_metrics(path)
    assert loaded.source_format == "pytest-benchmark"
    own = loaded.metrics["tests/bench/test_x.py::test_load"]
    assert own.samples == (0.1, 0.2, 0.3)
    assert (own.unit, own.direction) == ("s", "lower")
    assert loaded.metrics["m/decode.b1.ttft_s"] == carried["m/decode.b1.ttft_s"]
    assert loaded.machine == {
        "cpu_model": "Test CPU",
        "cpu_count": 2,
        "python": "3.11.7",
        "gpu_name": "H100",
        "torch_version": "2.11.0",
    }
    assert loaded.notes == ()


def test_load_pytest_benchmark_without_data(tmp_path: Path) -> None:
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(_bench_doc(False)))
    loaded = load_metrics(path)
    assert loaded.metrics["tests/bench/test_x.py::test_load"].samples == (0.2,)
    assert any("--benchmark-save-data" in n for n in loaded.notes)


def test_load_refuses_bad_input(tmp_path: Path) -> None:
    cases = {
        "missing.json": None,
        "notjson.json": "{nope",
        "other.json": json.dumps({"hello": 1}),
        "newer.json": json.dumps({"kind": "llmprof.runs", "schema_version": SCHEMA_VERSION + 1}),
        "badbench.json": json.dumps({"machine_info": {}, "benchmarks": [{"name": "x"}]}),
    }
    for name, text in cases.items():
        p = tmp_path / name
        if text is not None:
            p.write_text(text)
        with pytest.raises(UserError) as e:
            load_metrics(p)
        assert name in str(e.value)
        assert "\n" not in str(e.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no .json"):
        load_metrics(empty)


def test_load_refuses_same_metric_in_two_files(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    (d / "a.json").write_text(json.dumps(_bench_doc(True)))
    (d / "b.json").write_text(json.dumps(_bench_doc(True)))
    with pytest.raises(UserError, match="appears in both"):
        load_metrics(d)
