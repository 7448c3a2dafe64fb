"""What bounds a decode step, on known inputs: attribution, MBU with the KV cache,
joules per token, the matmul floor, noise verdicts, the prompt sweep's inputs."""

from __future__ import annotations

import json

import pytest

from profiler.analysis.decode_metrics import (
    BOUND_HOST,
    BOUND_KERNELS,
    BOUND_MATMUL,
    BOUND_MEMORY,
    attribute_step,
    decode_bytes_per_step,
    decode_energy,
    decode_figures,
    joules_per_token,
    mbu,
    step_attribution,
    step_matmul_flops,
)
from profiler.analysis.decode_noise import decode_noise, find_bimodal
from profiler.analysis.step_text import energy_line, step_lines
from profiler.commands._shared import parse_prompt_lengths
from profiler.decode.options import check_decode_context, sweep_specs, validate_decode_spec
from profiler.decode.step_probe import union_length
from profiler.errors import UserError
from profiler.records.decode import DecodeCall, DecodeRecord
from profiler.records.job import DecodeSpec, LoadJob
from profiler.records.run import ModelInfo
from profiler.records.step import StepProfile

MS = 1_000_000


def call(ttft_ms: float, steps_ms: list[float], energy_j: float | None = None) -> DecodeCall:
    times = [int(ttft_ms * MS)]
    for s in steps_ms:
        times.append(times[-1] + int(s * MS))
    return DecodeCall(
        start_ns=0, end_ns=times[-1] + MS, token_times_ns=tuple(times), energy_j=energy_j
    )


def rec(calls: list[DecodeCall], **kw) -> DecodeRecord:
    base = dict(
        batch_size=1,
        prompt_tokens=32,
        new_tokens=len(calls[0].token_times_ns),
        temperature=0.0,
        seed=0,
        first_call=None,
        calls=tuple(calls),
    )
    base.update(kw)
    return DecodeRecord(**base)


def profile(busy_ms: float, launches: float = 1332.0) -> StepProfile:
    return StepProfile(
        steps=63,
        profiled_step_s=0.03,
        busy_s=busy_ms / 1e3,
        busy_what="GPU",
        host_s=0.02,
        launches_per_step=launches,
        launches_what="launches",
    )


# ------------------------------------------------------------------ attribution


@pytest.mark.parametrize(
    ("step", "busy", "mem", "mat", "bound"),
    [
        (28.5, 5.9, 3.5, None, BOUND_HOST),  # the H200 generate() figures
        (10.0, 9.5, 8.0, 1.0, BOUND_MEMORY),
        (10.0, 9.5, 1.0, 8.0, BOUND_MATMUL),
        (10.0, 9.5, 2.0, 1.0, BOUND_KERNELS),
    ],
)
def test_attribution_sums_to_the_step_and_names_the_bound(step, busy, mem, mat, bound):
    a = attribute_step(step / 1e3, busy / 1e3, mem / 1e3, mat / 1e3 if mat else None)
    assert a.parts_s == pytest.approx(step / 1e3, rel=1e-12)
    assert a.bound == bound
    assert a.idle_s == pytest.approx((step - busy) / 1e3)
    assert a.floor_s == pytest.approx(max(mem, mat or 0) / 1e3)


def test_attribution_caps_busy_at_the_step_and_floor_at_busy():
    a = attribute_step(0.010, 0.012, 0.015, None)
    assert a.busy_capped and a.busy_s == 0.010
    assert a.floor_s == 0.010 and a.above_floor_s == 0.0 and a.idle_s == 0.0
    assert a.parts_s == pytest.approx(0.010)
    with pytest.raises(ValueError):
        attribute_step(0.0, 0.001, None, None)


def test_step_attribution_from_records_uses_kv_bytes_and_own_dtype_rate():
    # 1 GB of bf16 weights, 1 MB of KV per position, prompt 32, 4 new tokens
    # (mean context 34): 1.034 GB per step at 100 GB/s = 10.34 ms memory floor.
    # Matmul: 2 x 0.5 G elements = 1 GFLOP at 0.1 TFLOP/s = 10 ms. Step 20 ms.
    r = rec(
        [call(50, [20, 20, 20])],
        weight_bytes=10**9,
        kv_bytes_per_token=10**6,
        memory_bandwidth_gbps=100.0,
        bandwidth_source="copy",
        matmul_tflops=0.1,
        matmul_dtype="bfloat16",
        step_profile=profile(15.0),
    )
    f = decode_figures([r])
    assert f.bytes_per_step == pytest.approx(1.034e9)
    assert f.mbu == pytest.approx(1.034e9 / 0.020 / 100e9)
    a = step_attribution([r], f)
    assert a is not None
    assert a.memory_floor_s == pytest.approx(0.01034)
    assert a.matmul_floor_s == pytest.approx(0.010)
    assert a.floor_s == pytest.approx(0.01034) and a.bound == BOUND_MEMORY
    assert a.above_floor_s == pytest.approx(0.015 - 0.01034)
    assert a.idle_s == pytest.approx(0.005)
    assert step_attribution([rec([call(50, [20, 20, 20])])], f) is None  # no profile


