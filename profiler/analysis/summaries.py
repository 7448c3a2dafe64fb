"""Group summaries: each group's repetitions reduced to the figures every output shows.

Pure functions, records in, frozen dataclasses out. Stages, totals and decode shapes
are summarized here once (median and MAD over the ok repetitions); the console, the
markdown report, the charts and the diagnosis all read these summaries, so a figure
has one definition whichever output shows it. Failed repetitions are listed, never
averaged.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from profiler.analysis.decode_metrics import (
    DecodeFigures,
    HookOverhead,
    call_step_s,
    decode_figures,
    group_by_shape,
    record_hook_overhead,
)
from profiler.analysis.grouping import GroupKey, RunGroup, group_runs
from profiler.analysis.stats import Summary, median, summarize
from profiler.machine.bounds import cast_on_device, stage_ceiling_scale, stage_pinned
from profiler.records.decode import DecodeCall, DecodeRecord
from profiler.records.run import Environment, ModelInfo, RunRecord
from profiler.records.stage import StageRecord, sort_stages


@dataclass(frozen=True)
class StageSummary:
    """One stage over the ok repetitions of a group: what tables and the diagnosis show.

    ``time`` is None when the stage never completed (skipped or failed everywhere).
    ``share_of_total`` is the stage's median time over the median staged total, so
    shares of a group sum to about 1 (exactly 1 when repetitions are identical).
    Byte, rate and memory fields are medians of the per-repetition values (bytes,
    GB/s). ``pinned``, ``on_device`` and ``threads`` say how the stage moved its
    bytes (majority and median over repetitions); ``ceiling_scale`` turns a
    ceiling's GB/s into the stage's own bytes per second (a cast moves more bytes
    than it counts; see :func:`profiler.machine.bounds.stage_ceiling_scale`), None
    when unknown.
    """

    name: str
    n: int = 0  # repetitions where the stage completed
    time: Summary | None = None
    share_of_total: float | None = None
    bytes: int | None = None
    bytes_what: str = ""
    gbps: Summary | None = None
    disk_read_bytes: int | None = None
    pinned: bool = False
    on_device: bool = False  # a dtype_cast done on the GPU
    threads: int | None = None  # the stage's "threads" counter (readers), if it has one
    ceiling_scale: float | None = 1.0
    ceiling_name: str | None = None  # as attached to the records, if they were
    ceiling_gbps: float | None = None
    ceiling_fraction: float | None = None
    peak_rss_bytes: int | None = None
    rss_anon_after: int | None = None
    rss_file_after: int | None = None
    gpu_used_after: int | None = None
    torch_peak_allocated: int | None = None
    statuses: dict[str, int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    skipped_reason: str | None = None
    import_s: float | None = None  # median seconds of lazy imports inside the stage
    import_modules: int | None = None  # median modules those imports loaded
    gc_s: float | None = None  # median garbage collection outside those imports
    own_s: float | None = None  # median of time - imports - gc (StageRecord.own_s)


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

    ``figures`` holds the step time, tokens/s, TTFT, per-token latencies and MBU
    of the warm calls of all repetitions, as
    :func:`profiler.analysis.decode_metrics.decode_figures` defines them.
    ``first_step`` is the same step time over each process's first call.
    """

    batch_size: int
    prompt_tokens: int
    new_tokens: int
    figures: DecodeFigures
    first_ttft: Summary | None
    first_step: Summary | None
    hook: HookOverhead | None
    first_by_position_s: tuple[float, ...]
    warm_by_position_s: tuple[float, ...]
    peak_gpu_allocated_bytes: int | None
    kv_cache_bytes: int | None
    attention_backend: str | None
    text: str | None
    notes: tuple[str, ...]

    @property
    def n_calls(self) -> int:
        return self.figures.n_calls


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


