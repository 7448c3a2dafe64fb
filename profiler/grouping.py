"""Group run records and summarize each group: pure functions, records in, dataclasses out.

Runs that measured the same thing (model, device, resolved dtype, cache state, and
machine) form a group; its repetitions are summarized per stage with
:func:`profiler.stats.summarize` (median, and the MAD as spread). Groups that differ
only in their cache state give the cold-versus-warm comparison.

Failed repetitions are kept out of the statistics (their stages stop early and would
drag the medians) and are listed on their own with their exit status and error.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from profiler.records import (
    OUTSIDE_LOAD,
    DecodeCall,
    DecodeRecord,
    Environment,
    ModelInfo,
    RunRecord,
    StageRecord,
    sort_stages,
)
from profiler.stats import Summary, median, summarize

# Order of cache states inside one subject: cold first, the way a reader compares.
_TEMPERATURE_RANK = {"cold": 0, "not-cold": 1, "warm": 2, "uncontrolled": 3}

KEY_FIELDS: tuple[str, ...] = ("model", "device", "dtype", "variant", "cache", "machine")

Subject = tuple[str, str, str, str, str]


@dataclass(frozen=True)
class GroupKey:
    """What must match for runs to be repetitions of one measurement."""

    model: str  # ModelInfo.spec
    device: str
    dtype: str  # dtype_resolved
    cache: str  # CacheState.label
    machine: str  # canonical text of Environment.machine_key()
    variant: str = ""  # RunRecord.variant (`llmprof load --variants`), "" when none

    @property
    def subject(self) -> Subject:
        """The key without the cache state: groups sharing it compare cold with warm."""
        return (self.model, self.device, self.dtype, self.variant, self.machine)


@dataclass(frozen=True)
class RunGroup:
    key: GroupKey
    runs: tuple[RunRecord, ...]


@dataclass(frozen=True)
class StageSummary:
    """One stage over the ok repetitions of a group.

    ``time`` is None when the stage never completed (skipped or failed everywhere).
    ``share_of_total`` is the stage's median time over the median staged total, so
    shares of a group sum to about 1 (exactly 1 when repetitions are identical).
    Memory fields are medians of the per-repetition values, in bytes.
    """

    name: str
    n: int  # repetitions where the stage completed
    time: Summary | None
    share_of_total: float | None
    bytes: int | None
    bytes_what: str
    gbps: Summary | None
    ceiling_name: str | None
    ceiling_gbps: float | None
    ceiling_fraction: float | None
    disk_read_bytes: int | None
    peak_rss_bytes: int | None
    rss_anon_after: int | None
    rss_file_after: int | None
    gpu_used_after: int | None
    torch_peak_allocated: int | None
    statuses: dict[str, int]
    notes: tuple[str, ...]
    skipped_reason: str | None


@dataclass(frozen=True)
class FailedRun:
    """A repetition that did not finish: how it ended and its last error lines."""

    run_id: str
    repetition: int
    status: str
    exit_code: int | None
    error: str | None
    created_at: str


@dataclass(frozen=True)
class DecodeSummary:
    """Decode at one (batch size, prompt length, new tokens) over a group's runs.

    Warm calls of all repetitions are pooled. ``interval`` summarizes every
    token-to-token interval (inside one call only), so its p50/p90/p99/max are
    per-token latencies. ``tokens_per_s_seq`` is the decode rate of one sequence,
    ``(tokens - 1) / (last token - first token)`` per call: prefill is excluded
    because it is reported as TTFT. ``token_s`` is the mean interval per call.
    MBU is the bytes one decode step must read (weights, plus the KV cache at the
    mean context length when its size is known) over the median step time, as a
    fraction of the device's memory bandwidth.
    """

    batch_size: int
    prompt_tokens: int
    new_tokens: int
    n_calls: int
    ttft: Summary | None
    interval: Summary | None
    tokens_per_s_seq: Summary | None
    tokens_per_s_batch: Summary | None
    token_s: Summary | None
    first_ttft: Summary | None
    first_token_s: Summary | None
    achieved_gbps: float | None
    mbu: float | None
    mbu_includes_kv: bool
    memory_bandwidth_gbps: float | None
    bandwidth_source: str | None
    hook_overhead_fraction: float | None
    plain_wall: Summary | None
    hooked_wall: Summary | None
    first_by_position_s: tuple[float, ...]
    warm_by_position_s: tuple[float, ...]
    peak_gpu_allocated_bytes: int | None
    kv_cache_bytes: int | None
    attention_backend: str | None
    text: str | None
    notes: tuple[str, ...]


@dataclass(frozen=True)
class GroupSummary:
    """Everything the renderers show about one group."""

    key: GroupKey
    model: ModelInfo
    environment: Environment
    n_runs: int
    n_ok: int
    stages: tuple[StageSummary, ...]
    staged_total: Summary | None  # every stage, process start included
    load_total: Summary | None  # the model load alone (see records.OUTSIDE_LOAD)
    native_total: Summary | None
    native_stages: tuple[StageSummary, ...]
    native_attribution: dict[str, float | int | str]
    unattributed: tuple[str, ...]
    failed: tuple[FailedRun, ...]
    decode: tuple[DecodeSummary, ...]
    residency_before: Summary | None  # page-cache resident fraction of the weights
    unverified_cold_runs: int
    tool_versions: tuple[str, ...]
    first_created: str
    last_created: str
    notes: tuple[str, ...]
    runs: tuple[RunRecord, ...] = field(repr=False, default=())


@dataclass(frozen=True)
class ColdWarmRow:
    """One stage, cold against warm. ``difference_s`` = cold − warm; ``ratio`` = cold / warm."""

    stage: str
    cold: Summary | None
    warm: Summary | None
    difference_s: float | None
    ratio: float | None


@dataclass(frozen=True)
class ColdWarmComparison:
    cold: GroupKey
    warm: GroupKey
    rows: tuple[ColdWarmRow, ...]
    load_total: ColdWarmRow  # the model load alone
    total: ColdWarmRow  # every stage


# ---------------------------------------------------------------------------- keys


def machine_id(env: Environment) -> str:
    """Canonical text of what makes two machines the same (see Environment.machine_key)."""
    return json.dumps(env.machine_key(), sort_keys=True, default=str)


def machine_label(env: Environment) -> str:
    """Short human name of a machine: its GPU when it has one, else its CPU."""
    if env.gpu_name:
        return env.gpu_name
    return f"{env.cpu_model} ({env.cpu_count} cores)"


def cache_temperature(label: str) -> str:
    """The page-cache part of a cache label: cold | not-cold | warm | uncontrolled."""
    parts = [p for p in label.split("/") if p and not p.startswith("hub-") and p != "in-process"]
    return parts[0] if parts else label


def key_of(run: RunRecord) -> GroupKey:
    return GroupKey(
        model=run.model.spec,
        device=run.device,
        dtype=run.dtype_resolved,
        cache=run.cache.label,
        machine=machine_id(run.environment),
        variant=run.variant or "",
    )


def group_runs(runs: Iterable[RunRecord]) -> list[RunGroup]:
    """Group runs by :class:`GroupKey`.

    Subjects keep the order in which they first appear; inside a subject, cache
    states go cold, not-cold, warm, uncontrolled. Repetitions keep their order.
    """
    buckets: dict[GroupKey, list[RunRecord]] = {}
    for run in runs:
        buckets.setdefault(key_of(run), []).append(run)
    subject_order: dict[Subject, int] = {}
    for k in buckets:
        subject_order.setdefault(k.subject, len(subject_order))

    def order(k: GroupKey) -> tuple[int, int, str]:
        rank = _TEMPERATURE_RANK.get(cache_temperature(k.cache), len(_TEMPERATURE_RANK))
        return (subject_order[k.subject], rank, k.cache)

    return [
        RunGroup(k, tuple(sorted(buckets[k], key=lambda r: r.repetition)))
        for k in sorted(buckets, key=order)
    ]


def varying_fields(keys: Sequence[GroupKey]) -> tuple[str, ...]:
    """The key fields whose value differs between groups (at least ``cache`` if one group)."""
    out = tuple(f for f in KEY_FIELDS if len({getattr(k, f) for k in keys}) > 1)
    return out or ("cache",)


# ----------------------------------------------------------------------- summaries


def _median_int(values: Iterable[int | None]) -> int | None:
    xs = [v for v in values if v is not None]
    return int(round(median(xs))) if xs else None


def _median_float(values: Iterable[float | None]) -> float | None:
    xs = [v for v in values if v is not None]
    return median(xs) if xs else None


def _summary(values: Iterable[float | None]) -> Summary | None:
    xs = [v for v in values if v is not None]
    return summarize(xs) if xs else None


def _dedup(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(i for i in items if i))


def summarize_stages(
    per_run: Sequence[Sequence[StageRecord]], total: Summary | None
) -> tuple[StageSummary, ...]:
    """Summarize stages by name across repetitions (one stage list per repetition).

    ``total`` is the median staged total the shares are taken of.
    """
    names = sort_stages([s.name for stages in per_run for s in stages])
    out = []
    for name in names:
        recs = [s for stages in per_run for s in stages if s.name == name]
        ok = [s for s in recs if s.status == "ok"]
        time = _summary([s.duration_s for s in ok])
        share = None
        if time is not None and total is not None and total.median > 0:
            share = time.median / total.median
        skipped = [s for s in recs if s.status != "ok"]
        reason = None
        if skipped:
            first = skipped[0]
            reason = first.notes[0] if first.notes else first.status
        mem = [s.memory for s in ok if s.memory is not None]
        out.append(
            StageSummary(
                name=name,
                n=len(ok),
                time=time,
                share_of_total=share,
                bytes=_median_int(s.bytes for s in ok),
                bytes_what=next((s.bytes_what for s in ok if s.bytes_what), ""),
                gbps=_summary([s.gbps for s in ok]),
                ceiling_name=next((s.ceiling_name for s in ok if s.ceiling_name), None),
                ceiling_gbps=_median_float(s.ceiling_gbps for s in ok),
                ceiling_fraction=_median_float(s.ceiling_fraction for s in ok),
                disk_read_bytes=_median_int(s.disk_read_bytes for s in ok),
                peak_rss_bytes=_median_int(m.peak_rss_bytes for m in mem),
                rss_anon_after=_median_int(m.after.rss_anon_bytes for m in mem),
                rss_file_after=_median_int(m.after.rss_file_bytes for m in mem),
                gpu_used_after=_median_int(m.after.gpu_used_bytes for m in mem),
                torch_peak_allocated=_median_int(m.torch_peak_allocated_bytes for m in mem),
                statuses=dict(Counter(s.status for s in recs)),
                notes=_dedup(n for s in ok for n in s.notes),
                skipped_reason=reason,
            )
        )
    return tuple(out)


def _decode_rate(call: DecodeCall) -> float | None:
    t = call.token_times_ns
    if len(t) < 2 or t[-1] <= t[0]:
        return None
    return (len(t) - 1) / ((t[-1] - t[0]) / 1e9)


def _mean_interval(call: DecodeCall) -> float | None:
    t = call.token_times_ns
    if len(t) < 2:
        return None
    return (t[-1] - t[0]) / 1e9 / (len(t) - 1)


def _by_position(calls: Sequence[DecodeCall]) -> tuple[float, ...]:
    """Median interval at each generated position, over the calls that reached it."""
    series = [c.intervals_s for c in calls]
    longest = max((len(s) for s in series), default=0)
    return tuple(median([s[i] for s in series if len(s) > i]) for i in range(longest))


def summarize_decode(records: Sequence[DecodeRecord]) -> DecodeSummary:
    """Summarize decode records of one shape (batch, prompt, new tokens) across runs."""
    first = records[0]
    calls = [c for d in records for c in d.calls]
    firsts = [d.first_call for d in records if d.first_call is not None]
    rates = [_decode_rate(c) for c in calls]
    token_s = _summary([_mean_interval(c) for c in calls])
    batch = first.batch_size
    rate_seq = _summary(rates)
    rate_batch = _summary([r * batch if r is not None else None for r in rates])

    weight_bytes = _median_int(d.weight_bytes for d in records)
    kv = _median_int(d.kv_bytes_per_token for d in records)
    bandwidth = next((d.memory_bandwidth_gbps for d in records if d.memory_bandwidth_gbps), None)
    achieved = mbu = None
    if weight_bytes and token_s is not None and token_s.median > 0:
        step_bytes = float(weight_bytes)
        if kv:
            # KV read per step grows with the context; its mean over the decode is
            # the context at the middle of generation.
            step_bytes += kv * batch * (first.prompt_tokens + first.new_tokens / 2)
        achieved = step_bytes / token_s.median / 1e9
        if bandwidth:
            mbu = achieved / bandwidth

    plain = _summary([x for d in records for x in d.plain_calls_s])
    hooked = _summary([c.wall_s for c in calls])
    overhead = None
    if plain is not None and hooked is not None and plain.median > 0:
        overhead = hooked.median / plain.median - 1.0

    return DecodeSummary(
        batch_size=batch,
        prompt_tokens=first.prompt_tokens,
        new_tokens=first.new_tokens,
        n_calls=len(calls),
        ttft=_summary([c.ttft_s for c in calls if c.token_times_ns]),
        interval=_summary([x for c in calls for x in c.intervals_s]),
        tokens_per_s_seq=rate_seq,
        tokens_per_s_batch=rate_batch,
        token_s=token_s,
        first_ttft=_summary([c.ttft_s for c in firsts if c.token_times_ns]),
        first_token_s=_summary([_mean_interval(c) for c in firsts]),
        achieved_gbps=achieved,
        mbu=mbu,
        mbu_includes_kv=bool(kv),
        memory_bandwidth_gbps=bandwidth,
        bandwidth_source=next((d.bandwidth_source for d in records if d.bandwidth_source), None),
        hook_overhead_fraction=overhead,
        plain_wall=plain,
        hooked_wall=hooked,
        first_by_position_s=_by_position(firsts),
        warm_by_position_s=_by_position(calls),
        peak_gpu_allocated_bytes=_median_int(d.peak_gpu_allocated_bytes for d in records),
        kv_cache_bytes=_median_int(d.kv_cache_bytes for d in records),
        attention_backend=next((d.attention_backend for d in records if d.attention_backend), None),
        text=next((d.text for d in records if d.text), None),
        notes=_dedup(n for d in records for n in d.notes),
    )


def _load_total_s(run: RunRecord) -> float:
    """Stage time of the model load alone: what the native view also measures."""
    return sum(s.duration_s for s in run.stages if s.status == "ok" and s.name not in OUTSIDE_LOAD)


def summarize_group(group: RunGroup) -> GroupSummary:
    """Summarize one group's repetitions (failed ones listed, not averaged)."""
    runs = group.runs
    ok = [r for r in runs if r.status == "ok"]
    staged_total = _summary([r.staged_total_s for r in ok if r.stages])
    load_total = _summary([_load_total_s(r) for r in ok if r.stages])
    stages = summarize_stages([r.stages for r in ok], staged_total)

    natives = [r.native for r in ok if r.native is not None]
    native_total = _summary([n.total_s for n in natives if n.stages])
    native_stages = summarize_stages([n.stages for n in natives], native_total)
    attribution: dict[str, float | int | str] = {}
    for name in dict.fromkeys(k for n in natives for k in n.attribution):
        values = [n.attribution[name] for n in natives if name in n.attribution]
        numbers = [float(v) for v in values if isinstance(v, int | float)]
        if len(numbers) == len(values):
            attribution[name] = median(numbers)
        else:
            attribution[name] = str(values[0])

    shapes: dict[tuple[int, int, int], list[DecodeRecord]] = {}
    for r in ok:
        for d in r.decode:
            shapes.setdefault((d.batch_size, d.prompt_tokens, d.new_tokens), []).append(d)
    decode = tuple(summarize_decode(shapes[k]) for k in sorted(shapes))

    failed = tuple(
        FailedRun(r.run_id, r.repetition, r.status, r.exit_code, r.error, r.created_at)
        for r in runs
        if r.status != "ok"
    )
    created = sorted(r.created_at for r in runs if r.created_at)
    lead = ok[0] if ok else runs[0]
    return GroupSummary(
        key=group.key,
        model=lead.model,
        environment=lead.environment,
        n_runs=len(runs),
        n_ok=len(ok),
        stages=stages,
        staged_total=staged_total,
        load_total=load_total,
        native_total=native_total,
        native_stages=native_stages,
        native_attribution=attribution,
        unattributed=_dedup(u for n in natives for u in n.unattributed),
        failed=failed,
        decode=decode,
        residency_before=_summary([r.cache.page_resident_fraction_before for r in runs]),
        unverified_cold_runs=sum(
            1 for r in runs if r.cache.page == "cold" and r.cache.page_verified is False
        ),
        tool_versions=_dedup(r.environment.tool_version or "" for r in runs),
        first_created=created[0] if created else "",
        last_created=created[-1] if created else "",
        notes=_dedup([*lead.model.notes, *(n for r in runs for n in r.notes)]),
        runs=runs,
    )


