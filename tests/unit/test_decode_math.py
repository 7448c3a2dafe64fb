"""Decode figures on hand-built calls and records: pure arithmetic, no model, no torch."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from profiler.analysis.decode_metrics import (
    call_step_s,
    ceilings_source,
    consistency,
    decode_figures,
    group_by_shape,
    hook_overhead,
    record_hook_overhead,
)
from profiler.analysis.decode_text import hook_overhead_line
from profiler.analysis.summaries import summarize_runs
from profiler.cli import main
from profiler.decode.hook import TokenClock
from profiler.decode.model_facts import context_length_of, kv_bytes_per_token
from profiler.decode.options import MIN_NEW_TOKENS, validate_decode_spec
from profiler.errors import UserError
from profiler.machine.bandwidth import copy_gbps
from profiler.records.decode import DecodeCall, DecodeRecord
from profiler.records.job import DecodeSpec
from profiler.render.findings import findings
from tests.support import fake_runs as fr

MS = 1_000_000  # nanoseconds in a millisecond


def call_from_ms(start: float, tokens: list[float], end: float) -> DecodeCall:
    """A call whose timestamps are given in milliseconds."""
    return DecodeCall(
        start_ns=int(start * MS),
        end_ns=int(end * MS),
        token_times_ns=tuple(int(t * MS) for t in tokens),
        prompt_start_ns=int(start * MS) + 1,
    )


def call_steps_ms(ttft: float, steps: list[float], start: float = 0.0) -> DecodeCall:
    """A call with the given TTFT and token-to-token intervals, in milliseconds."""
    times = [start + ttft]
    for s in steps:
        times.append(times[-1] + s)
    return call_from_ms(start, times, times[-1] + 1)


def record(calls: tuple[DecodeCall, ...], **kw) -> DecodeRecord:
    base = dict(
        batch_size=1,
        prompt_tokens=10,
        new_tokens=len(calls[0].token_times_ns) if calls else 0,
        temperature=0.0,
        seed=0,
        first_call=None,
        calls=calls,
    )
    base.update(kw)
    return DecodeRecord(**base)


# ------------------------------------------------------------------ intervals


def test_intervals_never_span_two_calls():
    # Call A ends at 36 ms; call B starts 964 ms later. The gap must not be an interval.
    a = call_from_ms(0, [5, 15, 25, 35], 36)
    b = call_from_ms(1000, [1004, 1014, 1034], 1035)
    f = decode_figures([record((a, b), new_tokens=4)])
    assert f.interval is not None and f.interval.n == 3 + 2
    assert f.interval.max == pytest.approx(0.020)  # B's 20 ms step, not the 965 ms gap
    assert f.interval.median == pytest.approx(0.010)


def test_latency_percentiles_interpolate_linearly():
    # Intervals of 1, 2, ..., 100 ms in one call: numpy's default percentiles.
    f = decode_figures([record((call_steps_ms(3, [float(i) for i in range(1, 101)]),))])
    assert f.interval is not None
    assert (f.interval.median, f.interval.p90, f.interval.p99) == pytest.approx(
        (0.0505, 0.0901, 0.09901)
    )


# ------------------------------------------------------------ step, tokens/s


def test_step_is_median_over_calls_of_each_calls_mean_step():
    # A stall inside a call counts in that call's step (the user waited for it);
    # one whole slow call does not move the median across calls.
    stalled = call_steps_ms(50, [10, 10, 40])  # mean 20 ms
    steady = call_steps_ms(50, [10, 10, 10])  # 10 ms
    slow = call_steps_ms(50, [30, 30, 30])  # 30 ms
    f = decode_figures([record((stalled, steady, slow), batch_size=4, new_tokens=4)])
    assert f.step is not None and f.step.median == pytest.approx(0.020)
    assert f.interval is not None and f.interval.median == pytest.approx(0.010)  # p50 differs
    assert f.tokens_per_s_seq == pytest.approx(50.0)
    assert f.tokens_per_s_batch == pytest.approx(200.0)  # every sequence gets one token a step


def test_step_excludes_prefill_and_tokens_per_s_is_its_inverse_for_even_calls():
    fast_prefill = call_steps_ms(5, [10, 10])
    slow_prefill = call_steps_ms(900, [12, 12])
    f = decode_figures([record((fast_prefill, slow_prefill), new_tokens=3)])
    assert f.step is not None and f.step.median == pytest.approx(0.011)  # between 10 and 12
    assert f.tokens_per_s_seq == pytest.approx(1 / 0.011)  # not the median of the rates
    assert f.ttft is not None and f.ttft.median == pytest.approx((0.005 + 0.900) / 2)


def test_repetitions_pool_their_calls_and_one_token_calls_have_no_step():
    a = record((call_steps_ms(5, [10, 10]),), new_tokens=3)
    b = record((call_steps_ms(5, [20, 20]), call_steps_ms(5, [30, 30])), new_tokens=3)
    f = decode_figures([a, b])
    assert f.n_calls == 3 and f.step is not None and f.step.median == pytest.approx(0.020)
    assert call_step_s(call_from_ms(0, [5], 6)) is None
    none = decode_figures([record((call_from_ms(0, [5], 6),), new_tokens=1)])
    assert none.step is None and none.tokens_per_s_seq is None and none.mbu is None


def test_figures_refuse_mixed_shapes_and_group_by_shape_sorts():
    a = record((call_steps_ms(5, [10]),), batch_size=4, new_tokens=2)
    b = replace(a, batch_size=1)
    with pytest.raises(ValueError, match="shapes"):
        decode_figures([a, b])
    assert [g[0].batch_size for g in group_by_shape([a, b, a])] == [1, 4]
    assert [len(g) for g in group_by_shape([a, b, a])] == [1, 2]


# ------------------------------------------------------------------------- MBU


def mbu_record(**kw) -> DecodeRecord:
    # 1 GB weights, 1 MB KV per position per sequence, batch 2, prompt 99, 3 new
    # tokens (two 10 ms steps), 200 GB/s measured in the run.
    base = dict(
        batch_size=2,
        prompt_tokens=99,
        new_tokens=3,
        weight_bytes=1_000_000_000,
        kv_bytes_per_token=1_000_000,
        memory_bandwidth_gbps=200.0,
        bandwidth_source="torch copy_ in host memory",
    )
    base.update(kw)
    return record((call_steps_ms(5, [10, 10]),), **base)


def test_mbu_counts_weights_and_the_kv_cache_each_step_reads():
    f = decode_figures([mbu_record()])
    # Step i reads prompt + i + 1 positions: 100 and 101. bytes per step x steps must
    # be what the two steps read together, so the figure is a true rate of the call.
    read = sum(1e9 + 1e6 * 2 * (99 + i + 1) for i in range(2))
    assert f.bytes_per_step is not None and f.bytes_per_step * 2 == pytest.approx(read)
    assert f.kv_counted
    assert f.achieved_gbps == pytest.approx(read / 0.020 / 1e9)
    assert f.mbu == pytest.approx(read / 0.020 / 1e9 / 200.0)  # 0.6005
    no_kv = decode_figures([mbu_record(kv_bytes_per_token=None)])
    assert not no_kv.kv_counted and no_kv.mbu == pytest.approx(1e9 / 0.010 / 1e9 / 200.0)
    assert decode_figures([mbu_record(weight_bytes=None)]).mbu is None


def test_mbu_is_against_the_runs_own_bandwidth_and_ceilings_only_fill_in():
    own = decode_figures([mbu_record()], fallback=(50.0, ceilings_source("host_memcpy")))
    assert own.bandwidth_gbps == 200.0 and own.bandwidth_from_run
    filled = mbu_record(memory_bandwidth_gbps=50.0, bandwidth_source=ceilings_source("x"))
    # a record measured in its run wins over one whose figure came from the ceilings
    mixed = decode_figures([filled, mbu_record(), mbu_record(memory_bandwidth_gbps=100.0)])
    assert mixed.bandwidth_gbps == pytest.approx(150.0) and mixed.bandwidth_from_run
    only_ceilings = decode_figures([filled])
    assert only_ceilings.bandwidth_gbps == 50.0 and not only_ceilings.bandwidth_from_run
    bare = mbu_record(memory_bandwidth_gbps=None, bandwidth_source=None)
    fallback = decode_figures([bare], fallback=(50.0, ceilings_source("host_memcpy")))
    assert fallback.bandwidth_gbps == 50.0 and not fallback.bandwidth_from_run
    assert fallback.mbu == pytest.approx(own.mbu * 4)
    assert decode_figures([bare]).mbu is None


# --------------------------------------------------------- consistency, overhead


def test_consistency_is_the_tail_after_the_last_token():
    c = DecodeCall(start_ns=0, end_ns=400, token_times_ns=(100, 200, 300))
    assert consistency(c) == pytest.approx(0.25)
    exact = DecodeCall(start_ns=0, end_ns=300, token_times_ns=(100, 200, 300))
    assert consistency(exact) == pytest.approx(0.0)


def test_hook_overhead_beyond_the_spread_is_not_called_noise():
    # The shipped CPU report's batch-1 cold record: both hooked calls slower than
    # both plain calls. It used to say "run-to-run variation, not the hook".
    h = hook_overhead(plain_s=(8.592553209, 7.695327544), hooked_s=(11.41954171, 18.000545072))
    assert h is not None and h.within_noise is False
    assert h.fraction == pytest.approx(0.8063, abs=1e-4)
    line = hook_overhead_line(h)
    assert "the hooked calls were slower by 80.6%" in line
    assert "noise" not in line and "variation" not in line


def test_hook_overhead_inside_the_spread_is_noise():
    close = hook_overhead(plain_s=(1.140630218, 1.121964944), hooked_s=(1.142832851, 1.128127822))
    assert close is not None and close.within_noise is True
    assert "within noise" in hook_overhead_line(close)
    # plain calls 15.0 and 20.1 s, hooked 1.1 and 26.0 s: a busy machine, no verdict on the hook
    wild = hook_overhead(plain_s=(15.0, 20.1), hooked_s=(1.1, 26.0))
    assert wild is not None and wild.within_noise is True


def test_hook_overhead_faster_or_unjudgeable():
    faster = hook_overhead(plain_s=(2.0, 2.1, 2.2), hooked_s=(1.0, 1.1, 1.2))
    assert faster is not None and faster.within_noise is False
    assert "faster by 47.6%" in hook_overhead_line(faster)  # 1.1 s vs 2.1 s
    single = hook_overhead(plain_s=(1.0,), hooked_s=(1.5,))
    assert single is not None and single.within_noise is None
    assert "no spread" in hook_overhead_line(single)
    assert hook_overhead((), (1.0,)) is None and hook_overhead((1.0,), ()) is None


def test_report_findings_judge_hook_overhead_by_the_rule():
    hooked = tuple(call_steps_ms(50, [100.0] * 10, start=i * 1e5) for i in range(2))  # ~1.05 s each
    slow = replace(fr.build_decode(1), new_tokens=11, calls=hooked, plain_calls_s=(0.5, 0.52))
    run = replace(fr.make_run(decode_batches=(1,)), decode=(slow,))
    (group,) = summarize_runs([run])
    lines = [x for x in findings(group, brief=True) if "hook" in x]
    assert lines and all("noise" not in x for x in lines)
    assert any("the hooked calls were slower by" in x for x in lines)
    assert record_hook_overhead([slow]) == group.decode[0].hook


# ---------------------------------------------------------------- decode spec


@pytest.mark.parametrize(
    "kw",
    [
        dict(batch_sizes=(0,)),
        dict(batch_sizes=(1, -4)),
        dict(batch_sizes=()),
        dict(batch_sizes=(2, 2)),
        dict(new_tokens=0),
        dict(new_tokens=-5),
        dict(new_tokens=1),
        dict(prompt_tokens=0),
        dict(prompt="hi", prompt_tokens=3),
        dict(prompt="   "),
        dict(prompt_tokens=8, chat=True),
        dict(temperature=-0.1),
        dict(temperature=math.nan),
        dict(warm_calls=0),
    ],
)
def test_spec_rejects_bad_input_in_one_line(kw):
    with pytest.raises(UserError) as e:
        validate_decode_spec(DecodeSpec(**kw))
    assert "\n" not in str(e.value)


def test_spec_rejects_prompt_longer_than_context():
    spec = DecodeSpec(new_tokens=30)
    validate_decode_spec(spec, context_length=128, prompt_length=98)  # exactly fits
    with pytest.raises(UserError, match="exceeds the model's context of 128"):
        validate_decode_spec(spec, context_length=128, prompt_length=99)
    with pytest.raises(UserError, match="113 tokens \\+ 16 new tokens = 129"):
        validate_decode_spec(DecodeSpec(prompt_tokens=113, new_tokens=16), context_length=128)


def test_spec_defaults_are_valid():
    validate_decode_spec(DecodeSpec())
    validate_decode_spec(DecodeSpec(new_tokens=MIN_NEW_TOKENS))


@pytest.mark.parametrize("command", ["decode", "load"])
def test_cli_refuses_one_new_token_before_anything_runs(command, capsys):
    # The model does not exist: the refusal must come before any child or lookup.
    code = main([command, "org/does-not-exist", "--new-tokens", "1"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("llmprof: --new-tokens 1") and "use 2 or more" in err
    assert "\n" not in err


def test_new_tokens_has_one_lower_bound_even_when_decode_is_off(capsys, monkeypatch):
    """Issue 12: one consistent bound for --new-tokens in every command and mode, so a
    value that could never decode is refused up front, not only when decode runs."""
    import profiler.run.session as session

    def no_session(*a, **k):
        raise UserError("session reached")

    monkeypatch.setattr(session, "profile_session", no_session)
    code = main(["load", "org/does-not-exist", "--no-decode", "--new-tokens", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "--new-tokens 1" in err and "session reached" not in err


@pytest.mark.parametrize("command", ["decode", "load"])
@pytest.mark.parametrize("mode", ["auto", "quick", "off"])
def test_decode_and_load_take_the_same_ceilings_option(command, mode, monkeypatch):
    import profiler.run.session as session

    seen = []

    def fake_session(req, ceilings, log, **kw):
        seen.append(ceilings)
        raise UserError("stop here")

    monkeypatch.setattr(session, "profile_session", fake_session)
    assert main([command, "org/m", "--ceilings", mode]) == 2
    assert seen == [mode]


def test_ceilings_off_never_looks_the_ceilings_up(monkeypatch):
    import profiler.machine.cache as cache
    from profiler.run.session import judge

    def no_lookup(*a, **k):
        raise AssertionError("ceilings looked up although --ceilings off")

    monkeypatch.setattr(cache, "lookup", no_lookup)
    session = judge([fr.make_run(decode_batches=(1,))], "off", "cpu", lambda m: None)
    assert session.diagnosis == ()


# --------------------------------------------------------------- KV and config


def test_kv_bytes_grouped_query_attention():
    from types import SimpleNamespace

    # Llama-3-8B shape: 32 layers, 32 query heads, 8 KV heads, head_dim 4096/32 = 128.
    cfg = SimpleNamespace(
        num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, hidden_size=4096
    )
    assert kv_bytes_per_token(cfg, 2) == 2 * 32 * 8 * 128 * 2 == 131072


def test_kv_bytes_gpt2_has_no_kv_heads():
    from types import SimpleNamespace

    # GPT-2 small: n_layer 12, n_head 12, n_embd 768, no num_key_value_heads.
    cfg = SimpleNamespace(n_layer=12, n_head=12, n_embd=768, n_positions=1024)
    assert kv_bytes_per_token(cfg, 2) == 2 * 12 * 12 * 64 * 2 == 36864
    assert context_length_of(cfg) == 1024


def test_kv_bytes_explicit_head_dim_and_multi_query():
    from types import SimpleNamespace

    # head_dim given and not hidden/heads (Gemma-like).
    cfg = SimpleNamespace(
        num_hidden_layers=2,
        num_attention_heads=8,
        num_key_value_heads=1,
        hidden_size=64,
        head_dim=32,
    )
    assert kv_bytes_per_token(cfg, 4) == 2 * 2 * 1 * 32 * 4
    mq = SimpleNamespace(n_layer=3, n_head=4, n_embd=64, multi_query=True)
    assert kv_bytes_per_token(mq, 2) == 2 * 3 * 1 * 16 * 2


def test_kv_bytes_unknown_shapes_give_none():
    from types import SimpleNamespace

    assert kv_bytes_per_token(SimpleNamespace(hidden_size=64), 2) is None
    enc_dec = SimpleNamespace(
        is_encoder_decoder=True, num_hidden_layers=2, num_attention_heads=2, hidden_size=8
    )
    assert kv_bytes_per_token(enc_dec, 2) is None


def test_context_length_uses_text_config():
    from types import SimpleNamespace

    inner = SimpleNamespace(max_position_embeddings=4096)
    outer = SimpleNamespace(get_text_config=lambda: inner)
    assert context_length_of(outer) == 4096
    assert context_length_of(SimpleNamespace()) is None


# ------------------------------------------------------------------------- hook


def test_token_clock_first_put_is_the_prompt_then_one_stamp_per_token():
    synced = []
    clock = TokenClock(sync=lambda: synced.append(1))
    clock.put("prompt")
    for _ in range(3):
        clock.put("token")
    clock.end()
    assert clock.prompt_start_ns is not None
    assert len(clock.token_times_ns) == 3
    assert clock.prompt_start_ns <= clock.token_times_ns[0]
    assert list(clock.token_times_ns) == sorted(clock.token_times_ns)
    assert len(synced) == 3  # a device sync before each token's stamp, not the prompt's
    assert clock.ended and clock.self_ns >= 0


# ------------------------------------------------------------------ bandwidth


def test_copy_counts_read_plus_write():
    assert copy_gbps(512 * 2**20, 0.1) == pytest.approx(2 * 536870912 / 0.1 / 1e9)
    with pytest.raises(ValueError):
        copy_gbps(1, 0.0)


def test_decode_record_round_trips_through_json():
    c = call_from_ms(0, [5, 15, 25], 26)
    r = record((c,), plain_calls_s=(0.026,), first_call=c, notes=("x",))
    back = DecodeRecord.from_dict(json.loads(json.dumps(r.to_dict())))
    assert back == r
    assert decode_figures([back]) == decode_figures([r])
