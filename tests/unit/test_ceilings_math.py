"""Ceilings: arithmetic, which ceiling bounds which stage, attach, records, cache."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

import profiler.machine.cache
from profiler.analysis.decode_metrics import prefill_mfu
from profiler.analysis.rates import copy_gbps_of, fraction_of, gbps_of, matmul_tflops_of
from profiler.errors import UserError
from profiler.machine.bounds import (
    attach_ceilings,
    cast_on_device,
    cast_traffic_per_byte,
    ceiling_candidates,
    matmul_ceiling,
    page_state_of,
    pick_ceiling,
    stage_ceiling_scale,
)
from profiler.machine.cache import cache_file, lookup
from profiler.machine.fingerprint import fingerprint_hash
from profiler.machine.plan import BLOCK_BYTES, ceiling_from_trials, round_size
from profiler.records.ceilings import (
    CEILINGS_SCHEMA_VERSION,
    GBPS,
    MATMUL,
    TFLOPS,
    Ceiling,
    Ceilings,
    skipped,
)
from profiler.records.decode import DecodeRecord
from profiler.records.run import CacheState, Environment, ModelInfo, RunRecord
from profiler.records.stage import StageRecord
from profiler.run.devices import parse_device

GB = 1_000_000_000


# --------------------------------------------------------------------------- helpers


def stage(name: str, seconds: float, nbytes: int | None = None, **kw) -> StageRecord:
    return StageRecord(
        name=name, status="ok", start_ns=0, end_ns=int(seconds * 1e9), bytes=nbytes, **kw
    )


def make_ceilings(device: str = "cuda:0", **values: float | None) -> Ceilings:
    base = {
        "disk_read": 2.0,
        "page_cache_read_1t": 5.0,
        "page_cache_read": 18.0,
        "host_memcpy": 20.0,
        "h2d_pageable": 21.0,
        "h2d_pinned": 55.0,
        "d2h_pinned": 50.0,
        "device_memory": 4300.0,
        MATMUL: 790.0,
    }
    base.update(values)
    items = {}
    for name, v in base.items():
        unit = TFLOPS if name == MATMUL else GBPS
        if v is None:
            items[name] = skipped(name, unit, "not here")
        else:
            items[name] = Ceiling(name, v, unit, (v,), "test", ())
    return Ceilings(
        fingerprint={"cpu_model": "X"},
        measured_at="2026-01-01T00:00:00+00:00",
        items=items,
        device=device,
    )


def make_run(
    stages: tuple[StageRecord, ...],
    *,
    page: str = "warm",
    device: str = "cuda:0",
    decode: tuple[DecodeRecord, ...] = (),
    verified: bool | None = None,
    storage_dtype: str | None = "float32",
) -> RunRecord:
    return RunRecord(
        model=ModelInfo(
            spec="m",
            source_kind="synthetic",
            path="/m",
            num_parameters=1000,
            storage_dtype=storage_dtype,
        ),
        device=device,
        dtype_requested="auto",
        dtype_resolved="bfloat16",
        cache=CacheState(page=page, page_verified=verified),
        environment=Environment(python="3", platform="p", cpu_model="X", cpu_count=2, ram_bytes=1),
        stages=stages,
        decode=decode,
    )


# --------------------------------------------------------------------------- arithmetic


def test_gbps_from_bytes_and_seconds() -> None:
    assert gbps_of(3 * GB, 2.0) == pytest.approx(1.5)
    assert gbps_of(15.2 * GB, 2.3) == pytest.approx(6.6087, rel=1e-4)
    # a copy counts bytes read and bytes written
    assert copy_gbps_of(GB, 0.5) == pytest.approx(4.0)
    with pytest.raises(ValueError):
        gbps_of(GB, 0.0)


def test_fraction_of_ceiling() -> None:
    assert fraction_of(6.6, 55.0) == pytest.approx(0.12)
    assert fraction_of(1.6, 1.76) == pytest.approx(0.90909, rel=1e-4)
    assert fraction_of(None, 55.0) is None
    assert fraction_of(6.6, None) is None
    assert fraction_of(6.6, 0.0) is None


def test_stage_gbps_and_ceiling_fraction_agree_with_ceilings_math() -> None:
    st = replace(stage("h2d_copy", 2.0, 13 * GB), ceiling_name="h2d_pinned", ceiling_gbps=52.0)
    assert st.gbps == pytest.approx(gbps_of(13 * GB, 2.0))
    assert st.ceiling_fraction == pytest.approx(6.5 / 52.0)


def test_matmul_rate_and_prefill_mfu() -> None:
    # 2·n³ FLOPs: 8192³ → 1.0995e12 FLOPs; in 1.4 ms → 785.4 TFLOP/s
    assert matmul_tflops_of(8192, 1.4e-3) == pytest.approx(2 * 8192**3 / 1.4e-3 / 1e12)
    assert matmul_tflops_of(1000, 1.0) == pytest.approx(2e-3)
    # 7e9 params, 128 tokens, batch 1, 25 ms, 790 TFLOP/s → 1.792e12 / 0.025 / 7.9e14
    assert prefill_mfu(7_000_000_000, 128, 1, 0.025, 790.0) == pytest.approx(0.090734, rel=1e-4)
    # batch and tokens scale it linearly
    assert prefill_mfu(1000, 10, 4, 1.0, 1e-9) == pytest.approx(2 * 1000 * 10 * 4 / 1e3)
    with pytest.raises(ValueError):
        prefill_mfu(1000, 10, 1, 0.0, 1.0)


def test_ceiling_value_is_median_of_trials() -> None:
    c = ceiling_from_trials("disk_read", GBPS, [1.0, 5.0, 3.0], "m")
    assert c.value == 3.0
    assert c.trials == (1.0, 5.0, 3.0)
    assert ceiling_from_trials("x", GBPS, [1.0, 2.0, 4.0, 10.0], "m").value == 3.0
    with pytest.raises(ValueError):
        ceiling_from_trials("x", GBPS, [], "m")


def test_ceiling_units_keep_gbps_and_tflops_apart() -> None:
    bw = Ceiling("h2d_pinned", 55.0, GBPS, (54.0, 55.0), "m")
    mm = Ceiling(MATMUL, 790.0, TFLOPS, (789.0, 790.0), "m")
    assert bw.gbps == 55.0 and bw.tflops is None and bw.trials_gbps == (54.0, 55.0)
    assert mm.gbps is None and mm.tflops == 790.0 and mm.trials_gbps == ()
    assert not skipped("h2d_pinned", GBPS, "no GPU").measured


def test_probe_sizes_are_whole_blocks() -> None:
    assert round_size(BLOCK_BYTES + 1) == 2 * BLOCK_BYTES
    assert round_size(64 << 20) == 64 << 20
    with pytest.raises(UserError):
        round_size(1 << 20)


# --------------------------------------------------------------------------- bounds


@pytest.mark.parametrize(
    ("name", "page", "device", "pinned", "expected"),
    [
        ("weight_read", "cold", "cuda:0", False, "disk_read"),
        ("weight_read", "warm", "cuda:0", False, "page_cache_read"),
        ("weight_read", "cold", "cpu", False, "disk_read"),
        ("weight_read", "warm", "cpu", True, "page_cache_read"),
        ("dtype_cast", "cold", "cuda:0", False, "host_memcpy"),
        ("dtype_cast", "warm", "cpu", False, "host_memcpy"),
        ("h2d_copy", "warm", "cuda:0", True, "h2d_pinned"),
        ("h2d_copy", "warm", "cuda:1", False, "h2d_pageable"),
        ("h2d_copy", "warm", "cpu", True, None),
        ("hub_download", "cold", "cuda:0", False, None),
        ("tokenizer", "cold", "cuda:0", False, None),
        ("model_init", "warm", "cpu", False, None),
    ],
)
def test_ceiling_candidates_of_each_stage(
    name: str, page: str, device: str, pinned: bool, expected: str | None
) -> None:
    cands = ceiling_candidates(name, page_state=page, device=device, pinned=pinned, nbytes=GB)
    assert cands == ((expected,) if expected else ())


def test_uncontrolled_page_state_uses_measured_disk_bytes() -> None:
    kw = {"page_state": "uncontrolled", "device": "cpu", "pinned": False, "nbytes": GB}
    assert ceiling_candidates("weight_read", disk_read_bytes=GB, **kw) == ("disk_read",)
    assert ceiling_candidates("weight_read", disk_read_bytes=0, **kw) == ("page_cache_read",)
    assert ceiling_candidates("weight_read", **kw) == ()


def test_page_state_of_run_distrusts_unverified_cold() -> None:
    assert page_state_of(make_run((), page="cold", verified=True)) == "cold"
    assert page_state_of(make_run((), page="cold", verified=None)) == "cold"
    assert page_state_of(make_run((), page="cold", verified=False)) == "not-cold"
    assert page_state_of(make_run((), page="warm")) == "warm"


# --------------------------------------------------------------------------- attach


def test_attach_ceilings_fills_the_right_fields_and_leaves_others() -> None:
    stages = (
        stage("tokenizer", 0.1),
        stage("weight_read", 2.0, 4 * GB, disk_read_bytes=4 * GB),
        stage("dtype_cast", 0.5, 2 * GB),
        stage("h2d_copy", 1.0, 2 * GB, counters={"pinned": 1}),
        stage("hub_download", 3.0, GB),
    )
    run = make_run(stages, page="cold")
    out = attach_ceilings(run, make_ceilings())
    assert out is not run
    by = {s.name: s for s in out.stages}
    assert (by["weight_read"].ceiling_name, by["weight_read"].ceiling_gbps) == ("disk_read", 2.0)
    # float32 → bfloat16: 1 byte read + 0.5 written per source byte → 20 / 1.5 GB/s
    assert by["dtype_cast"].ceiling_name == "host_memcpy"
    assert by["dtype_cast"].ceiling_gbps == pytest.approx(20.0 / 1.5)
    assert (by["h2d_copy"].ceiling_name, by["h2d_copy"].ceiling_gbps) == ("h2d_pinned", 55.0)
    assert by["weight_read"].ceiling_fraction == pytest.approx(1.0)
    assert by["h2d_copy"].ceiling_fraction == pytest.approx(2.0 / 55.0)
    assert by["tokenizer"] == stages[0]
    assert by["hub_download"] == stages[4]
    # everything but the two ceiling fields is unchanged
    for before, after in zip(stages, out.stages, strict=True):
        assert replace(after, ceiling_name=None, ceiling_gbps=None) == before
    # the input run is untouched
    assert all(s.ceiling_name is None for s in run.stages)
    assert replace(out, stages=run.stages) == run


def test_cast_traffic_and_ceiling_scale() -> None:
    cast = stage("dtype_cast", 1.0, GB)
    # from dtype sizes: bf16 → fp32 reads 1 and writes 2 bytes per source byte
    up = make_run((), storage_dtype="BF16")
    up = replace(up, dtype_resolved="float32")
    assert cast_traffic_per_byte(cast, up) == pytest.approx(3.0)
    assert stage_ceiling_scale(cast, up) == pytest.approx(1 / 3)
    assert cast_traffic_per_byte(cast, make_run(())) == pytest.approx(1.5)
    # a measured output byte count wins over dtype sizes
    counted = replace(cast, counters={"bytes_out": GB // 4})
    assert cast_traffic_per_byte(counted, up) == pytest.approx(1.25)
    # unknown sizes: no scale, so no ceiling is attached
    unknown = make_run((cast,), storage_dtype=None)
    assert stage_ceiling_scale(cast, unknown) is None
    assert attach_ceilings(unknown, make_ceilings()).stages == (cast,)
    # other stages count the same bytes as their ceilings
    assert stage_ceiling_scale(stage("h2d_copy", 1.0, GB), None) == 1.0


def test_cast_on_the_device_is_bound_by_device_memory() -> None:
    on_gpu = stage("dtype_cast", 1.0, GB, bytes_what="bytes of source tensors cast on the device")
    flagged = stage("dtype_cast", 1.0, GB, counters={"on_device": 1})
    assert cast_on_device(on_gpu) and cast_on_device(flagged)
    assert not cast_on_device(stage("dtype_cast", 1.0, GB, bytes_what="cast on the CPU"))
    kw = {"page_state": "warm", "pinned": False, "on_device": True}
    assert ceiling_candidates("dtype_cast", device="cuda:0", **kw) == ("device_memory",)
    assert ceiling_candidates("dtype_cast", device="cpu", **kw) == ("host_memcpy",)
    out = attach_ceilings(make_run((on_gpu,)), make_ceilings())
    assert out.stages[0].ceiling_name == "device_memory"
    assert out.stages[0].ceiling_gbps == pytest.approx(4300.0 / 1.5)
    # ceilings measured without a GPU have no device memory figure
    cpu_only = attach_ceilings(make_run((on_gpu,)), make_ceilings(device="cpu"))
    assert cpu_only.stages[0].ceiling_name is None


def test_read_copy_is_bound_by_the_slower_of_read_and_copy() -> None:
    rc = stage("read_copy", 1.0, 10 * GB, counters={"pinned": 1})
    kw = {"device": "cuda:0", "pinned": True}
    assert ceiling_candidates("read_copy", page_state="warm", **kw) == (
        "page_cache_read",
        "h2d_pinned",
    )
    # warm: page cache 18 GB/s < pinned 55 GB/s
    warm = attach_ceilings(make_run((rc,), page="warm"), make_ceilings())
    assert warm.stages[0].ceiling_name == "page_cache_read"
    fast_cache = make_ceilings(page_cache_read=80.0)
    cold = attach_ceilings(make_run((rc,), page="cold"), fast_cache)
    assert cold.stages[0].ceiling_name == "disk_read"
    on_cpu = ceiling_candidates("read_copy", page_state="warm", device="cpu", pinned=False)
    assert on_cpu == ("page_cache_read",)
    out = attach_ceilings(make_run((rc,), page="warm"), fast_cache)
    assert (out.stages[0].ceiling_name, out.stages[0].ceiling_gbps) == ("h2d_pinned", 55.0)
    # one candidate not measured: the bound is unknown, nothing attached
    missing = attach_ceilings(make_run((rc,)), make_ceilings(h2d_pinned=None))
    assert missing.stages[0].ceiling_name is None
    assert pick_ceiling(("page_cache_read", "h2d_pinned"), make_ceilings(h2d_pinned=None)) == (
        None,
        "h2d_pinned",
    )


def test_attach_pageable_and_warm() -> None:
    run = make_run(
        (stage("weight_read", 1.0, GB), stage("h2d_copy", 1.0, GB, counters={"pinned": 0}))
    )
    out = attach_ceilings(run, make_ceilings())
    assert [s.ceiling_name for s in out.stages] == ["page_cache_read", "h2d_pageable"]
    assert [s.ceiling_gbps for s in out.stages] == [18.0, 21.0]


def test_attach_skips_unmeasured_ceilings_and_cpu_runs() -> None:
    run = make_run((stage("h2d_copy", 1.0, GB, counters={"pinned": 1}),), device="cuda:0")
    out = attach_ceilings(run, make_ceilings(device="cpu", h2d_pinned=None))
    assert out.stages[0].ceiling_name is None and out.stages[0].ceiling_gbps is None
    cpu = make_run((stage("h2d_copy", 1.0, GB),), device="cpu")
    assert attach_ceilings(cpu, make_ceilings()).stages == cpu.stages


def test_attach_fills_decode_bandwidth_only_where_missing() -> None:
    d = DecodeRecord(
        batch_size=1,
        prompt_tokens=8,
        new_tokens=8,
        temperature=0.0,
        seed=0,
        first_call=None,
        calls=(),
    )
    measured = replace(d, batch_size=2, memory_bandwidth_gbps=3000.0, bandwidth_source="own")
    gpu = attach_ceilings(make_run((), decode=(d, measured)), make_ceilings())
    assert gpu.decode[0].memory_bandwidth_gbps == 4300.0
    assert gpu.decode[0].bandwidth_source == "ceilings:device_memory"
    assert gpu.decode[1] == measured
    cpu = attach_ceilings(make_run((), device="cpu", decode=(d,)), make_ceilings())
    assert cpu.decode[0].memory_bandwidth_gbps == 20.0
    assert cpu.decode[0].bandwidth_source == "ceilings:host_memcpy"
    # GPU run, ceilings measured without a GPU: no device_memory to use
    none = attach_ceilings(make_run((), decode=(d,)), make_ceilings(device="cpu"))
    assert none.decode[0].memory_bandwidth_gbps is None


def test_matmul_ceiling_only_for_the_same_kind_of_device() -> None:
    assert matmul_ceiling(make_ceilings(device="cuda:0"), "cuda:0").value == 790.0
    assert matmul_ceiling(make_ceilings(device="cuda:0"), "cpu") is None
    assert matmul_ceiling(make_ceilings(device="cpu"), "cuda:0") is None


# --------------------------------------------------------------------------- records


def test_round_trip_to_dict_from_dict() -> None:
    c = replace(make_ceilings(), quick=True, elapsed_s=12.5, folder="/data")
    again = Ceilings.from_dict(json.loads(json.dumps(c.to_dict())))
    assert again == c
    assert again.items["h2d_pinned"].gbps == 55.0
    assert again.items[MATMUL].tflops == 790.0
    one = Ceiling("x", None, GBPS, (), "not measured", ("why",), None)
    assert Ceiling.from_dict(one.to_dict()) == one


def test_from_dict_refuses_foreign_or_newer_files() -> None:
    d = make_ceilings().to_dict()
    with pytest.raises(UserError):
        Ceilings.from_dict({**d, "kind": "llmprof.run"})
    with pytest.raises(UserError):
        Ceilings.from_dict({**d, "schema_version": CEILINGS_SCHEMA_VERSION + 1})


# --------------------------------------------------------------------------- cache


class FakeMachine:
    """Stands in for fingerprinting and measuring: counts measurements."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        self.fp: dict[str, object] = {"cpu_model": "X", "fs_device": "8:1", "device": "cpu"}
        self.calls: list[dict[str, object]] = []
        monkeypatch.setenv("LLMPROF_CACHE", str(tmp_path / "cache"))
        monkeypatch.setattr(
            profiler.machine.cache, "machine_fingerprint", lambda folder, device: dict(self.fp)
        )
        monkeypatch.setattr(profiler.machine.cache, "measure_ceilings", self.measure)

    def measure(self, folder, *, device, quick, size_bytes, progress, fingerprint):
        self.calls.append({"quick": quick, "size": size_bytes})
        size = round_size(size_bytes) if size_bytes else 1 << 30
        disk = Ceiling("disk_read", float(len(self.calls)), GBPS, (1.0,), "fake", size_bytes=size)
        return Ceilings(
            fingerprint=dict(fingerprint), measured_at="t", items={"disk_read": disk}, quick=quick
        )