def test_mbu_counts_the_kv_cache_at_the_mean_context():
    per_step = decode_bytes_per_step(1_000, 10, 32 + 64 / 2, batch=4)
    assert per_step == 1_000 + 10 * 64 * 4
    assert mbu(per_step, 0.001, 1.0) == pytest.approx(per_step / 0.001 / 1e9)


def test_matmul_flops_per_step():
    assert step_matmul_flops(2_000, 2, batch=3) == 2 * 1_000 * 3
    with pytest.raises(ValueError):
        step_matmul_flops(1, 0, 1)


# ------------------------------------------------------------------ energy


def test_joules_per_token_and_mean_power():
    assert joules_per_token(326.0, 64, 1) == pytest.approx(5.09375)
    assert joules_per_token(100.0, 10, 2) == pytest.approx(5.0)
    # two calls of 64 tokens: 320 J over 1.001 s and 330 J over 1.001 s
    calls = [call(1, [1000 / 63] * 63, 320.0), call(1, [1000 / 63] * 63, 330.0)]
    e = decode_energy([rec(calls)])
    assert e is not None and e.n_calls == 2
    assert e.joules_per_token == pytest.approx(325.0 / 64)
    assert e.mean_power_w == pytest.approx(325.0 / calls[0].wall_s, rel=1e-3)


def test_energy_absent_says_why():
    r = rec([call(1, [5, 5])], energy_note="energy not measured: NVML reports GPU energy only")
    assert decode_energy([r]) is None
    assert energy_line([r]) == r.energy_note


# ------------------------------------------------------------------ noise


def test_bimodal_and_spread_are_flagged_with_the_cause():
    steady = [call(5, [10.0] * 30) for _ in range(3)]
    quiet = decode_noise([rec(steady)], cores=2)
    assert quiet is not None and not quiet.noisy and quiet.bimodal is None
    # one call in three is slowed 3x throughout (another process on the cores)
    noisy_calls = [call(5, [10.0] * 30), call(5, [30.0] * 30), call(5, [10.0] * 30)]
    n = decode_noise([rec(noisy_calls, load_average_1m=5.0)], cores=2)
    assert n is not None and n.noisy
    assert n.bimodal is not None and n.bimodal.high_fraction == pytest.approx(1 / 3)
    assert n.bimodal.low_median_s == pytest.approx(0.010)
    assert any("concentrate in some calls" in c for c in n.causes)
    assert any("load average 5.0 on 2 cores" in c for c in n.causes)


def test_bimodal_needs_a_gap_and_enough_samples():
    assert find_bimodal([1.0, 1.1, 1.2, 1.3] * 5) is None
    assert find_bimodal([1.0, 3.0] * 3) is None  # under MIN_INTERVALS
    b = find_bimodal([1.0] * 8 + [2.0] * 2)
    assert b is not None and b.high_fraction == pytest.approx(0.2)


def test_step_lines_word_the_bound():
    r = rec(
        [call(50, [28.5] * 10)],
        weight_bytes=15_200_000_000,
        memory_bandwidth_gbps=4079.0,
        bandwidth_source="copy",
        step_profile=profile(5.9),
    )
    lines = step_lines([r], decode_figures([r]), "cuda", 16)
    assert lines[0].startswith("step attribution (batch 1): GPU busy 5.90 ms of 28.5 ms")
    assert "1,332 launches per step" in lines[0]
    assert "host-side launch overhead" in lines[0]


def test_union_length_counts_overlaps_once():
    assert union_length([(0, 2), (1, 3), (5, 6)]) == 4
    assert union_length([]) == 0


# ------------------------------------------------------------------ prompt sweep inputs


