"""Decode figures: the one definition of every number a decode is judged by.

The console table, the diagnosis, ``llmprof compare``'s metrics and the markdown
report all take their decode figures from :func:`decode_figures`; nothing else
computes a step time, a tokens/s or an MBU. Pure functions: decode records in,
numbers out. Only warm calls count: a process's first ``generate()`` pays one-time
work (kernel loading, allocator growth) and is reported apart.

Step time
    For each warm call, its decode time over its decode steps,
    ``(last token - first token) / (tokens - 1)``; the figure is the median of that
    over the warm calls (spread: MAD). Prefill is left out: it is the TTFT. The
    mean inside a call, because every stall in a call is time the user waits for
    those tokens, and because step time x steps is then the call's decode time, so
    tokens/s and MBU below are true rates of a call. The median across calls,
    because on a shared machine another process can slow a whole call down, and one
    such call must not move the figure. The per-token latencies (p50 ... max) are
    another figure: percentiles of the single intervals (:attr:`DecodeFigures.interval`).
Tokens/s
    ``1 / step`` per sequence and ``batch / step`` for the batch: each step gives
    every sequence of the batch one token.
TTFT
    Median over the warm calls of first token - call start (setup, prefill and the
    first sampling).
MBU (memory-bandwidth utilisation)
    ``bytes per step / step / bandwidth``. Bytes per step: every weight once plus the
    KV cache of every sequence at the mean context of the decode,
    ``prompt + new_tokens / 2`` positions. Step ``i`` reads ``prompt + i + 1``
    positions (``i = 0 .. new - 2``), whose mean is exactly that, so bytes per step x
    steps is what the call's decode read in all. Bandwidth: the one measured in the
    same run (``DecodeRecord.memory_bandwidth_gbps``; median over the records), since
    it saw the same machine state, threads and torch build as the decode. The
    machine's cached ceilings fill in only when the run measured none (records
    whose ``bandwidth_source`` starts with :data:`CEILINGS_SOURCE_PREFIX`, or the
    ``fallback`` argument).
Prefill MFU
    ``2 x params x prompt tokens x batch / TTFT`` over the matmul rate: the weight
    matmuls only (attention's own FLOPs are left out, so this slightly understates),
    and TTFT includes setup and one sampling step.
Hook overhead
    Median wall time of the hooked calls against the plain (unhooked) calls of the
    same run; see :func:`hook_overhead` for when a difference is called noise.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from profiler.analysis.rates import dtype_size
from profiler.analysis.stats import Summary, median, summarize
from profiler.records.decode import DecodeCall, DecodeRecord

# How a decode record's bandwidth says it came from the machine's ceilings, not
# from the run (written by profiler.machine.bounds.attach_ceilings).
CEILINGS_SOURCE_PREFIX = "ceilings:"

# The hook's own time must stay under this fraction of decode time.
HOOK_BUDGET_FRACTION = 0.02


def ceilings_source(name: str) -> str:
    """The ``bandwidth_source`` of a bandwidth taken from the ceiling ``name``."""
    return f"{CEILINGS_SOURCE_PREFIX}{name}"


def from_ceilings(source: str | None) -> bool:
    """Whether a record's bandwidth came from the ceilings (not measured in its run)."""
    return source is not None and source.startswith(CEILINGS_SOURCE_PREFIX)


def call_step_s(call: DecodeCall) -> float | None:
    """One call's decode time over its decode steps; None with fewer than 2 tokens."""
    t = call.token_times_ns
    if len(t) < 2 or t[-1] <= t[0]:
        return None
    return (t[-1] - t[0]) / 1e9 / (len(t) - 1)


def decode_bytes_per_step(
    weight_bytes: int, kv_bytes_per_token: int | None, context_tokens: float, batch: int
) -> float:
    """Bytes one decode step must read: every weight once, plus the KV cache of each
    sequence over its context (``kv_bytes_per_token`` per position per sequence)."""
    kv = (kv_bytes_per_token or 0) * context_tokens * batch
    return float(weight_bytes) + kv


def mbu(bytes_per_step: float, step_s: float, bandwidth_gbps: float) -> float:
    """Memory bandwidth utilisation: bytes a step reads per second over the bandwidth."""
    if step_s <= 0 or bandwidth_gbps <= 0:
        raise ValueError("step time and bandwidth must be positive")
    return bytes_per_step / step_s / 1e9 / bandwidth_gbps


