"""Diagnosis text on hand-built runs: the dominant stage, its ceiling, the headroom,
and nothing claimed without a measured figure."""

from __future__ import annotations

from dataclasses import replace

import pytest

from profiler.analysis.diagnosis import diagnose, stage_line
from profiler.analysis.stats import summarize
from profiler.analysis.summaries import StageSummary, summarize_runs
from profiler.machine.bounds import attach_ceilings
from profiler.records.ceilings import GBPS, MATMUL, TFLOPS, Ceiling, Ceilings, skipped
from profiler.records.decode import DecodeCall, DecodeRecord
from profiler.records.run import CacheState, Environment, ModelInfo, RunRecord
from profiler.records.stage import StageRecord

GB = 1_000_000_000
MS = 1_000_000


def stage(name: str, seconds: float, nbytes: float | None = None, **kw) -> StageRecord:
    return StageRecord(
        name=name,
        status="ok",
        start_ns=0,
        end_ns=round(seconds * 1e9),
        bytes=None if nbytes is None else int(nbytes),
        **kw,
    )


def ceilings(device: str = "cuda:0", **values: float | None) -> Ceilings:
    base: dict[str, float | None] = {
        "disk_read": 1.76,
        "page_cache_read_1t": 5.0,
        "page_cache_read": 18.0,
        "host_memcpy": 20.0,
        "h2d_pageable": 21.0,
        "h2d_pinned": 55.0,
        "device_memory": 4300.0,
        MATMUL: 790.0,
    }
    base.update(values)
    items = {}
    for name, v in base.items():
        unit = TFLOPS if name == MATMUL else GBPS
        items[name] = (
            skipped(name, unit, "skipped") if v is None else Ceiling(name, v, unit, (v,), "test")
        )
    return Ceilings(fingerprint={"cpu_model": "X"}, measured_at="t", items=items, device=device)


def run(
    stages: tuple[StageRecord, ...],
    *,
    page: str = "warm",
    device: str = "cuda:0",
    decode: tuple[DecodeRecord, ...] = (),
    status: str = "ok",
    spec: str = "m",
    num_parameters: int | None = None,
    cpu_model: str = "X",
    storage_dtype: str | None = "float32",
) -> RunRecord:
    return RunRecord(
        model=ModelInfo(
            spec=spec,
            source_kind="synthetic",
            path="/m",
            num_parameters=num_parameters,
            storage_dtype=storage_dtype,
        ),
        device=device,
        dtype_requested="auto",
        dtype_resolved="bfloat16",
        cache=CacheState(page=page),
        environment=Environment(
            python="3", platform="p", cpu_model=cpu_model, cpu_count=2, ram_bytes=1
        ),
        stages=stages,
        decode=decode,
        status=status,
    )


def pageable_h2d_run() -> RunRecord:
    # h2d_copy: 0.62 s of 1.00 s, 4.092 GB in 0.62 s = 6.6 GB/s
    return run(
        (
            stage("tokenizer", 0.08),
            stage("weight_read", 0.2, 3.6 * GB),
            stage("model_init", 0.1),
            stage("h2d_copy", 0.62, 0.62 * 6.6 * GB, counters={"pinned": 0}),
        )
    )


def test_dominant_pageable_h2d_names_stage_share_and_headroom() -> None:
    lines = diagnose(pageable_h2d_run(), ceilings())
    assert lines[0] == "load: 1.00 s over 4 stages"
    h2d = lines[1]
    assert h2d.startswith("h2d_copy takes 62% of the load (620 ms) at 6.60 GB/s")
    # 6.6 / 21 = 31% of pageable, 6.6 / 55 = 12% of pinned
    assert "= 31% of pageable host-to-device (21.0 GB/s)" in h2d
    assert "12% of pinned (55.0 GB/s)" in h2d
    assert "pageable memory" in h2d and "pinned memory" in h2d
    # weight_read is 20% of the load: it gets its own line, model_init (10%) does not
    assert lines[2].startswith("weight_read (warm) takes 20% of the load")
    assert not any(line.startswith("model_init") for line in lines)


