from __future__ import annotations

import json

import pytest

from profiler.errors import UserError
from profiler.records.decode import DecodeCall, DecodeRecord
from profiler.records.fields import SCHEMA_VERSION
from profiler.records.io import load_runs, parse_runs, runs_to_json, save_runs
from profiler.records.run import CacheState, Environment, ModelInfo, NativeView, RunRecord
from profiler.records.stage import MemorySnapshot, StageMemory, StageRecord, sort_stages


def _mem(rss: int) -> MemorySnapshot:
    return MemorySnapshot(rss, rss - 100, 100, None, None, None)


def make_run() -> RunRecord:
    stage = StageRecord(
        "weight_read",
        "ok",
        1_000,
        2_000_001_000,
        bytes=4_000_000_000,
        bytes_what="read",
        disk_read_bytes=4_000_000,
        memory=StageMemory(_mem(1000), _mem(5000), 6000, 5900, None, None, None),
        notes=("n",),
        counters={"threads": 4},
    )
    skipped = StageRecord("h2d_copy", "skipped", 5, 5, notes=("device is cpu",))
    call = DecodeCall(0, 100, (10, 30, 60), prompt_start_ns=2)
    dec = DecodeRecord(1, 8, 3, 0.0, 0, call, (call,), (0.0001,), 10, 2, 1.5, "memcpy")
    native = NativeView((stage,), {"dtype": "float32"}, {"x": 1}, ("y",))
    env = Environment("3.11", "linux", "cpu", 2, 1 << 30, torch="2.13")
    return RunRecord(
        model=ModelInfo("m", "local", "/m", weight_files=("a",), random_weights=True),
        device="cpu",
        dtype_requested="auto",
        dtype_resolved="float32",
        cache=CacheState(page="cold", page_resident_fraction_before=0.0, page_verified=True),
        environment=env,
        stages=(stage, skipped),
        native=native,
        decode=(dec,),
        notes=("hello",),
        created_at="2026-01-01T00:00:00+00:00",
        run_id="abc",
    )


def test_round_trip_is_identity():
    run = make_run()
    back = RunRecord.from_dict(json.loads(json.dumps(run.to_dict())))
    assert back == run


def test_derived_values_in_json_are_consistent():
    d = make_run().to_dict()
    st = d["stages"][0]
    assert st["duration_s"] == pytest.approx(2.0)
    assert st["gbps"] == pytest.approx(2.0)  # 4e9 bytes in 2 s
    assert d["stages"][1]["gbps"] is None  # skipped stages have no rate
    assert d["staged_total_s"] == pytest.approx(2.0)  # skipped stages add nothing
    assert d["units"]["_bytes"] == "bytes"
    dec = d["decode"][0]["calls"][0]
    assert dec["ttft_s"] == pytest.approx(10e-9)


def test_decode_intervals_stay_inside_one_call():
    call = DecodeCall(0, 100, (10, 30, 60))
    assert call.intervals_s == pytest.approx((20e-9, 30e-9))


def test_unknown_keys_are_ignored_and_missing_optional_fields_default():
    d = make_run().to_dict()
    d["future_field"] = 1
    d["stages"][0]["another"] = 2
    del d["notes"]
    run = RunRecord.from_dict(d)
    assert run.notes == ()


def test_newer_schema_is_refused():
    d = make_run().to_dict()
    d["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(UserError, match="upgrade"):
        RunRecord.from_dict(d)


def test_not_a_record_is_refused():
    with pytest.raises(UserError, match="not an llmprof run record"):
        parse_runs({"benchmarks": []}, "x.json")


def test_save_and_load_many(tmp_path):
    runs = [make_run(), make_run()]
    path = tmp_path / "sub" / "runs.json"
    save_runs(path, runs)
    assert load_runs(path) == runs
    assert json.loads(runs_to_json(runs))["kind"] == "llmprof.runs"
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_load_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(UserError, match="bad.json: not JSON"):
        load_runs(bad)
    with pytest.raises(UserError, match="missing.json: cannot read"):
        load_runs(tmp_path / "missing.json")


def test_cache_label_marks_unverified_cold():
    assert CacheState(page="cold", page_verified=False).label == "not-cold"
    assert CacheState(page="warm", hub="cold").label == "hub-cold/warm"
    assert CacheState(page="warm", process="in-process").label == "warm/in-process"


def test_sort_stages_follows_pipeline_and_keeps_unknown_order():
    names = ["eval", "zeta", "import", "weight_read", "alpha", "tokenizer"]
    assert sort_stages(names) == ["import", "tokenizer", "weight_read", "eval", "zeta", "alpha"]


def test_machine_key_ignores_volatile_fields():
    a = Environment("3.11", "linux", "cpu", 2, 1, hostname="a", gpu_pci_bus_id="x")
    b = Environment("3.11", "linux", "cpu", 2, 1, hostname="b", gpu_pci_bus_id="y")
    assert a.machine_key() == b.machine_key()


def test_overhead_estimates_on_known_samples():
    from profiler.run.overhead import Overhead

    o = Overhead(plain_s=(1.0, 2.0, 1.0), instrumented_s=(1.01, 2.04, 1.5))
    assert o.fraction == pytest.approx((1.5 - 1.0) / 1.0)  # medians 1.0 vs 1.5
    assert o.paired_fraction == pytest.approx(0.02)  # per-round 0.01, 0.02, 0.5