def prefill_mfu(
    num_params: int, prompt_tokens: int, batch: int, ttft_s: float, tflops: float
) -> float:
    """Model FLOPs utilisation of the prefill: ``2·params·tokens·batch / ttft`` over the
    matmul rate (TFLOP/s). See the module docstring for what it leaves out."""
    if ttft_s <= 0 or tflops <= 0:
        raise ValueError("ttft and matmul rate must be positive")
    return 2.0 * num_params * prompt_tokens * batch / ttft_s / (tflops * 1e12)


@dataclass(frozen=True)
class DecodeFigures:
    """The decode figures of one shape (batch, prompt, new tokens); see the module
    docstring for each definition. None where an input was not measured."""

    batch_size: int
    prompt_tokens: int
    new_tokens: int
    n_calls: int  # warm calls pooled over the records
    step: Summary | None  # seconds; one sample per warm call
    tokens_per_s_seq: float | None
    tokens_per_s_batch: float | None
    ttft: Summary | None  # seconds; one sample per warm call
    interval: Summary | None  # every token-to-token interval of the warm calls
    bytes_per_step: float | None
    kv_counted: bool  # bytes_per_step includes the KV cache
    achieved_gbps: float | None  # bytes_per_step / step
    bandwidth_gbps: float | None
    bandwidth_source: str | None
    mbu: float | None  # fraction of 1

    @property
    def bandwidth_from_run(self) -> bool:
        """The bandwidth was measured in the same run (not taken from the ceilings)."""
        return self.bandwidth_gbps is not None and not from_ceilings(self.bandwidth_source)


def _summary(values: Iterable[float | None]) -> Summary | None:
    xs = [v for v in values if v is not None]
    return summarize(xs) if xs else None


def _median_int(values: Iterable[int | None]) -> int | None:
    xs = [v for v in values if v is not None]
    return int(round(median(xs))) if xs else None


def _bandwidth(
    records: Sequence[DecodeRecord], fallback: tuple[float, str] | None
) -> tuple[float | None, str | None]:
    """The bandwidth MBU is taken against, and where it came from (module docstring)."""
    measured = [d for d in records if d.memory_bandwidth_gbps]
    chosen = [d for d in measured if not from_ceilings(d.bandwidth_source)] or measured
    if chosen:
        return median([d.memory_bandwidth_gbps or 0.0 for d in chosen]), chosen[0].bandwidth_source
    if fallback is not None:
        return fallback
    return None, None


def decode_figures(
    records: Sequence[DecodeRecord], fallback: tuple[float, str] | None = None
) -> DecodeFigures:
    """Step time, tokens/s, TTFT and MBU of decode records of one shape, their warm
    calls pooled (one record per repetition).

    ``fallback`` is ``(GB/s, source)`` of a bandwidth to use only when no record
    carries one (the machine's ceilings; build the source with :func:`ceilings_source`).
    Raises ValueError for no records or records of different shapes.
    """
    if not records:
        raise ValueError("no decode records")
    first = records[0]
    shape = (first.batch_size, first.prompt_tokens, first.new_tokens)
    if any((d.batch_size, d.prompt_tokens, d.new_tokens) != shape for d in records):
        raise ValueError("decode records of different shapes: group them by shape first")
    calls = [c for d in records for c in d.calls]
    step = _summary([call_step_s(c) for c in calls])
    step_s = step.median if step is not None and step.median > 0 else None
    weight_bytes = _median_int(d.weight_bytes for d in records)
    kv = _median_int(d.kv_bytes_per_token for d in records)
    per_step = None
    if weight_bytes:
        context = first.prompt_tokens + first.new_tokens / 2
        per_step = decode_bytes_per_step(weight_bytes, kv, context, first.batch_size)
    bandwidth, source = _bandwidth(records, fallback)
    achieved = per_step / step_s / 1e9 if per_step and step_s else None
    return DecodeFigures(
        batch_size=first.batch_size,
        prompt_tokens=first.prompt_tokens,
        new_tokens=first.new_tokens,
        n_calls=len(calls),
        step=step,
        tokens_per_s_seq=1.0 / step_s if step_s else None,
        tokens_per_s_batch=first.batch_size / step_s if step_s else None,
        ttft=_summary([c.ttft_s for c in calls if c.token_times_ns]),
        interval=_summary([x for c in calls for x in c.intervals_s]),
        bytes_per_step=per_step,
        kv_counted=per_step is not None and bool(kv),
        achieved_gbps=achieved,
        bandwidth_gbps=bandwidth,
        bandwidth_source=source,
        mbu=mbu(per_step, step_s, bandwidth) if per_step and step_s and bandwidth else None,
    )


