"""The markdown report: summary, load stages, cold vs warm, native vs staged, decode,
environment, notes; charts beside it in ``<report stem>_files/``.

:func:`render_markdown` is pure (records in, text out; image paths are given), so
golden files can pin its output. ``report_files.write_report`` draws the charts,
renders, and writes every file atomically.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from profiler.analysis.cold_warm import cold_warm_pairs
from profiler.analysis.grouping import GroupKey, Subject, varying_fields
from profiler.analysis.summaries import GroupSummary, headline_decode, summarize_runs
from profiler.errors import UserError
from profiler.records.run import Environment, RunRecord
from profiler.records.stage import MULTI_RANK_STAGES, OUTSIDE_LOAD, sort_stages
from profiler.render import decode_bounds
from profiler.render.decode_variants import markdown_section as decode_variants_section
from profiler.render.findings import findings, footer_line, native_gap_line, split_shared
from profiler.render.format import (
    MISSING,
    count,
    human_bytes,
    human_seconds,
    human_summary,
    med_spread,
    num,
    time_unit,
)
from profiler.render.overview import (
    attribution_table,
    distinct_environments,
    environment_table,
    groups_table,
    native_table,
)
from profiler.render.placement import placement_lines
from profiler.render.ranks import rank_lines
from profiler.render.tables import (
    cold_warm_table,
    decode_definitions,
    decode_table,
    key_text,
    render_table,
    stage_table,
)
from profiler.render.timeline_plot import timeline_section

FMT = "pipe"


def _fence(text: str) -> str:
    """A fenced block that the text itself cannot close."""
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return f"{ticks}text\n{text}\n{ticks}"


def _subjects(groups: Sequence[GroupSummary]) -> list[list[GroupSummary]]:
    out: dict[Subject, list[GroupSummary]] = {}
    for g in groups:
        out.setdefault(g.key.subject, []).append(g)
    return list(out.values())


def nothing_in_common(groups: Sequence[GroupSummary]) -> bool:
    """True when several subjects share neither a model nor a machine.

    Such runs can be listed side by side, but any difference between them mixes the
    model with the machine: the report says so.
    """
    subjects = _subjects(groups)
    if len(subjects) < 2:
        return False
    models = [s[0].key.model for s in subjects]
    machines = [s[0].key.machine for s in subjects]
    return len(set(models)) == len(models) and len(set(machines)) == len(machines)


def _model_text(g: GroupSummary) -> str:
    m = g.model
    kind = m.source_kind + (", random weights" if m.random_weights else "")
    parts = [f"`{m.spec}` ({kind})"]
    if m.architecture:
        parts.append(m.architecture)
    if m.num_parameters:
        parts.append(f"{count(m.num_parameters)} parameters")
    if m.weight_bytes:
        what = " ".join(x for x in (m.weight_format, m.storage_dtype) if x)
        parts.append(f"{human_bytes(m.weight_bytes)}" + (f" of {what} weights" if what else ""))
    if m.revision:
        parts.append(f"revision {m.revision[:12]}")
    return ", ".join(parts)


def _machine_text(g: GroupSummary) -> str:
    env = g.environment
    text = f"{env.cpu_model} ({env.cpu_count} cores, {human_bytes(env.ram_bytes)} RAM)"
    if env.gpu_name:
        mem = f", {human_bytes(env.gpu_memory_bytes)}" if env.gpu_memory_bytes else ""
        text += f", {env.gpu_name}{mem}"
    return text


def _dates(groups: Sequence[GroupSummary]) -> str:
    firsts = sorted(g.first_created for g in groups if g.first_created)
    lasts = sorted(g.last_created for g in groups if g.last_created)
    if not firsts:
        return MISSING
    return firsts[0] if firsts[0] == lasts[-1] else f"{firsts[0]} to {lasts[-1]}"


def _headlines(subject: Sequence[GroupSummary]) -> list[str]:
    """One line per headline figure of one subject (model, device, dtype, machine)."""
    lines = []
    for g in subject:
        if g.staged_total is None:
            continue
        temp = g.key.cache
        name = {"cold": "Cold load", "warm": "Warm load"}.get(temp, f"Load ({temp})")
        text = f"{human_summary(g.load_total)} for the load alone"
        if (
            g.staged_total is not None
            and g.load_total is not None
            and g.staged_total.median != g.load_total.median
        ):
            text += f"; {human_seconds(g.staged_total.median)} from process start"
        if g.native_total is not None:
            text += f"; native `from_pretrained` {human_summary(g.native_total)}"
        lines.append(f"**{name}:** {text}")
    # Decode figures are quoted from the warmest group that has decode: the page
    # cache does not matter once the weights are in memory.
    with_decode = [g for g in subject if g.decode]
    if with_decode:
        g = with_decode[-1]
        d = headline_decode(g)
        if d is not None and d.figures.ttft is not None:
            tu = time_unit([d.figures.ttft.median])
            lines.append(
                f"**TTFT:** {med_spread(d.figures.ttft, tu)} {tu.name} (batch {d.batch_size}, "
                f"{d.prompt_tokens}-token prompt, warm calls)"
            )
        rates = []
        if d is not None and d.figures.tokens_per_s_seq is not None and d.figures.step:
            su = time_unit([d.figures.step.median])
            rates.append(
                f"{num(d.figures.tokens_per_s_seq)} tokens/s per sequence at batch "
                f"{d.batch_size} (step {med_spread(d.figures.step, su)} {su.name})"
            )
        best = max(
            (x for x in g.decode if x.figures.tokens_per_s_batch is not None),
            key=lambda x: x.figures.tokens_per_s_batch or 0.0,
            default=None,
        )
        if best is not None and best.batch_size != (d.batch_size if d else None):
            rates.append(
                f"{num(best.figures.tokens_per_s_batch)} tokens/s in all at batch {best.batch_size}"
            )
        if rates:
            lines.append("**Tokens/s:** " + "; ".join(rates))
    return lines


def _summary(groups: Sequence[GroupSummary], fields: Sequence[str]) -> list[str]:
    subjects = _subjects(groups)
    g0 = groups[0]
    shared = {"model", "device", "dtype", "variant", "machine"} - set(fields)
    lines = []
    if "model" in shared:
        lines.append(f"**Model:** {_model_text(g0)}")
    if "dtype" in shared:
        lines.append(
            f"**dtype:** {g0.key.dtype}"
            + (f" (requested {g0.runs[0].dtype_requested})" if g0.runs else "")
        )
    if "device" in shared:
        lines.append(f"**Device:** {g0.key.device}")
    if "variant" in shared and g0.key.variant:
        lines.append(f"**Variant:** {g0.key.variant}")
    if "machine" in shared:
        lines.append(f"**Machine:** {_machine_text(g0)}")
    versions = list(dict.fromkeys(v for g in groups for v in g.tool_versions))
    lines.append(f"**Tool:** llmprof {', '.join(versions) or MISSING}")
    lines.append(f"**Date:** {_dates(groups)}")
    n_runs = sum(g.n_runs for g in groups)
    lines.append(f"**Runs:** {n_runs} in {len(groups)} group{'s' if len(groups) > 1 else ''}")
    out = [f"- {line}" for line in lines]
    if len(subjects) == 1:
        out += [f"- {line}" for line in _headlines(subjects[0])]
    else:
        out += [
            "",
            "Groups differ in " + ", ".join(fields) + ". Medians ± MAD; TTFT and tokens/s "
            "are warm calls at the smallest batch size measured.",
            "",
            render_table(groups_table(groups, fields), FMT),
        ]
        if "model" in fields:
            out += [
                "",
                *[
                    f"- {_model_text(s[0])}"
                    for s in subjects
                    if s is subjects[0] or s[0].key.model != subjects[0][0].key.model
                ],
            ]
    return out


def _subject_title(g: GroupSummary, fields: Sequence[str]) -> str:
    """A subject (model, device, dtype, machine) named by the fields that vary."""
    return key_text(g.key, [f for f in fields if f != "cache"], g.environment)


def _state_heading(g: GroupSummary) -> str:
    n = f"n={g.n_ok}" + (f" of {g.n_runs}" if g.n_runs != g.n_ok else "")
    return f"cache {g.key.cache} ({n})"


def _per_group(
    groups: Sequence[GroupSummary], fields: Sequence[str], body: Callable[[GroupSummary], list[str]]
) -> list[str]:
    """Sections per group: under a subject heading when several subjects are shown."""
    out: list[str] = []
    several = len(_subjects(groups)) > 1
    for subject in _subjects(groups):
        sections = [(g, body(g)) for g in subject]
        sections = [(g, lines) for g, lines in sections if lines]
        if not sections:
            continue
        if several:
            out += [f"### {_subject_title(subject[0], fields)}", ""]
        level = "####" if several else "###"
        for g, lines in sections:
            out += [f"{level} {_state_heading(g)}", "", *lines]
    return out


def _image(images: Mapping[str, str], key: str, alt: str) -> list[str]:
    return [f"![{alt}]({images[key]})", ""] if key in images else []


def _decode_section(
    groups: Sequence[GroupSummary], fields: Sequence[str], images: Mapping[str, str]
) -> list[str]:
    """The "Decode" section: one table per group, its definitions, text and charts."""
    if not any(g.decode for g in groups):
        return []
    index = {id(g): i for i, g in enumerate(groups)}
    out = [
        "## Decode",
        "",
        "Warm `generate()` calls. TTFT is prefill plus the first token; p50/p90/p99 "
        "and max are token-to-token latencies inside one call; first is the process's "
        "first call. Step, tok/s and MBU are defined under each table.",
        "",
    ]

    def decode_body(g: GroupSummary) -> list[str]:
        if not g.decode:
            return []
        lines = [render_table(decode_table(g), FMT), ""]
        definitions = decode_definitions(g)
        if definitions:
            lines += [definitions + ".", ""]
        for text in dict.fromkeys(d.text for d in g.decode if d.text):
            batch = next(d.batch_size for d in g.decode if d.text == text)
            lines += [f"Generated text (batch {batch}, first sequence):", "", _fence(text), ""]
        lines += _image(
            images, f"token_latency/{index[id(g)]}", "Per-token latency by generated position"
        )
        return lines

    out += _per_group(groups, fields, decode_body)
    out += _image(images, "throughput", "Decode tokens/s against batch size")
    return out


def render_markdown(
    runs: Sequence[RunRecord],
    *,
    title: str | None = None,
    images: Mapping[str, str] | None = None,
    skipped: Sequence[tuple[str, str]] = (),
) -> str:
    """The report as markdown text.

    ``images`` maps chart keys (see :func:`profiler.render.plots.planned_images`) to
    paths relative to the report; ``skipped`` lists (file, reason) left out.
    """
    images = images or {}
    groups = summarize_runs(runs)
    if not groups:
        raise UserError("no runs to report: pass llmprof JSON result files or folders")
    keys = [g.key for g in groups]
    fields = varying_fields(keys)
    if title is None:
        models = list(dict.fromkeys(k.model for k in keys))
        title = "llmprof report: " + ", ".join(models)
    envs = distinct_environments(groups)
    out: list[str] = [f"# {title}", "", "## Summary", "", *_summary(groups, fields), ""]
    out += rank_lines(runs, FMT, heading="## ")
    out += placement_lines(runs, FMT, heading="## ")
    out += _load_section(groups, fields, images)
    out += _cold_warm_section(groups, fields)
    out += _native_section(groups, fields)
    out += timeline_section(runs, images)
    out += _decode_section(groups, fields, images)
    out += decode_bounds.markdown_section(groups, images)
    out += decode_variants_section(runs)
    out += ["## Environment", "", render_table(environment_table(envs), FMT), ""]
    out += _notes_section(groups, fields, skipped)
    out += ["---", ""]
    out += [f"*{footer_line(env)}*  " for env in envs]
    out[-1] = out[-1].rstrip()
    return "\n".join(out) + "\n"


def _outside_load(groups: Sequence[GroupSummary]) -> list[str]:
    """The stages a load total leaves out; multi-rank ones only where runs have them."""
    present = {s.name for g in groups for s in g.stages}
    return [n for n in OUTSIDE_LOAD if n not in MULTI_RANK_STAGES or n in present]


def _load_section(
    groups: Sequence[GroupSummary], fields: Sequence[str], images: Mapping[str, str]
) -> list[str]:
    if not any(g.stages for g in groups):
        return []
    out = [
        "## Load stages",
        "",
        "Each stage of the load timed on its own (staged view). Cells are median ± MAD "
        "over the repetitions; share is of the staged total (every stage, process start "
        "included); the load total leaves out "
        + ", ".join(f"`{n}`" for n in sort_stages(_outside_load(groups)))
        + ", which a process pays before any load. Bytes are what the stage moved; "
        "RSS after is split into anonymous memory and file-backed pages (mmap'd "
        "weights).",
        "",
    ]

    def stages_body(g: GroupSummary) -> list[str]:
        if not g.stages:
            why = "No load stages recorded." if g.n_ok else "No completed repetition."
            return [why, ""]
        return [render_table(stage_table(g), FMT), ""]

    out += _per_group(groups, fields, stages_body)
    return out + _image(images, "load_stages", "Load stages, stacked, per cache state")


def _cold_warm_section(groups: Sequence[GroupSummary], fields: Sequence[str]) -> list[str]:
    pairs = cold_warm_pairs(groups)
    if not pairs:
        return []
    out = [
        "## Cold vs warm",
        "",
        "Same model, device, dtype and machine; only the cache state differs. "
        "cold − warm is the cost of reading from storage; cold / warm the factor.",
        "",
    ]
    others = [f for f in fields if f != "cache"]
    for cmp in pairs:
        env = _env_of(groups, cmp.cold)
        subject = f"{key_text(cmp.cold, others, env)}: " if others else ""
        out += [
            f"### {subject}{cmp.cold.cache} vs {cmp.warm.cache}",
            "",
            render_table(cold_warm_table(cmp), FMT),
            "",
        ]
    return out


def _native_section(groups: Sequence[GroupSummary], fields: Sequence[str]) -> list[str]:
    native = [g for g in groups if g.native_total is not None]
    if not native:
        return []
    out = [
        "## Native vs staged",
        "",
        "The native view times a plain `from_pretrained` (and `.to()`) as a user "
        "calls it, in a process that has already imported its libraries; it is set "
        "against the staged load total, which leaves process start out too. A gap is "
        "a finding: native faster means from_pretrained overlaps or threads work the "
        "staged view serializes; native slower means framework overhead outside the "
        "stages.",
        "",
        render_table(native_table(native, fields), FMT),
        "",
    ]
    for g in native:
        line = native_gap_line(g, explain=len(native) == 1)
        if line:
            out.append(f"- {key_text(g.key, fields, g.environment)}: {line}")
    out.append("")
    counters = attribution_table(native, fields)
    if counters is not None:
        out += [
            "Counters measured during the native load (medians):",
            "",
            render_table(counters, FMT),
            "",
        ]
    return out


def _notes_section(
    groups: Sequence[GroupSummary], fields: Sequence[str], skipped: Sequence[tuple[str, str]]
) -> list[str]:
    out = ["## Notes and warnings", ""]
    if nothing_in_common(groups):
        out += [
            "- These runs share no model and no machine: groups are listed side by side, "
            "and any difference between them mixes model and machine.",
            "",
        ]
    shared, own = split_shared([findings(g) for g in groups])
    own_by_group = {id(g): items for g, items in zip(groups, own, strict=True)}
    if shared:
        out += ["### All groups", "", *[f"- {item}" for item in shared], ""]
    out += _per_group(
        groups,
        fields,
        lambda g: [*[f"- {i}" for i in own_by_group[id(g)]], ""] if own_by_group[id(g)] else [],
    )
    if skipped:
        out += ["### Files left out", ""]
        out += [f"- `{path}`: {reason}" for path, reason in skipped]
        out.append("")
    if out == ["## Notes and warnings", ""]:
        out += ["Nothing to report.", ""]
    return out


def _env_of(groups: Sequence[GroupSummary], key: GroupKey) -> Environment | None:
    return next((g.environment for g in groups if g.key == key), None)


class MarkdownRenderer:
    """The markdown report as text, without charts (``report_files.write_report`` adds those)."""

    extension = ".md"

    def __init__(self, title: str | None = None) -> None:
        self.title = title

    def render(self, runs: Sequence[RunRecord]) -> str:
        return render_markdown(runs, title=self.title)


def images_folder(out_path: str | os.PathLike[str]) -> Path:
    """Where a report's charts go: ``<stem>_files/`` beside the markdown file."""
    p = Path(out_path)
    return p.with_name(f"{p.stem}_files")


__all__ = [
    "MarkdownRenderer",
    "images_folder",
    "nothing_in_common",
    "render_markdown",
]
