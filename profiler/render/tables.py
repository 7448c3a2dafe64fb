"""The tables the console and the markdown report share, built from group summaries.

A table column holds one unit, named in its header ("time (ms)"), so the cells are
bare numbers that line up when right-aligned; the cells come from
:mod:`profiler.render.format`. Columns that carry nothing for these runs are left
out. :func:`render_table` is the one place a table is laid out (tabulate).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from profiler.analysis.cold_warm import ColdWarmComparison
from profiler.analysis.grouping import GroupKey, machine_label
from profiler.analysis.stats import Summary
from profiler.analysis.summaries import GroupSummary, StageSummary
from profiler.records.run import Environment
from profiler.records.stage import OUTSIDE_LOAD
from profiler.render.format import (
    MISSING,
    Unit,
    bytes_unit,
    med_spread,
    num,
    percent,
    quantity,
    ratio,
    signed,
    time_unit,
)


@dataclass(frozen=True)
class Column:
    """One table column: header (with its unit), alignment, cells, and whether to show it."""

    header: str
    cells: tuple[str, ...]
    align: str = "right"  # numbers right, text left
    show: bool = True


@dataclass(frozen=True)
class Table:
    """Headers, their alignments and rows of cells, ready to lay out."""

    headers: tuple[str, ...]
    align: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


def make_table(columns: Sequence[Column]) -> Table:
    """A table of the shown columns (a column that carries nothing is left out)."""
    cols = [c for c in columns if c.show]
    n = max((len(c.cells) for c in cols), default=0)
    rows = tuple(tuple(c.cells[i] if i < len(c.cells) else "" for c in cols) for i in range(n))
    return Table(tuple(c.header for c in cols), tuple(c.align for c in cols), rows)


def render_table(table: Table, fmt: str) -> str:
    """Lay a table out with tabulate: ``fmt`` is "simple" (terminal) or "pipe" (markdown)."""
    from tabulate import tabulate

    headers: Sequence[str] = table.headers
    rows: Sequence[Sequence[str]] = table.rows
    if fmt == "pipe":
        # A "|" inside a cell would end the cell in markdown.
        headers = [h.replace("|", "\\|") for h in headers]
        rows = [[c.replace("|", "\\|") for c in r] for r in rows]
    return tabulate(
        rows, headers=headers, tablefmt=fmt, colalign=table.align, disable_numparse=True
    )


def informative(cells: Iterable[str]) -> bool:
    """A column carries information when at least one cell holds a measured value."""
    return any(c not in (MISSING, "") for c in cells)


def key_text(key: GroupKey, fields: Sequence[str], env: Environment | None = None) -> str:
    """The parts of a group key that tell it apart from the other groups.

    An empty part (the variant of a run that is not one) is left out rather than
    shown as a dangling separator.
    """
    parts = []
    for f in fields:
        if f == "machine":
            parts.append(machine_label(env) if env is not None else "machine")
        else:
            parts.append(str(getattr(key, f)))
    return " · ".join(p for p in parts if p) or MISSING


def key_columns(groups: Sequence[GroupSummary], fields: Sequence[str]) -> list[Column]:
    """Left-aligned columns naming each group by the key fields that vary."""
    cols = []
    for f in fields:
        if f == "machine":
            cells = tuple(machine_label(g.environment) for g in groups)
        else:
            cells = tuple(str(getattr(g.key, f)) for g in groups)
        cols.append(Column(f, cells, align="left"))
    return cols


def stage_table(group: GroupSummary, *, compact: bool = False) -> Table:
    """Load stages of one group: time, share, bytes, bandwidth, memory, why skipped.

    ``compact`` (the terminal) leaves out stages that never completed, the disk-read,
    ceiling-name and torch-peak columns; :func:`skipped_line` and
    :func:`ceilings_line` say the rest in one line each.
    """
    stages = [s for s in group.stages if not compact or s.time is not None]
    total = group.staged_total
    tu = time_unit([s.time.median for s in stages if s.time] + ([total.median] if total else []))
    totals = _total_rows(group, stages)
    blank = [""] * len(totals)  # total rows carry only time and share

    def time_cell(s: StageSummary) -> str:
        if s.time is None:
            return next(iter(k for k in s.statuses if k != "ok"), MISSING)
        return med_spread(s.time, tu)

    names = [s.name for s in stages] + [t[0] for t in totals]
    times = [time_cell(s) for s in stages] + [med_spread(t[1], tu) for t in totals]
    shares = [percent(s.share_of_total) if s.time else "" for s in stages] + [t[2] for t in totals]
    notes = [_stage_note(s, group.n_ok) for s in stages] + blank
    return make_table(
        [
            Column("stage", tuple(names), align="left"),
            Column(f"time ({tu.name})", tuple(times)),
            Column("share (%)", tuple(shares), show=total is not None),
            *import_columns(stages, blank, tu),
            *_transfer_columns(stages, blank, compact),
            *_memory_columns(stages, blank, compact),
            Column("note", tuple(notes), align="left", show=informative(notes)),
        ]
    )


def import_columns(stages: Sequence[StageSummary], blank: list[str], tu: Unit) -> list[Column]:
    """Lazy imports inside each stage, the garbage collections outside them, and the
    stage's own work without either; shown when the runs tracked imports
    (profiler/measure/imports.py)."""
    show = any(s.import_s for s in stages)

    def cell(s: StageSummary, value: float | None) -> str:
        return quantity(value, tu) if s.time is not None and value is not None else ""

    imports = [cell(s, s.import_s) for s in stages] + blank
    modules = [str(s.import_modules) if s.import_modules else "" for s in stages] + blank
    gcs = [cell(s, s.gc_s) if s.gc_s else "" for s in stages] + blank
    owns = [cell(s, s.own_s) for s in stages] + blank
    return [
        Column(f"imports ({tu.name})", tuple(imports), show=show),
        Column("modules", tuple(modules), show=show),
        Column(f"gc ({tu.name})", tuple(gcs), show=show and informative(gcs)),
        Column(f"own ({tu.name})", tuple(owns), show=show),
    ]


def _total_rows(
    group: GroupSummary, stages: Sequence[StageSummary]
) -> list[tuple[str, Summary | None, str]]:
    """(name, time, share) of the load total and the staged total rows."""
    total = group.staged_total
    load = group.load_total
    # The load total is worth its own row only when startup stages are in the table.
    show_load = load is not None and any(
        s.name in OUTSIDE_LOAD and s.time is not None for s in stages
    )
    rows: list[tuple[str, Summary | None, str]] = []
    if show_load and load is not None:
        share = percent(load.median / total.median) if total and total.median > 0 else ""
        rows.append(("load total", load, share))
    rows.append(("staged total", total, "100.0" if total else ""))
    return rows


def _stage_note(s: StageSummary, n_ok: int) -> str:
    """Why a stage did not run everywhere, or how many repetitions it is a median of."""
    if s.skipped_reason is not None:
        bad = {k: v for k, v in s.statuses.items() if k != "ok"}
        what = ", ".join(sorted(bad))
        if s.n:
            what += f" in {sum(bad.values())} of {sum(s.statuses.values())}"
        return f"{what}: {s.skipped_reason}"
    if s.n != n_ok:
        return f"n={s.n}"
    return ""


def _transfer_columns(
    stages: Sequence[StageSummary], blank: list[str], compact: bool
) -> list[Column]:
    """What each stage moved: bytes, bytes from disk, GB/s, and against which ceiling."""
    bu = bytes_unit([s.bytes for s in stages] + [s.disk_read_bytes for s in stages])

    def ceiling(s: StageSummary) -> str:
        if s.ceiling_name is None or s.ceiling_fraction is None:
            return MISSING
        rate = f" {num(s.ceiling_gbps)} GB/s" if s.ceiling_gbps else ""
        return f"{s.ceiling_name}{rate}"

    nbytes = [quantity(s.bytes, bu) for s in stages] + blank
    disk = [quantity(s.disk_read_bytes, bu) for s in stages] + blank
    gbps = [num(s.gbps.median) if s.gbps else MISSING for s in stages] + blank
    frac = [percent(s.ceiling_fraction) for s in stages] + blank
    ceil = [ceiling(s) for s in stages] + blank
    return [
        Column(f"bytes ({bu.name})", tuple(nbytes), show=informative(nbytes)),
        Column(f"disk read ({bu.name})", tuple(disk), show=informative(disk) and not compact),
        Column("GB/s", tuple(gbps), show=informative(gbps)),
        Column("% of ceiling", tuple(frac), show=informative(frac)),
        Column("ceiling", tuple(ceil), align="left", show=informative(ceil) and not compact),
    ]


def _memory_columns(
    stages: Sequence[StageSummary], blank: list[str], compact: bool
) -> list[Column]:
    """Memory after each stage (RSS split anonymous / file-backed, GPU) and its peaks."""
    mu = bytes_unit(
        [
            v
            for s in stages
            for v in (
                s.peak_rss_bytes,
                s.rss_anon_after,
                s.rss_file_after,
                s.gpu_used_after,
                s.torch_peak_allocated,
            )
        ]
    )

    def rss(s: StageSummary) -> str:
        if s.rss_anon_after is None and s.rss_file_after is None:
            return MISSING
        return f"{quantity(s.rss_anon_after, mu)} / {quantity(s.rss_file_after, mu)}"

    rss_cells = [rss(s) for s in stages] + blank
    peak = [quantity(s.peak_rss_bytes, mu) for s in stages] + blank
    gpu = [quantity(s.gpu_used_after, mu) for s in stages] + blank
    torch_peak = [quantity(s.torch_peak_allocated, mu) for s in stages] + blank
    return [
        Column(
            f"RSS after: anon / file ({mu.name})", tuple(rss_cells), show=informative(rss_cells)
        ),
        Column(f"peak RSS ({mu.name})", tuple(peak), show=informative(peak)),
        Column(f"GPU used after ({mu.name})", tuple(gpu), show=informative(gpu)),
        Column(
            f"torch peak ({mu.name})",
            tuple(torch_peak),
            show=informative(torch_peak) and not compact,
        ),
    ]


def ceilings_line(group: GroupSummary) -> str | None:
    """Which ceiling each "% of ceiling" is measured against, on one line."""
    items = [
        f"{s.name} against {s.ceiling_name}"
        + (f" ({num(s.ceiling_gbps)} GB/s)" if s.ceiling_gbps else "")
        for s in group.stages
        if s.ceiling_name and s.ceiling_fraction is not None
    ]
    return "ceilings: " + ", ".join(items) if items else None


def skipped_line(group: GroupSummary) -> str | None:
    """Stages that never completed, with their reasons, on one line."""
    items = [
        f"{s.name} ({s.skipped_reason})"
        for s in group.stages
        if s.time is None and s.skipped_reason is not None
    ]
    return "not run: " + ", ".join(items) if items else None


DECODE_PARTS = ("all", "latency", "rate")


def decode_table(group: GroupSummary, part: str = "all") -> Table:
    """Decode of one group, one row per batch size (and prompt/new-token shape).

    ``part`` picks the latency columns, the rate columns, or all (a terminal shows
    them as two tables to stay readable in 120 columns). Every figure is a
    :class:`~profiler.analysis.decode_metrics.DecodeFigures` field; the definitions
    are stated under the table by :func:`decode_definitions`.
    """
    if part not in DECODE_PARTS:
        raise ValueError(f"part must be one of {DECODE_PARTS}, got {part!r}")
    ds = group.decode
    fs = [d.figures for d in ds]

    def col(header: str, values: Sequence[float | None], unit: Unit) -> Column:
        cells = tuple(quantity(v, unit) for v in values)
        return Column(f"{header} ({unit.name})", cells, show=informative(cells))

    def summary_col(header: str, values: Sequence[Summary | None], unit: Unit) -> Column:
        cells = tuple(med_spread(v, unit) for v in values)
        return Column(f"{header} ({unit.name})", cells, show=informative(cells))

    def medians(values: Iterable[Summary | None]) -> list[float | None]:
        return [v.median if v else None for v in values]

    def pick(stat: str) -> list[float | None]:
        return [getattr(f.interval, stat) if f.interval else None for f in fs]

    p50, p90, p99, mx = pick("median"), pick("p90"), pick("p99"), pick("max")
    lat_unit = time_unit(p50 + p90 + p99 + mx)
    ttft_unit = time_unit(medians(f.ttft for f in fs) + medians(d.first_ttft for d in ds))
    step_unit = time_unit(medians(f.step for f in fs) + medians(d.first_step for d in ds))
    seq = tuple(num(f.tokens_per_s_seq) for f in fs)
    batch = tuple(num(f.tokens_per_s_batch) for f in fs)
    mbu = tuple(percent(f.mbu) for f in fs)
    ident = [
        Column("batch", tuple(str(d.batch_size) for d in ds)),
        Column("prompt (tok)", tuple(str(d.prompt_tokens) for d in ds)),
        Column("new (tok)", tuple(str(d.new_tokens) for d in ds)),
        Column("calls", tuple(str(d.n_calls) for d in ds)),
    ]
    latency = [
        summary_col("TTFT", [f.ttft for f in fs], ttft_unit),
        col("p50", p50, lat_unit),
        col("p90", p90, lat_unit),
        col("p99", p99, lat_unit),
        col("max", mx, lat_unit),
    ]
    rate = [
        summary_col("step", [f.step for f in fs], step_unit),
        Column("tok/s (seq)", seq, show=informative(seq)),
        Column(
            "tok/s (batch)", batch, show=informative(batch) and any(d.batch_size > 1 for d in ds)
        ),
        Column("MBU (%)", mbu, show=informative(mbu)),
        summary_col("first TTFT", [d.first_ttft for d in ds], ttft_unit),
        summary_col("first step", [d.first_step for d in ds], step_unit),
    ]
    if part == "latency":
        return make_table(ident + latency)
    if part == "rate":
        return make_table(ident[:1] + rate)
    return make_table(ident + latency + rate)


def decode_definitions(group: GroupSummary, *, detail: bool = True) -> str | None:
    """How the decode table's step, tok/s and MBU are defined, and which memory
    bandwidth its MBU is against (the rule of analysis.decode_metrics); ``detail``
    adds how the bandwidth was measured."""
    if not group.decode:
        return None
    text = (
        "step: median over warm calls of each call's decode time / its steps (prefill "
        "excluded); tok/s = 1 / step per sequence, batch / step for the batch"
    )
    sources = []
    for f in (d.figures for d in group.decode):
        if f.bandwidth_gbps is None:
            continue
        if f.bandwidth_from_run:
            how = f" ({f.bandwidth_source})" if f.bandwidth_source and detail else ""
            where = "measured in the same run" + how
        else:
            where = f"from the ceilings, {f.bandwidth_source}: the run measured none"
        sources.append(f"{num(f.bandwidth_gbps)} GB/s {where}")
    if not sources:
        return text + "; MBU not computed: no memory bandwidth measured"
    return text + (
        "; MBU = bytes a step reads (weights, plus the KV cache at the mean context) "
        "/ step / memory bandwidth: " + "; ".join(dict.fromkeys(sources))
    )


def cold_warm_table(cmp: ColdWarmComparison) -> Table:
    """Stage × (cold, warm, cold − warm, cold / warm), then the load and staged totals."""
    rows = [*cmp.rows, cmp.load_total, cmp.total]
    tu = time_unit([v.median for r in rows for v in (r.cold, r.warm) if v is not None])
    return make_table(
        [
            Column("stage", tuple(r.stage for r in rows), align="left"),
            Column(f"{cmp.cold.cache} ({tu.name})", tuple(med_spread(r.cold, tu) for r in rows)),
            Column(f"{cmp.warm.cache} ({tu.name})", tuple(med_spread(r.warm, tu) for r in rows)),
            Column(f"cold − warm ({tu.name})", tuple(signed(r.difference_s, tu) for r in rows)),
            Column("cold / warm", tuple(ratio(r.ratio) for r in rows)),
        ]
    )