def test_cache_hit_and_miss_by_fingerprint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    m = FakeMachine(monkeypatch, tmp_path)
    first = lookup(tmp_path, device="cpu")
    assert not first.from_cache and len(m.calls) == 1
    assert first.path.parent == tmp_path / "cache" / "ceilings"
    assert first.path.name == fingerprint_hash(m.fp) + ".json"
    assert first.path.is_file()
    second = lookup(tmp_path, device="cpu")
    assert second.from_cache and len(m.calls) == 1
    assert second.ceilings == first.ceilings
    m.fp["fs_device"] = "8:2"  # another filesystem: another machine key
    third = lookup(tmp_path, device="cpu")
    assert not third.from_cache and len(m.calls) == 2
    assert third.path != first.path


def test_refresh_measures_again(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    m = FakeMachine(monkeypatch, tmp_path)
    lookup(tmp_path, device="cpu")
    again = lookup(tmp_path, device="cpu", refresh=True).ceilings
    assert len(m.calls) == 2
    assert again.value("disk_read") == 2.0
    # the refreshed figures replaced the cached ones
    assert lookup(tmp_path, device="cpu").ceilings.value("disk_read") == 2.0
    assert len(m.calls) == 2


def test_quick_and_full_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    m = FakeMachine(monkeypatch, tmp_path)
    q = lookup(tmp_path, device="cpu", quick=True)
    assert q.path.name.endswith("-quick.json") and q.ceilings.quick
    full = lookup(tmp_path, device="cpu")  # a quick result never stands in for a full one
    assert not full.from_cache and len(m.calls) == 2
    q2 = lookup(tmp_path, device="cpu", quick=True)  # a full one serves a quick request
    assert q2.from_cache and q2.path == full.path and len(m.calls) == 2


def test_explicit_size_must_match_cached(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    m = FakeMachine(monkeypatch, tmp_path)
    lookup(tmp_path, device="cpu", size_bytes=64 << 20)
    assert lookup(tmp_path, device="cpu", size_bytes=64 << 20).from_cache
    assert lookup(tmp_path, device="cpu").from_cache  # no size asked: any size serves
    assert not lookup(tmp_path, device="cpu", size_bytes=128 << 20).from_cache
    assert len(m.calls) == 2


def test_torn_cache_file_is_measured_again(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    m = FakeMachine(monkeypatch, tmp_path)
    first = lookup(tmp_path, device="cpu")
    first.path.write_text('{"kind": "llmprof.ceil')
    assert not lookup(tmp_path, device="cpu").from_cache
    # a file whose recorded fingerprint differs from its name's is not trusted either
    doc = json.loads(first.path.read_text())
    doc["fingerprint"]["cpu_model"] = "Y"
    first.path.write_text(json.dumps(doc))
    assert not lookup(tmp_path, device="cpu").from_cache
    assert len(m.calls) == 3


def test_cache_file_follows_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fp = {"cpu_model": "X"}
    monkeypatch.setenv("LLMPROF_CACHE", str(tmp_path))
    name = fingerprint_hash(fp)
    assert cache_file(fp, quick=False) == tmp_path / "ceilings" / f"{name}.json"
    assert cache_file(fp, quick=True) == tmp_path / "ceilings" / f"{name}-quick.json"
    monkeypatch.delenv("LLMPROF_CACHE")
    home = Path.home() / ".cache" / "llmprof" / "ceilings"
    assert cache_file(fp, quick=False) == home / f"{name}.json"


def test_fingerprint_hash_is_order_free() -> None:
    a = {"cpu_model": "X", "ram_gib": 24}
    assert fingerprint_hash(a) == fingerprint_hash({"ram_gib": 24, "cpu_model": "X"})
    assert fingerprint_hash(a) != fingerprint_hash({**a, "ram_gib": 32})


def test_parse_device() -> None:
    assert parse_device("cpu") == "cpu"
    assert parse_device(" CPU ") == "cpu"
    for bad in ("tpu", "cuda:x", "gpu0", ""):
        with pytest.raises(UserError):
            parse_device(bad)