def summarize_runs(runs: Iterable[RunRecord]) -> list[GroupSummary]:
    """Group runs and summarize every group, in :func:`group_runs` order."""
    return [summarize_group(g) for g in group_runs(runs)]


# ------------------------------------------------------------------- cold vs warm


def _cold_warm_row(stage: str, cold: Summary | None, warm: Summary | None) -> ColdWarmRow:
    diff = ratio = None
    if cold is not None and warm is not None:
        diff = cold.median - warm.median
        ratio = cold.median / warm.median if warm.median > 0 else None
    return ColdWarmRow(stage, cold, warm, diff, ratio)


def compare_cold_warm(cold: GroupSummary, warm: GroupSummary) -> ColdWarmComparison:
    """Stage by stage, the cold group against the warm one (plus the staged total)."""
    c = {s.name: s.time for s in cold.stages}
    w = {s.name: s.time for s in warm.stages}
    names = sort_stages([s.name for s in cold.stages] + [s.name for s in warm.stages])
    rows = tuple(_cold_warm_row(n, c.get(n), w.get(n)) for n in names)
    load = _cold_warm_row("load total", cold.load_total, warm.load_total)
    total = _cold_warm_row("staged total", cold.staged_total, warm.staged_total)
    return ColdWarmComparison(cold.key, warm.key, rows, load, total)


