"""What a report says in words about a group: warnings, notes, the native gap, the footer.

Shared by the console and the markdown report, so both say the same thing about the
same runs; each item is one sentence built from a group summary's figures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from profiler.analysis.decode_text import hook_overhead_line
from profiler.analysis.summaries import GroupSummary, native_gap
from profiler.records.run import Environment
from profiler.render.decode_bounds import noise_lines
from profiler.render.format import human_seconds, human_summary, percent


def split_shared(per_group: Sequence[Sequence[str]]) -> tuple[list[str], list[list[str]]]:
    """Items every group has (said once) and each group's own remaining items."""
    if len(per_group) < 2:
        return [], [list(items) for items in per_group]
    shared = [i for i in per_group[0] if all(i in other for other in per_group[1:])]
    return shared, [[i for i in items if i not in shared] for items in per_group]


def footer_line(env: Environment) -> str:
    """Build and hardware identity, the way a benchmark table is signed."""
    parts = [f"llmprof {env.tool_version or '?'}", f"{env.cpu_model} ({env.cpu_count} cores)"]
    if env.gpu_name:
        gpu = env.gpu_name
        if env.gpu_driver:
            gpu += f", driver {env.gpu_driver}"
        if env.cuda:
            gpu += f", CUDA {env.cuda}"
        parts.append(gpu)
    for name in ("torch", "transformers"):
        v = getattr(env, name)
        if v:
            parts.append(f"{name} {v}")
    parts.append(f"Python {env.python}")
    return " · ".join(parts)


def native_gap_line(group: GroupSummary, *, explain: bool = True) -> str | None:
    """Staged total against native total in one sentence; the gap is a finding.

    ``explain`` adds the likely causes (a report listing many groups says them once).
    """
    gap = native_gap(group)
    if gap is None:
        return None
    diff, frac = gap
    head = (
        f"staged load total (startup excluded) {human_summary(group.load_total)} vs "
        f"native `from_pretrained` {human_summary(group.native_total)}"
    )
    if not math.isfinite(frac) or abs(frac) < 0.02:
        return f"{head}: they agree within 2%."
    if diff < 0:
        why = (
            "; the staged view runs one stage at a time, while from_pretrained may "
            "overlap reading with building, or use more threads."
        )
        return f"{head}: native is {human_seconds(-diff)} ({percent(-frac)}%) faster" + (
            why if explain else "."
        )
    why = "; time goes outside the staged stages (framework checks, hooks, bookkeeping)."
    return f"{head}: native is {human_seconds(diff)} ({percent(frac)}%) slower" + (
        why if explain else "."
    )


def findings(group: GroupSummary, brief: bool = False) -> list[str]:
    """Notes and warnings about one group, most important first.

    ``brief`` (the terminal) keeps warnings and leaves out the explanatory notes of
    stages and decode records, which the JSON and the markdown report carry."""
    out: list[str] = []
    res = group.residency_before
    temp = group.key.cache
    if group.unverified_cold_runs:
        frac = f"{percent(res.median)}%" if res else "an unknown part"
        out.append(
            f"not cold: {group.unverified_cold_runs} of {group.n_runs} runs asked for a cold "
            f"page cache but {frac} of the weight bytes were resident before the load "
            "(mincore); their load partly read from memory."
        )
    elif "uncontrolled" in temp:
        frac = f"; {percent(res.median)}% of the weight bytes were resident before" if res else ""
        out.append(f"page cache not controlled{frac}: times sit between cold and warm.")
    for f in group.failed:
        code = f"exit {f.exit_code}" if f.exit_code is not None else "no exit status"
        last = (f.error or "no error text").strip().splitlines()
        tail = " / ".join(line.strip() for line in last[-2:]) if last else "no error text"
        out.append(f"repetition {f.repetition} {f.status} ({code}): {tail}")
    for s in group.stages:
        if s.skipped_reason is not None and not brief:
            out.append(
                f"stage `{s.name}` {'/'.join(k for k in s.statuses if k != 'ok')}: "
                f"{s.skipped_reason}"
            )
    for item in group.unattributed if not brief else ():
        out.append(f"native view, not attributed: {item}")
    for s in group.stages:
        t = s.time
        if t is not None and t.n >= 3 and t.median > 1e-3 and t.spread > 0.1 * t.median:
            out.append(
                f"stage `{s.name}` is noisy: its spread (MAD) is "
                f"{percent(t.spread / t.median, 0)}% of its median over n={t.n}."
            )
    swept = len({d.prompt_tokens for d in group.decode}) > 1  # --prompt-tokens 32,512,...
    for d in group.decode:
        tag = f"decode batch {d.batch_size}" + (f", prompt {d.prompt_tokens}" if swept else "")
        if d.hook is not None:
            out.append(f"{tag}: {hook_overhead_line(d.hook)}")
        if d.figures.mbu is not None and not d.figures.kv_counted:
            out.append(
                f"{tag}: MBU counts weight bytes only (KV-cache size unknown), a lower bound."
            )
        for n in d.notes if not brief else ():
            out.append(f"{tag}: {n}")
    out.extend(f"decode {line}" for line in noise_lines(group))  # bimodal or wide spread
    if group.n_runs == 1:
        out.append("one repetition: no spread; repeat the run for medians.")
    if len(group.tool_versions) > 1:
        out.append(
            f"repetitions come from several llmprof versions: {', '.join(group.tool_versions)}."
        )
    if group.model.random_weights:
        out.append(
            "random weights (synthetic model): load and decode times are real, "
            "the generated text is meaningless."
        )
    for s in group.stages if not brief else ():
        for n in s.notes:
            out.append(f"`{s.name}`: {n}")
    out.extend(group.notes)
    return list(dict.fromkeys(out))