def group_by_shape(records: Iterable[DecodeRecord]) -> list[list[DecodeRecord]]:
    """Records grouped by (batch, prompt tokens, new tokens), in that order."""
    shapes: dict[tuple[int, int, int], list[DecodeRecord]] = {}
    for d in records:
        shapes.setdefault((d.batch_size, d.prompt_tokens, d.new_tokens), []).append(d)
    return [shapes[k] for k in sorted(shapes)]


def consistency(call: DecodeCall) -> float:
    """``|ttft + sum(intervals) - wall| / wall`` of one call.

    The timestamps should account for the whole call; what is left is the tail after
    the last token (``streamer.end()``, building the output, the final synchronize).
    """
    if call.wall_s <= 0:
        raise ValueError("call has no wall time")
    return abs(call.ttft_s + sum(call.intervals_s) - call.wall_s) / call.wall_s


@dataclass(frozen=True)
class HookOverhead:
    """Hooked against plain ``generate()`` wall times of the same run.

    ``within_noise`` is None when a kind has fewer than 2 calls: no spread to judge by.
    """

    fraction: float  # (median hooked - median plain) / median plain
    hooked_median_s: float
    plain_median_s: float
    hooked_range_s: tuple[float, float]
    plain_range_s: tuple[float, float]
    n_hooked: int
    n_plain: int
    within_noise: bool | None


def hook_overhead(plain_s: Sequence[float], hooked_s: Sequence[float]) -> HookOverhead | None:
    """Compare plain and hooked wall times; None when either is missing.

    Rule: the difference is within noise when the median of either kind lies inside
    the range (fastest to slowest call) of the other kind, i.e. some call of one kind
    took as long as the other kind's typical call. Otherwise most calls of one kind
    were slower than every call of the other, and the difference is reported as such.
    """
    if not plain_s or not hooked_s:
        return None
    plain, hooked = median(plain_s), median(hooked_s)
    if plain <= 0:
        return None
    p_lo, p_hi = min(plain_s), max(plain_s)
    h_lo, h_hi = min(hooked_s), max(hooked_s)
    within = None
    if len(plain_s) >= 2 and len(hooked_s) >= 2:
        within = p_lo <= hooked <= p_hi or h_lo <= plain <= h_hi
    return HookOverhead(
        fraction=(hooked - plain) / plain,
        hooked_median_s=hooked,
        plain_median_s=plain,
        hooked_range_s=(h_lo, h_hi),
        plain_range_s=(p_lo, p_hi),
        n_hooked=len(hooked_s),
        n_plain=len(plain_s),
        within_noise=within,
    )


def record_hook_overhead(records: Sequence[DecodeRecord]) -> HookOverhead | None:
    """:func:`hook_overhead` of the plain and hooked warm calls of ``records``."""
    plain = [x for d in records for x in d.plain_calls_s]
    hooked = [c.wall_s for d in records for c in d.calls]
    return hook_overhead(plain, hooked)


# --- what bounds a step (issue 14): attribution, matmul floor, energy ---------------
#
# Attribution of the timed warm step ``step_s`` into three parts that sum to it:
#   floor  the least time the step's work can take: the larger of the memory floor
#          (bytes per step / bandwidth) and the matmul floor (2 x weight elements x
#          batch / the matmul rate measured in the run's dtype), capped at busy;
#   busy above the floor: time the device (GPU kernels; on the CPU, torch ops) was
#          busy beyond that floor: kernel inefficiency, attention, small ops;
#   idle   step - busy: the device waited (GPU: for the host to launch; CPU: Python
#          and generate()'s bookkeeping between ops).
# busy comes from profiled untimed calls (records/step.py) and is capped at the step.
# The binding resource is the largest part.

# The bound names :func:`attribute_step` gives.
BOUND_HOST = "host"
BOUND_MEMORY = "memory bandwidth"
BOUND_MATMUL = "matmul rate"
BOUND_KERNELS = "device time above the floor"


@dataclass(frozen=True)
class StepAttribution:
    """A warm step split into floor + busy above the floor + idle (seconds)."""

    step_s: float
    floor_s: float
    above_floor_s: float
    idle_s: float
    memory_floor_s: float | None
    matmul_floor_s: float | None
    busy_s: float  # measured busy time, capped at the step
    busy_capped: bool  # the profiled busy time exceeded the timed step
    bound: str  # one of the BOUND_* names

    @property
    def parts_s(self) -> float:
        return self.floor_s + self.above_floor_s + self.idle_s


