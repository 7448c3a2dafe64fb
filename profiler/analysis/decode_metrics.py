"""TODO: docstring."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from profiler.analysis.stats import median, percentile
from profiler.records.decode import DecodeCall, DecodeRecord


def prefill_mfu(
    num_params: int, prompt_tokens: int, batch: int, ttft_s: float, tflops: float
) -> float:
    """Model FLOPs utilisation of the prefill: ``2·params·tokens·batch / ttft`` over
    the matmul rate. Counts only the weight matmuls (the usual 2 FLOPs per parameter
    per token); attention's own FLOPs are left out, so this slightly understates."""
    if ttft_s <= 0 or tflops <= 0:
        raise ValueError("ttft and matmul rate must be positive")
    return 2.0 * num_params * prompt_tokens * batch / ttft_s / (tflops * 1e12)


def decode_bytes_per_step(
    weight_bytes: int, kv_bytes_per_token: int | None, context_tokens: float, batch: int
) -> float:
    """Bytes one decode step must read: every weight once, plus the KV cache of each
    sequence over its context (``kv_bytes_per_token`` per position per sequence)."""
    kv = (kv_bytes_per_token or 0) * context_tokens * batch
    return float(weight_bytes) + kv


def mbu(bytes_per_step: float, step_s: float, bandwidth_gbps: float) -> float:
    """Memory bandwidth utilisation: bytes a step reads per second over the ceiling."""
    if step_s <= 0 or bandwidth_gbps <= 0:
        raise ValueError("step time and bandwidth must be positive")
    return bytes_per_step / step_s / 1e9 / bandwidth_gbps


def decode_step_s(record: DecodeRecord) -> float | None:
    """Median token-to-token interval over the warm calls (median of each call's
    median, so a long call does not outweigh a short one)."""
    per_call = [median(c.intervals_s) for c in record.calls if len(c.token_times_ns) >= 2]
    return median(per_call) if per_call else None


def decode_mbu(record: DecodeRecord, bandwidth_gbps: float | None = None) -> float | None:
    """MBU of one decode record, or None when a figure it needs was not measured.

    The KV cache grows during the call, so the context is taken at its mean:
    ``prompt_tokens + new_tokens / 2``.
    """
    bw = bandwidth_gbps if bandwidth_gbps is not None else record.memory_bandwidth_gbps
    step = decode_step_s(record)
    if not bw or not step or not record.weight_bytes:
        return None
    context = record.prompt_tokens + record.new_tokens / 2
    nbytes = decode_bytes_per_step(
        record.weight_bytes, record.kv_bytes_per_token, context, record.batch_size
    )
    return mbu(nbytes, step, bw)


# The hook must cost less than this fraction of decode time (issue requirement).
HOOK_BUDGET_FRACTION = 0.02


@dataclass(frozen=True)
class LatencyStats:
    """Per-token decode latency in seconds over ``n`` intervals (within calls only)."""

    p50: float
    p90: float
    p99: float
    max: float
    mean: float
    n: int


def intervals(calls: Iterable[DecodeCall]) -> list[float]:
    # Each call's own intervals, concatenated: the gap between the last token of one
    # call and the first token of the next is never an interval.
    out: list[float] = []
    for c in calls:
        out.extend(c.intervals_s)
    return out


def token_latency_stats(calls: Sequence[DecodeCall]) -> LatencyStats:
    """Percentiles of all per-token intervals of ``calls``; raises ValueError if none."""
    xs = intervals(calls)
    if not xs:
        raise ValueError("no per-token intervals: each call needs at least 2 tokens")
    return LatencyStats(
        p50=percentile(xs, 50),
        p90=percentile(xs, 90),
        p99=percentile(xs, 99),
        max=max(xs),
        mean=sum(xs) / len(xs),
        n=len(xs),
    )


def latency_by_position(calls: Sequence[DecodeCall]) -> tuple[float, ...]:
    """Median over ``calls`` of interval ``i`` for each ``i`` (per-token latency curve).

    Interval ``i`` is the step that reads ``prompt + i + 1`` cache positions. Calls of
    different lengths are cut to the shortest.
    """
    per_call = [c.intervals_s for c in calls]
    if not per_call:
        return ()
    n = min(len(x) for x in per_call)
    return tuple(statistics.median(x[i] for x in per_call) for i in range(n))


def tokens_per_s(record: DecodeRecord, *, include_prefill: bool = False) -> tuple[float, float]:
    """``(per_sequence, batch)`` tokens per second over the record's warm calls.

    Default, "decode tokens/s": prefill excluded; the ``new_tokens - 1`` intervals of
    each call over their summed time (tokens produced by decode steps only).
    ``include_prefill=True``, "end-to-end tokens/s": all new tokens of each call over
    the wall time of its ``generate()`` (setup, prefill, TTFT and tail included).
    Calls are pooled (total tokens / total time). The batch rate is
    ``per_sequence x batch_size``: every sequence gets one token per step.
    """
    calls = record.calls
    if not calls:
        raise ValueError("record has no timed calls")
    if include_prefill:
        tokens = sum(len(c.token_times_ns) for c in calls)
        seconds = sum(c.wall_s for c in calls)
    else:
        xs = intervals(calls)
        tokens, seconds = len(xs), sum(xs)
    if tokens == 0 or seconds <= 0:
        raise ValueError("no decode time to divide by")
    per_seq = tokens / seconds
    return per_seq, per_seq * record.batch_size


def mbu_per_token(record: DecodeRecord, call: DecodeCall) -> list[float]:
    """Memory-bandwidth utilisation of each decode step of ``call`` (fraction of 1).

    Step ``i`` (interval ``i``) must read ``weight_bytes + kv_bytes_per_token x batch x
    (prompt_tokens + i + 1)`` bytes; MBU is that over the interval, over the measured
    device bandwidth. Activations and the one new KV position written are not counted.
    Returns [] when the record lacks weight bytes, KV bytes or bandwidth.
    """
    if (
        record.weight_bytes is None
        or record.kv_bytes_per_token is None
        or not record.memory_bandwidth_gbps
    ):
        return []
    bw = record.memory_bandwidth_gbps * 1e9
    out = []
    for i, dt in enumerate(call.intervals_s):
        position = record.prompt_tokens + i + 1
        need = record.weight_bytes + record.kv_bytes_per_token * record.batch_size * position
        out.append(need / dt / bw if dt > 0 else math.inf)
    return out


def consistency(call: DecodeCall) -> float:
    """``|ttft + sum(intervals) - wall| / wall`` of one call.

    The timestamps should account for the whole call; what is left is the tail after
    the last token (``streamer.end()``, building the output, the final synchronize).
    """
    if call.wall_s <= 0:
        raise ValueError("call has no wall time")
    return abs(call.ttft_s + sum(call.intervals_s) - call.wall_s) / call.wall_s


def hook_overhead(record: DecodeRecord) -> float | None:
    """``(median hooked wall - median plain wall) / median plain wall``; None if unmeasured.

    Negative values mean the difference is below the run-to-run noise.
    """
    if not record.calls or not record.plain_calls_s:
        return None
    plain = statistics.median(record.plain_calls_s)
    if plain <= 0:
        return None
    hooked = statistics.median(c.wall_s for c in record.calls)
    return (hooked - plain) / plain