def test_disk_bound_cold_read() -> None:
    r = run((stage("weight_read", 9.0, 9.0 * 1.6 * GB), stage("model_init", 1.0)), page="cold")
    line = diagnose(r, ceilings())[1]
    # 1.6 / 1.76 = 91%
    assert line.startswith("weight_read (cold) takes 90% of the load (9.00 s) at 1.60 GB/s")
    assert "= 91% of this disk (1.76 GB/s)" in line
    assert "disk-bound" in line


def test_slow_cold_read_is_not_called_disk_bound() -> None:
    r = run((stage("weight_read", 4.0, 4.0 * 0.44 * GB),), page="cold")
    line = diagnose(r, ceilings())[1]
    assert "= 25% of this disk" in line
    assert "4.0× this" in line  # headroom: 1.76 / 0.44
    assert "disk-bound" not in line and "not the limit" in line


def test_warm_read_at_single_thread_rate_points_at_threads() -> None:
    r = run((stage("weight_read", 1.0, 4.8 * GB),))
    line = diagnose(r, ceilings())[1]
    assert "= 27% of the best page-cache read (18.0 GB/s)" in line
    assert "(18.0 GB/s), close to the single-thread page-cache rate (5.00 GB/s): reading" in line


def test_warm_read_with_threads_is_not_told_to_use_threads() -> None:
    r = run((stage("weight_read", 1.0, 4.8 * GB, counters={"threads": 4}),))
    line = diagnose(r, ceilings())[1]
    assert (
        "(18.0 GB/s), close to the single-thread page-cache rate (5.00 GB/s) though it read "
        "with 4 threads: the page cache can deliver 3.8× this"
    ) in line
    assert "several threads" not in line and "3.8× this" in line
    slow = diagnose(run((stage("weight_read", 1.0, 1.0 * GB),)), ceilings())[1]
    assert "single-thread" not in slow and "18.0× this" in slow


def test_nothing_claimed_without_a_ceiling() -> None:
    r = run((stage("weight_read", 3.0, 3 * GB), stage("h2d_copy", 1.0, GB)), page="cold")
    lines = diagnose(r, None)
    assert (
        lines[1] == "weight_read (cold) takes 75% of the load (3.00 s) at 1.00 GB/s; "
        "no ceiling measured for disk_read"
    )
    assert lines[2].endswith("no ceiling measured for h2d_pageable")
    for line in lines:
        assert (
            "bound" not in line
            and "lever" not in line
            and "% of " not in line.split("of the load")[-1]
        )


def test_skipped_ceiling_is_reported_as_not_measured() -> None:
    r = run((stage("h2d_copy", 1.0, 10 * GB, counters={"pinned": 1}),))
    line = diagnose(r, ceilings(h2d_pinned=None))[1]
    assert line.endswith("no ceiling measured for h2d_pinned")
    assert "lever" not in line


def test_stage_without_bytes_and_network_stage() -> None:
    r = run((stage("model_init", 3.0), stage("hub_download", 2.0, 2 * GB)))
    lines = diagnose(r, ceilings())
    assert lines[1] == (
        "model_init takes 60% of the load (3.00 s): it moves no measured "
        "bytes, so no bandwidth ceiling applies"
    )
    assert lines[2].startswith("hub_download takes 40% of the load (2.00 s) at 1.00 GB/s")
    assert lines[2].endswith("no ceiling measured for the network")


def test_above_the_ceiling_is_not_explained_away() -> None:
    r = run((stage("weight_read", 1.0, 5 * GB),), page="cold")
    line = diagnose(r, ceilings())[1]
    assert "= 284% of this disk" in line and "does not hold" in line
    assert "disk-bound" not in line