def _as_int(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


def _majority(flags: Sequence[bool]) -> bool:
    return bool(flags) and 2 * sum(flags) >= len(flags)


def _stages_of(run: RunRecord, view: str) -> tuple[StageRecord, ...]:
    if view == "native":
        return run.native.stages if run.native is not None else ()
    return run.stages


def summarize_stages(
    runs: Sequence[RunRecord], total: Summary | None, *, view: str = "staged"
) -> tuple[StageSummary, ...]:
    """Summarize each stage by name across repetitions, in the order of the load.

    ``view`` picks the staged stages of each run or those of its native view;
    ``total`` is the median total the shares are taken of.
    """
    per_run = [(r, _stages_of(r, view)) for r in runs]
    seen = [s.name for _r, stages in per_run for s in stages]
    # The native view's few calls (tokenizer, from_pretrained, to_device, eval) keep
    # the order they ran in; the staged stages follow the pipeline.
    names = sort_stages(seen) if view == "staged" else list(dict.fromkeys(seen))
    out = []
    for name in names:
        pairs = [(r, s) for r, stages in per_run for s in stages if s.name == name]
        recs = [s for _r, s in pairs]
        ok_pairs = [(r, s) for r, s in pairs if s.status == "ok"]
        ok = [s for _r, s in ok_pairs]
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
        scales = [stage_ceiling_scale(s, r) for r, s in ok_pairs]
        known_scales = [x for x in scales if x is not None]
        threads = _median_int(_as_int(s.counters.get("threads")) for s in ok)
        out.append(
            StageSummary(
                name=name,
                n=len(ok),
                time=time,
                share_of_total=share,
                bytes=_median_int(s.bytes for s in ok),
                bytes_what=next((s.bytes_what for s in ok if s.bytes_what), ""),
                gbps=_summary([s.gbps for s in ok]),
                disk_read_bytes=_median_int(s.disk_read_bytes for s in ok),
                pinned=_majority([stage_pinned(s) for s in ok]),
                on_device=_majority([cast_on_device(s) for s in ok]),
                threads=threads,
                ceiling_scale=(
                    median(known_scales) if scales and len(known_scales) == len(scales) else None
                ),
                ceiling_name=next((s.ceiling_name for s in ok if s.ceiling_name), None),
                ceiling_gbps=_median_float(s.ceiling_gbps for s in ok),
                ceiling_fraction=_median_float(s.ceiling_fraction for s in ok),
                peak_rss_bytes=_median_int(m.peak_rss_bytes for m in mem),
                rss_anon_after=_median_int(m.after.rss_anon_bytes for m in mem),
                rss_file_after=_median_int(m.after.rss_file_bytes for m in mem),
                gpu_used_after=_median_int(m.after.gpu_used_bytes for m in mem),
                torch_peak_allocated=_median_int(m.torch_peak_allocated_bytes for m in mem),
                statuses=dict(Counter(s.status for s in recs)),
                notes=_dedup(n for s in ok for n in s.notes),
                skipped_reason=reason,
                import_s=_median_float(s.import_s for s in ok),
                import_modules=_median_int(s.import_modules for s in ok),
                gc_s=_median_float(s.gc_s for s in ok),
                own_s=_median_float(s.own_s for s in ok),
            )
        )
    return tuple(out)


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
    return DecodeSummary(
        batch_size=first.batch_size,
        prompt_tokens=first.prompt_tokens,
        new_tokens=first.new_tokens,
        figures=decode_figures(records),
        first_ttft=_summary([c.ttft_s for c in firsts if c.token_times_ns]),
        first_step=_summary([call_step_s(c) for c in firsts]),
        hook=record_hook_overhead(records),
        first_by_position_s=_by_position(firsts),
        warm_by_position_s=_by_position(calls),
        peak_gpu_allocated_bytes=_median_int(d.peak_gpu_allocated_bytes for d in records),
        kv_cache_bytes=_median_int(d.kv_cache_bytes for d in records),
        attention_backend=next((d.attention_backend for d in records if d.attention_backend), None),
        text=next((d.text for d in records if d.text), None),
        notes=_dedup(n for d in records for n in d.notes),
    )


def summarize_group(group: RunGroup) -> GroupSummary:
    """Summarize one group's repetitions (failed ones listed, not averaged)."""
    runs = group.runs
    ok = [r for r in runs if r.status == "ok"]
    staged_total = _summary([r.staged_total_s for r in ok if r.stages])
    load_total = _summary([r.load_total_s for r in ok if r.stages])
    stages = summarize_stages(ok, staged_total)

    # A `--variants` run of from_pretrained carries its native view as its stages:
    # there is no staged view to set it against, and comparing it with itself
    # would report a gap of zero.
    with_native = [r for r in ok if r.native is not None and r.native.stages != r.stages]
    natives = [r.native for r in with_native if r.native is not None]
    native_total = _summary([n.total_s for n in natives if n.stages])
    native_stages = summarize_stages(with_native, native_total, view="native")
    attribution: dict[str, float | int | str] = {}
    for name in dict.fromkeys(k for n in natives for k in n.attribution):
        values = [n.attribution[name] for n in natives if name in n.attribution]
        numbers = [float(v) for v in values if isinstance(v, int | float)]
        if len(numbers) == len(values):
            attribution[name] = median(numbers)
        else:
            attribution[name] = str(values[0])

    decode = tuple(
        summarize_decode(recs) for recs in group_by_shape(d for r in ok for d in r.decode)
    )

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