def cold_warm_pairs(summaries: Sequence[GroupSummary]) -> list[ColdWarmComparison]:
    """Comparisons for groups that differ only in their cache state.

    Each cold group is paired with each warm group of its subject and process mode
    (fresh subprocess or in-process). A run requested cold that turned out not cold
    stands in for the cold side only when the subject has no verified cold group,
    and keeps its "not-cold" label so the reader sees it.
    """
    out = []
    subjects: dict[Subject, list[GroupSummary]] = {}
    for s in summaries:
        subjects.setdefault(s.key.subject, []).append(s)
    for members in subjects.values():
        temps = {id(m): cache_temperature(m.key.cache) for m in members}
        colds = [m for m in members if temps[id(m)] == "cold"]
        if not colds:
            colds = [m for m in members if temps[id(m)] == "not-cold"]
        warms = [m for m in members if temps[id(m)] == "warm"]
        for c in colds:
            for w in warms:
                same_process = ("in-process" in c.key.cache) == ("in-process" in w.key.cache)
                if same_process and c.stages and w.stages:
                    out.append(compare_cold_warm(c, w))
    return out


def headline_decode(summary: GroupSummary) -> DecodeSummary | None:
    """The decode shape quoted in summaries: the smallest batch size."""
    return summary.decode[0] if summary.decode else None


def native_gap(summary: GroupSummary) -> tuple[float, float] | None:
    """(native − load, (native − load) / load) on medians, when both exist.

    The staged side is the load total, without process start, imports and CUDA
    init: the native view times ``from_pretrained`` in a process that already paid
    for those, so both sides measure the same work.
    """
    if summary.native_total is None or summary.load_total is None:
        return None
    load = summary.load_total.median
    diff = summary.native_total.median - load
    return diff, (diff / load if load > 0 else float("nan"))
