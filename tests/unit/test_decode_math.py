"""Decode metrics on hand-built calls and records: pure arithmetic, no model, no torch."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest

from profiler.analysis.decode_metrics import (
    LatencyStats,
    consistency,
    hook_overhead,
    latency_by_position,
    mbu_per_token,
    token_latency_stats,
    tokens_per_s,
)
from profiler.decode.hook import TokenClock
from profiler.decode.model_facts import context_length_of, kv_bytes_per_token
from profiler.decode.options import DecodeOptions
from profiler.errors import UserError
from profiler.machine.bandwidth import copy_gbps
from profiler.records.decode import DecodeCall, DecodeRecord

MS = 1_000_000  # nanoseconds in a millisecond


def call_from_ms(start: float, tokens: list[float], end: float) -> DecodeCall:
    """A call whose timestamps are given in milliseconds."""
    return DecodeCall(
        start_ns=int(start * MS),
        end_ns=int(end * MS),
        token_times_ns=tuple(int(t * MS) for t in tokens),
        prompt_start_ns=int(start * MS) + 1,
    )


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
    # Call A ends at 30 ms; call B starts 970 ms later. The gap must not be an interval.
    a = call_from_ms(0, [5, 15, 25, 35], 36)
    b = call_from_ms(1000, [1004, 1014, 1034], 1035)
    s = token_latency_stats([a, b])
    assert s.n == 3 + 2
    assert s.max == pytest.approx(0.020)  # B's 20 ms step, not the 965 ms gap
    assert s.p50 == pytest.approx(0.010)
    assert s.mean == pytest.approx((10 * 4 + 20) / 5 / 1e3)


def test_percentiles_linear_interpolation():
    # Intervals of 1, 2, ..., 100 ms in one call.
    times = [0.0]
    for i in range(1, 101):
        times.append(times[-1] + i)
    c = call_from_ms(-3, times, times[-1] + 1)
    s = token_latency_stats([c])
    assert s == LatencyStats(
        p50=pytest.approx(0.0505),
        p90=pytest.approx(0.0901),
        p99=pytest.approx(0.09901),
        max=pytest.approx(0.100),
        mean=pytest.approx(0.0505),
        n=100,
    )


def test_latency_stats_without_intervals_raises():
    with pytest.raises(ValueError):
        token_latency_stats([call_from_ms(0, [5], 6)])
    with pytest.raises(ValueError):
        token_latency_stats([])


def test_latency_by_position_is_median_per_index_and_cut_to_shortest():
    a = call_from_ms(0, [1, 2, 4, 8], 9)  # 1, 2, 4
    b = call_from_ms(0, [1, 4, 6, 7], 9)  # 3, 2, 1
    c = call_from_ms(0, [1, 3, 5], 9)  # 2, 2
    assert latency_by_position([a, b, c]) == pytest.approx((0.002, 0.002))
    assert latency_by_position([]) == ()


# ---------------------------------------------------------------- tokens per s


def test_tokens_per_s_decode_excludes_prefill():
    # 5 tokens per call: 4 intervals of 10 ms each -> 100 tokens/s per sequence.
    a = call_from_ms(0, [50, 60, 70, 80, 90], 100)
    b = call_from_ms(500, [540, 550, 560, 570, 580], 600)
    r = record((a, b), batch_size=4, new_tokens=5)
    per_seq, batch = tokens_per_s(r)
    assert per_seq == pytest.approx(100.0)
    assert batch == pytest.approx(400.0)


def test_tokens_per_s_end_to_end_uses_wall_time():
    a = call_from_ms(0, [50, 60, 70, 80, 90], 100)  # 5 tokens in 100 ms
    b = call_from_ms(500, [540, 550, 560, 570, 580], 800)  # 5 tokens in 300 ms
    r = record((a, b), batch_size=2, new_tokens=5)
    per_seq, batch = tokens_per_s(r, include_prefill=True)
    assert per_seq == pytest.approx(10 / 0.4)  # pooled: total tokens / total time
    assert batch == pytest.approx(2 * 10 / 0.4)


def test_tokens_per_s_needs_calls():
    with pytest.raises(ValueError):
        tokens_per_s(record(()))


# ------------------------------------------------------------------------- MBU


def test_mbu_on_round_numbers():
    # 1 GB weights, 1 MB KV per position per sequence, batch 2, prompt 99, 200 GB/s.
    c = call_from_ms(0, [5, 15, 25], 26)  # two 10 ms steps
    r = record(
        (c,),
        batch_size=2,
        prompt_tokens=99,
        weight_bytes=1_000_000_000,
        kv_bytes_per_token=1_000_000,
        memory_bandwidth_gbps=200.0,
    )
    # step 0 reads prompt + 1 = 100 positions: 1e9 + 1e6 * 2 * 100 = 1.2e9 bytes
    # 1.2e9 B / 0.01 s = 120 GB/s = 0.6 of 200 GB/s; step 1 reads 101 positions.
    assert mbu_per_token(r, c) == pytest.approx([0.6, 0.601])


def test_mbu_empty_without_inputs():
    c = call_from_ms(0, [5, 15, 25], 26)
    assert mbu_per_token(record((c,), weight_bytes=1, kv_bytes_per_token=1), c) == []
    assert mbu_per_token(record((c,), memory_bandwidth_gbps=1.0), c) == []


# --------------------------------------------------------- consistency, overhead


def test_consistency_is_the_tail_after_the_last_token():
    c = DecodeCall(start_ns=0, end_ns=400, token_times_ns=(100, 200, 300))
    assert c.ttft_s + sum(c.intervals_s) == pytest.approx(300e-9)
    assert consistency(c) == pytest.approx(0.25)
    exact = DecodeCall(start_ns=0, end_ns=300, token_times_ns=(100, 200, 300))
    assert consistency(exact) == pytest.approx(0.0)


def test_hook_overhead_compares_medians():
    hooked = tuple(call_from_ms(0, [1, 2], w) for w in (1100, 1122, 1500))
    r = record(hooked, plain_calls_s=(1.0, 1.2, 1.1))
    assert hook_overhead(r) == pytest.approx((1.122 - 1.1) / 1.1)
    assert hook_overhead(record(hooked)) is None
    assert hook_overhead(record((), plain_calls_s=(1.0,))) is None


# --------------------------------------------------------------- KV and config


def test_kv_bytes_grouped_query_attention():
    # Llama-3-8B shape: 32 layers, 32 query heads, 8 KV heads, head_dim 4096/32 = 128.
    cfg = SimpleNamespace(
        num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, hidden_size=4096
    )
    assert kv_bytes_per_token(cfg, 2) == 2 * 32 * 8 * 128 * 2 == 131072


def test_kv_bytes_gpt2_has_no_kv_heads():
    # GPT-2 small: n_layer 12, n_head 12, n_embd 768, no num_key_value_heads.
    cfg = SimpleNamespace(n_layer=12, n_head=12, n_embd=768, n_positions=1024)
    assert kv_bytes_per_token(cfg, 2) == 2 * 12 * 12 * 64 * 2 == 36864
    assert context_length_of(cfg) == 1024


def test_kv_bytes_explicit_head_dim_and_multi_query():
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
    assert kv_bytes_per_token(SimpleNamespace(hidden_size=64), 2) is None
    enc_dec = SimpleNamespace(
        is_encoder_decoder=True, num_hidden_layers=2, num_attention_heads=2, hidden_size=8
    )
    assert kv_bytes_per_token(enc_dec, 2) is None


def test_context_length_uses_text_config():
    inner = SimpleNamespace(max_position_embeddings=4096)
    outer = SimpleNamespace(get_text_config=lambda: inner)
    assert context_length_of(outer) == 4096
    assert context_length_of(SimpleNamespace()) is None


# ---------------------------------------------------------------------- options


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
def test_options_reject_bad_input(kw):
    with pytest.raises(UserError) as e:
        DecodeOptions(**kw).validate()
    assert "\n" not in str(e.value)


def test_options_reject_prompt_longer_than_context():
    opts = DecodeOptions(new_tokens=30)
    opts.validate(context_length=128, prompt_length=98)  # exactly fits
    with pytest.raises(UserError, match="exceeds the model's context of 128"):
        opts.validate(context_length=128, prompt_length=99)
    # the form the loader uses: the model config, prompt length from prompt_tokens
    cfg = SimpleNamespace(n_positions=128)
    DecodeOptions(prompt_tokens=112, new_tokens=16).validate(cfg)
    with pytest.raises(UserError, match="113 tokens \\+ 16 new tokens = 129"):
        DecodeOptions(prompt_tokens=113, new_tokens=16).validate(cfg)


def test_options_defaults_are_valid():
    opts = DecodeOptions()
    opts.validate()
    assert opts.new_tokens == 64 and opts.seed == 0 and opts.warm_calls == 3
    assert not opts.do_sample and DecodeOptions(temperature=0.7).do_sample


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
    assert token_latency_stats(back.calls) == token_latency_stats(r.calls)