def test_group_shares_are_those_of_the_stage_table() -> None:
    # Totals 2.0, 2.5 and 12.0 s: the median staged total is 2.5 s, the one the
    # stage table's share column divides by, not the 3.0 s sum of stage medians.
    reps = [
        run((stage("weight_read", t, t * 1.0 * GB), stage("dtype_cast", c, 2 * GB)))
        for t, c in ((1.0, 1.0), (2.0, 0.5), (10.0, 2.0))
    ]
    lines = diagnose(reps, ceilings())
    assert lines[0] == "load: 2.50 s over 2 stages, median of 3 runs"
    assert lines[1].startswith("weight_read (warm) takes 80% of the load (2.00 s) at 1.00 GB/s")
    assert lines[2].startswith("dtype_cast takes 40% of the load (1.00 s) at 2.00 GB/s")
    # float32 → bfloat16 moves 1 + 2/4 = 1.5 bytes per source byte: 20 / 1.5 = 13.3 GB/s
    assert (
        "= 15% of what host memory bandwidth allows for this cast (13.3 GB/s of source: "
        "20.0 GB/s read+written, 1.5 bytes moved per source byte)"
    ) in lines[2]
    summary = summarize_runs(reps)[0]
    shares = {s.name: s.share_of_total for s in summary.stages}
    assert shares == {"weight_read": pytest.approx(0.8), "dtype_cast": pytest.approx(0.4)}


def test_group_ignores_failed_runs_and_refuses_mixed_groups() -> None:
    good = run((stage("weight_read", 1.0, GB),))
    bad = replace(run((stage("weight_read", 50.0, GB),)), status="failed")
    assert diagnose([good, bad], ceilings()) == diagnose(good, ceilings())
    assert diagnose([bad], ceilings()) == ["no successful run to diagnose"]
    with pytest.raises(ValueError):
        diagnose([good, run((stage("weight_read", 1.0, GB),), spec="other")], ceilings())


def test_attached_ceilings_serve_without_a_ceilings_object() -> None:
    r = attach_ceilings(pageable_h2d_run(), ceilings())
    line = diagnose(r, None)[1]
    assert "= 31% of pageable host-to-device (21.0 GB/s)" in line
    # the pinned figure is not on the record, so it is not claimed
    assert "pinned (55" not in line


def test_stage_line_uncontrolled_page_state() -> None:
    s = StageSummary(
        name="weight_read",
        n=1,
        time=summarize([1.0]),
        share_of_total=0.5,
        bytes=GB,
        gbps=summarize([1.0]),
        disk_read_bytes=GB,
    )
    line = stage_line(s, page_state="uncontrolled", device="cpu", ceilings=ceilings())
    assert line.startswith("weight_read (served from disk) takes 50% of the load (1.00 s)")
    unknown = replace(s, disk_read_bytes=None)
    line = stage_line(unknown, page_state="uncontrolled", device="cpu", ceilings=ceilings())
    assert "no ceiling applies to weight_read (the page-cache state is unknown)" in line
    cached = replace(s, disk_read_bytes=0)
    line = stage_line(cached, page_state="uncontrolled", device="cpu", ceilings=ceilings())
    assert line.startswith("weight_read (served from the page cache) takes 50%")


def decode_record(
    batch: int, step_s: float, *, weight_bytes: int | None, ttft_s: float, kv: int | None = None
) -> DecodeRecord:
    step = round(step_s * 1e9)
    first = round(ttft_s * 1e9)
    times = tuple(first + i * step for i in range(11))
    call = DecodeCall(start_ns=0, end_ns=times[-1], token_times_ns=times)
    return DecodeRecord(
        batch_size=batch,
        prompt_tokens=128,
        new_tokens=11,
        temperature=0.0,
        seed=0,
        first_call=None,
        calls=(call, call),
        weight_bytes=weight_bytes,
        kv_bytes_per_token=kv,
    )