def test_prompt_lengths_parse_and_sweep():
    assert parse_prompt_lengths("32,512,2048") == (32, 512, 2048)
    assert parse_prompt_lengths(None) == ()
    with pytest.raises(UserError, match="whole numbers"):
        parse_prompt_lengths("32,abc")
    spec = DecodeSpec(prompt_tokens=32, prompt_sweep=(32, 512))
    assert [s.prompt_tokens for s in sweep_specs(spec)] == [32, 512]
    assert all(s.prompt_sweep == () for s in sweep_specs(spec))
    with pytest.raises(UserError, match="repeats a length"):
        validate_decode_spec(DecodeSpec(prompt_tokens=32, prompt_sweep=(32, 32)))
    job = LoadJob(model=ModelInfo("m", "local", "/x"), folder="/x", decode=spec)
    assert LoadJob.from_dict(json.loads(json.dumps(job.to_dict()))).decode == spec


def test_context_check_reads_the_folder_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"max_position_embeddings": 1024}))
    ok = DecodeSpec(prompt_tokens=32, prompt_sweep=(32, 512), new_tokens=64)
    check_decode_context(tmp_path, ok)
    bad = DecodeSpec(prompt_tokens=32, prompt_sweep=(32, 2048), new_tokens=64)
    with pytest.raises(UserError, match="2048 tokens .* exceeds the model's context of 1024"):
        check_decode_context(tmp_path, bad)
    check_decode_context(tmp_path / "missing", bad)  # no config: the loop checks later


def test_records_round_trip_with_and_without_new_fields():
    r = rec([call(1, [5, 5], 2.0)], step_profile=profile(3.0), matmul_tflops=1.5)
    back = DecodeRecord.from_dict(json.loads(json.dumps(r.to_dict())))
    assert back == r
    old = r.to_dict()
    for k in ("step_profile", "matmul_tflops", "energy_note", "load_average_1m"):
        old.pop(k)
    assert DecodeRecord.from_dict(old).step_profile is None


def test_launch_names_are_recognised_by_prefix():
    from profiler.decode.step_probe import is_launch

    for name in ("cudaLaunchKernel", "cudaLaunchKernelExC_v11060", "cuLaunchKernelEx"):
        assert is_launch(name)
    assert is_launch("cudaGraphLaunch")
    assert not is_launch("aten::mm") and not is_launch("cudaStreamSynchronize")


def test_stage_energy_and_the_report_tables_with_energy_and_attribution():
    from dataclasses import replace

    from profiler.analysis.energy import stage_energy
    from profiler.analysis.summaries import summarize_runs
    from profiler.render.decode_bounds import console_lines, markdown_section
    from tests.support import fake_runs as fr

    runs = []
    for i, r in enumerate(fr.gpu_cold_warm(n=1)):
        stages = tuple(
            replace(st, counters={**st.counters, "energy_j": 100.0 * (i + 1)})
            if st.name == "h2d_copy" and st.status == "ok"
            else st
            for st in r.stages
        )
        decode = tuple(
            replace(
                d,
                step_profile=profile(5.9),
                calls=tuple(replace(c, energy_j=320.0) for c in d.calls),
            )
            for d in r.decode
        )
        runs.append(replace(r, stages=stages, decode=decode))
    (h2d,) = stage_energy(runs[:1])
    t = next(st for st in runs[0].stages if st.name == "h2d_copy")
    assert h2d.name == "h2d_copy" and h2d.joules == 100.0
    assert h2d.mean_power_w == pytest.approx(100.0 / t.duration_s)
    groups = summarize_runs(runs)
    md = "\n".join(markdown_section(groups, {}))
    assert "## What bounds a decode step" in md
    assert "GPU busy (ms) |" in md and "launches/step" in md and "J/token" in md
    assert "Load energy by stage" in md and "| h2d_copy " in md
    text = "\n".join(console_lines(groups[0], groups))
    assert "decode · step attribution" in text


def test_noise_is_a_finding_with_its_cause():
    from dataclasses import replace

    from profiler.analysis.summaries import summarize_runs
    from profiler.render.findings import findings
    from tests.support import fake_runs as fr

    run = fr.cpu_cold_warm(n=1)[0]
    noisy = rec([call(5, [10.0] * 30), call(5, [30.0] * 30), call(5, [10.0] * 30)])
    quiet = rec([call(5, [10.0] * 30) for _ in range(3)])
    for d, expect in ((noisy, True), (quiet, False)):
        (g,) = summarize_runs([replace(run, decode=(replace(d, load_average_1m=6.0),))])
        items = [i for i in findings(g) if "noisy decode" in i]
        assert bool(items) is expect
        if expect:
            assert "load average 6.0 on" in items[0] and "bimodal steps" in items[0]