def step_matmul_flops(weight_bytes: int, dtype_bytes: int, batch: int) -> float:
    """Matmul FLOPs of one decode step: 2 per weight element per sequence."""
    if dtype_bytes <= 0:
        raise ValueError("dtype size must be positive")
    return 2.0 * weight_bytes / dtype_bytes * batch


def attribute_step(
    step_s: float, busy_s: float, memory_floor_s: float | None, matmul_floor_s: float | None
) -> StepAttribution:
    """Split ``step_s`` into floor, busy above the floor and idle (see above)."""
    if step_s <= 0 or busy_s < 0:
        raise ValueError("step must be positive and busy time not negative")
    busy = min(busy_s, step_s)
    floors = [f for f in (memory_floor_s, matmul_floor_s) if f is not None]
    floor = min(max(floors), busy) if floors else 0.0
    above = busy - floor
    idle = step_s - busy
    if idle >= max(floor, above):
        bound = BOUND_HOST
    elif floor >= above:
        mem = memory_floor_s or 0.0
        bound = BOUND_MEMORY if mem >= (matmul_floor_s or 0.0) else BOUND_MATMUL
    else:
        bound = BOUND_KERNELS
    return StepAttribution(
        step_s=step_s,
        floor_s=floor,
        above_floor_s=above,
        idle_s=idle,
        memory_floor_s=memory_floor_s,
        matmul_floor_s=matmul_floor_s,
        busy_s=busy,
        busy_capped=busy_s > step_s,
        bound=bound,
    )


def matmul_rate(records: Sequence[DecodeRecord]) -> tuple[float, str] | None:
    """(TFLOP/s, dtype) measured in the runs' own dtype: median over the records."""
    rates = [d.matmul_tflops for d in records if d.matmul_tflops]
    dtypes = {d.matmul_dtype for d in records if d.matmul_tflops and d.matmul_dtype}
    if not rates or len(dtypes) != 1:
        return None
    return median(rates), dtypes.pop()


def step_attribution(
    records: Sequence[DecodeRecord], figures: DecodeFigures
) -> StepAttribution | None:
    """:func:`attribute_step` of a shape's timed step with its profiled busy time
    (median over the records that have one); None without either."""
    busy = [d.step_profile.busy_s for d in records if d.step_profile and d.step_profile.busy_s]
    if figures.step is None or figures.step.median <= 0 or not busy:
        return None
    mem = None
    if figures.bytes_per_step and figures.bandwidth_gbps:
        mem = figures.bytes_per_step / (figures.bandwidth_gbps * 1e9)
    mat = None
    rate = matmul_rate(records)
    weight = _median_int(d.weight_bytes for d in records)
    size = dtype_size(rate[1]) if rate else None
    if rate and weight and size:
        flops = step_matmul_flops(weight, size, figures.batch_size)
        mat = flops / (rate[0] * 1e12)
    return attribute_step(figures.step.median, median(busy), mem, mat)


@dataclass(frozen=True)
class DecodeEnergy:
    """Energy of the warm calls: medians over the calls that have it."""

    joules_per_call: float
    joules_per_token: float  # per generated token (batch x new tokens), prefill included
    mean_power_w: float  # joules over the call's wall time
    n_calls: int


def joules_per_token(energy_j: float, new_tokens: int, batch: int) -> float:
    """Energy of a call over the tokens it generated (every sequence's)."""
    if new_tokens <= 0 or batch <= 0:
        raise ValueError("tokens and batch must be positive")
    return energy_j / (new_tokens * batch)


def decode_energy(records: Sequence[DecodeRecord]) -> DecodeEnergy | None:
    """Joules per call and per token and mean power of the warm calls; None when NVML
    gave no energy (``DecodeRecord.energy_note`` says why)."""
    rows = [
        (c.energy_j, c.wall_s, d.new_tokens, d.batch_size)
        for d in records
        for c in d.calls
        if c.energy_j is not None and c.wall_s > 0
    ]
    if not rows:
        return None
    return DecodeEnergy(
        joules_per_call=median([e for e, _, _, _ in rows]),
        joules_per_token=median([joules_per_token(e, n, b) for e, _, n, b in rows]),
        mean_power_w=median([e / w for e, w, _, _ in rows]),
        n_calls=len(rows),
    )
