"""What ``llmprof load`` prints: one stage table per group, decode, and what to watch.

Plain text for a terminal: tables laid out by tabulate (numbers right, text left,
units in the headers), ``median ± MAD`` when there are several repetitions, and
only the columns that carry information for these runs.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence

from profiler.analysis.cold_warm import cold_warm_pairs
from profiler.analysis.grouping import Subject, machine_label, varying_fields
from profiler.analysis.summaries import GroupSummary, summarize_runs
from profiler.records.run import RunRecord
from profiler.render import decode_bounds
from profiler.render.findings import findings, footer_line, native_gap_line, split_shared
from profiler.render.format import count, human_bytes
from profiler.render.native_trace import (
    gap_lines,
    import_packages_line,
    missing_hooks_line,
    native_imports_line,
    native_phase_table,
)
from profiler.render.overview import distinct_environments, groups_table
from profiler.render.placement import placement_lines
from profiler.render.ranks import rank_lines
from profiler.render.tables import (
    ceilings_line,
    cold_warm_table,
    decode_definitions,
    decode_table,
    render_table,
    skipped_line,
    stage_table,
)

FMT = "simple"
WIDTH = 100  # prose lines wrap here; tables are as wide as their columns
TEXT_LINES = 12  # generated text is shown, not dumped: long outputs are cut here


def _subjects(groups: Sequence[GroupSummary]) -> list[list[GroupSummary]]:
    out: dict[Subject, list[GroupSummary]] = {}
    for g in groups:
        out.setdefault(g.key.subject, []).append(g)
    return list(out.values())


def _title(g: GroupSummary) -> str:
    variant = [g.key.variant] if g.key.variant else []  # e.g. tp2/rank1: one rank
    parts = [g.key.model, g.key.device, g.key.dtype, *variant, machine_label(g.environment)]
    return " · ".join(parts)


def _model_line(g: GroupSummary) -> str:
    m = g.model
    parts = [m.source_kind + (", random weights" if m.random_weights else "")]
    if m.architecture:
        parts.append(m.architecture)
    if m.num_parameters:
        parts.append(f"{count(m.num_parameters)} parameters")
    if m.weight_bytes:
        fmt = f" {m.weight_format}" if m.weight_format else ""
        parts.append(f"{human_bytes(m.weight_bytes)}{fmt}")
    return "model: " + ", ".join(parts)


def _group_heading(g: GroupSummary, what: str) -> str:
    n = f"n={g.n_ok}"
    if g.n_runs != g.n_ok:
        n += f" ok of {g.n_runs}"
    spread = " · median ± MAD" if g.n_ok > 1 else ""
    return f"{what} · cache {g.key.cache} · {n}{spread}"


def _text_block(g: GroupSummary) -> list[str]:
    lines: list[str] = []
    seen: set[str] = set()
    for d in g.decode:
        if not d.text or d.text in seen:
            continue
        seen.add(d.text)
        body = d.text.splitlines() or [""]
        cut = len(body) > TEXT_LINES
        lines.append(f"generated text (batch {d.batch_size}, first sequence):")
        lines += [f"  | {line}" for line in body[:TEXT_LINES]]
        if cut:
            lines.append(f"  | … ({len(body) - TEXT_LINES} more lines)")
    return lines


_NUMBER_UNIT = re.compile(r"(\d) (s|ms|µs|ns|B|kB|MB|GB|TB|GB/s|k|M)(?=\W|$)")
_NBSP = "\u00a0"


def _wrap(text: str, indent: str = "", first: str = "") -> list[str]:
    # Keep a number on the same line as its unit: "1.37 s", never "1.37" / "s".
    glued = _NUMBER_UNIT.sub(lambda m: f"{m[1]}{_NBSP}{m[2]}", text)
    lines = textwrap.wrap(
        glued,
        WIDTH,
        initial_indent=first or indent,
        subsequent_indent=indent,
        break_on_hyphens=False,
    ) or [first]
    return [line.replace(_NBSP, " ") for line in lines]


def native_block(g: GroupSummary) -> list[str]:
    """The user's own load first: its phases, its imports apart, and what differs
    from the staged view (which follows as the clean-boundary explanation)."""
    table = native_phase_table(g)
    if table is None:
        return []
    out = [
        f"native from_pretrained, traced (your own call) · cache {g.key.cache}",
        render_table(table, FMT),
    ]
    lines = [native_imports_line(g), missing_hooks_line(g.runs)]
    gaps = gap_lines(g)
    if gaps:
        lines.append("against the staged view below: " + "; ".join(gaps))
    for line in lines:
        if line:
            out += _wrap(line)
    return [*out, ""]


def render_console(runs: Sequence[RunRecord]) -> str:
    """The terminal view of ``runs`` (any mix of models, devices and cache states)."""
    groups = summarize_runs(runs)
    if not groups:
        return "no runs\n"
    out: list[str] = []
    for subject in _subjects(groups):
        title = _title(subject[0])
        out += [title, "=" * len(title), _model_line(subject[0]), ""]
        for g in subject:
            out += native_block(g)
            if g.stages:
                out += [
                    _group_heading(g, "load stages"),
                    render_table(stage_table(g, compact=True), FMT),
                ]
                for line in (ceilings_line(g), skipped_line(g), import_packages_line(g)):
                    if line:
                        out += _wrap(line)
            else:
                why = "no load stages recorded" if g.n_ok else "no completed repetition"
                out.append(f"{_group_heading(g, 'load stages')}: {why}")
            # With a trace, the measured causes above replace the generic explanation.
            traced = any(r.native is not None and r.native.trace is not None for r in g.runs)
            gap = native_gap_line(g, explain=not traced)
            if gap:
                out += _wrap(gap.replace("`", ""))
            out.append("")
        for cmp in cold_warm_pairs(subject):
            out += [
                f"cold vs warm · {cmp.cold.cache} against {cmp.warm.cache}",
                render_table(cold_warm_table(cmp), FMT),
                "",
            ]
        for g in subject:
            if not g.decode:
                continue
            counts = {d.n_calls for d in g.decode}
            n = counts.pop() if len(counts) == 1 else sum(d.n_calls for d in g.decode)
            calls = f"{n} warm call{'s' if n != 1 else ''}" + (
                " per row" if len(g.decode) > 1 and not counts else ""
            )
            out += [
                f"decode · cache {g.key.cache} · {calls} · latency",
                render_table(decode_table(g, "latency"), FMT),
            ]
            rates = decode_table(g, "rate")
            if len(rates.headers) > 1:  # more than the batch column
                out += [
                    "",
                    f"decode · cache {g.key.cache} · rates, first call against warm calls",
                    render_table(rates, FMT),
                ]
            definitions = decode_definitions(g, detail=False)
            if definitions:
                out += _wrap(definitions)
            out += _text_block(g)
            out.append("")
            out += decode_bounds.console_lines(g, subject)
        shared, own = split_shared([findings(g, brief=True) for g in subject])
        if shared or any(own):
            out.append("notes")
            for item in shared:
                out += _wrap(item.replace("`", ""), "    ", "  - ")
            for g, items in zip(subject, own, strict=True):
                tag = f"[{g.key.cache}] " if len(subject) > 1 else ""
                for item in items:
                    out += _wrap(f"{tag}{item.replace('`', '')}", "    ", "  - ")
            out.append("")
    out += rank_lines(runs, FMT)
    out += placement_lines(runs, FMT)
    if len(_subjects(groups)) > 1:
        fields = varying_fields([g.key for g in groups])
        out += ["across groups", render_table(groups_table(groups, fields), FMT), ""]
    out += [footer_line(env) for env in distinct_environments(groups)]
    return "\n".join(out) + "\n"


def render_diagnosis(lines: Sequence[str]) -> str:
    """The diagnosis after the tables: a heading and one item per line, not wrapped."""
    return "\n".join(["Diagnosis", *(f"  - {line}" for line in lines)])


class ConsoleRenderer:
    """Plain-text tables for a terminal."""

    extension = ".txt"

    def render(self, runs: Sequence[RunRecord]) -> str:
        return render_console(runs)