def test_decode_bandwidth_and_prefill_mfu() -> None:
    # 54 tokens/s at batch 1 over 15.2 GB: 820.8 GB/s = 17% of 4828 GB/s
    rec = decode_record(1, 1 / 54, weight_bytes=int(15.2 * GB), ttft_s=0.025)
    r = run((), decode=(rec,), num_parameters=7_600_000_000)
    lines = diagnose(r, ceilings(device_memory=4828.0))
    dec = lines[0]
    assert dec.startswith("decode (batch 1): 18.5 ms per step (median over 2 warm calls), 54.0")
    assert "reads 15.20 GB per step" in dec and "821 GB/s" in dec
    assert "= 821 GB/s: MBU 17.0% of device memory bandwidth (4,828 GB/s, from the ceil" in dec
    assert "KV-cache bytes not measured" in dec
    assert "memory bandwidth is not what limits a step" in dec
    # 2 × 7.6e9 × 128 / 0.025 s / 790e12 = 9.85% → "10%"
    pre = lines[1]
    assert pre.startswith("prefill (batch 1, 128 prompt tokens): first token after 25.0 ms")
    assert "= 10% of the bf16 matmul rate (790 TFLOP/s)" in pre


def test_decode_memory_bound_and_missing_figures() -> None:
    fast = decode_record(8, 0.004, weight_bytes=int(15.2 * GB), ttft_s=0.05)
    lines = diagnose(run((), decode=(fast,)), ceilings())
    assert "MBU 88.4% of device memory bandwidth" in lines[0] and "memory-bound" in lines[0]
    unknown = decode_record(1, 0.02, weight_bytes=None, ttft_s=0.05)
    line = diagnose(run((), decode=(unknown,)), ceilings())[0]
    assert line.endswith("bytes read per step not measured, so no bandwidth comparison")
    no_bw = diagnose(run((), decode=(fast,)), ceilings(device="cpu"))
    assert no_bw[0].endswith("no ceiling for device_memory")
    assert len(no_bw) == 1  # no MFU line: no GPU matmul rate, no parameter count


def test_decode_on_cpu_uses_host_memcpy_and_counts_kv_bytes() -> None:
    # weights 0.27 GB + KV 10_000 B × (128 + 11/2) × 1 = 1.335 MB; step 0.1 s
    rec = decode_record(1, 0.1, weight_bytes=270_000_000, ttft_s=0.3, kv=10_000)
    line = diagnose(run((), device="cpu", decode=(rec,)), ceilings(device="cpu"))[0]
    # (270 MB + 1.335 MB) per 0.1 s step = 2.71 GB/s: 13.6% of 20 GB/s
    expected = "reads 271 MB per step = 2.71 GB/s: MBU 13.6% of host memory bandwidth (20.0 GB/s"
    assert expected in line
    assert "KV-cache bytes not measured" not in line


def test_other_machine_and_quick_ceilings_are_flagged() -> None:
    r = run((stage("weight_read", 1.0, GB),), cpu_model="Other CPU")
    lines = diagnose(r, replace(ceilings(), quick=True))
    assert lines[0].startswith("the ceilings were measured on another machine (CPU X vs Other")
    assert lines[-1] == "ceilings from a quick measurement: the percentages are rough"


def test_read_copy_and_device_cast_lines() -> None:
    r = run(
        (
            stage("read_copy", 1.0, 40 * GB, counters={"pinned": 1}),
            stage(
                "dtype_cast", 0.5, 500 * GB, bytes_what="bytes of source tensors cast on the device"
            ),
        )
    )
    lines = diagnose(r, ceilings(page_cache_read=80.0))
    # warm read at 80 GB/s is faster than pinned copies at 55: the copy bounds it
    assert lines[1].startswith("read_copy (warm) takes 67% of the load (1.00 s) at 40.0 GB/s")
    assert "= 73% of pinned host-to-device (55.0 GB/s)" in lines[1]
    assert "bound by pinned host-to-device, the slower of read and copy" in lines[1]
    # 1000 GB/s of source against 4300 / 1.5 = 2867 GB/s
    assert "= 35% of what device memory bandwidth allows for this cast (2,867 GB/s" in lines[2]
    assert "device memory allows 2.9× this" in lines[2]
    no_gpu = diagnose(r, ceilings(device="cpu"))
    assert no_gpu[2].endswith("no ceiling measured for device_memory")


def test_cast_without_dtype_sizes_claims_nothing() -> None:
    r = run((stage("dtype_cast", 1.0, GB),), storage_dtype=None)
    line = diagnose(r, ceilings())[1]
    assert line.endswith("no ceiling applies (dtype_cast's source and target dtype sizes unknown)")
