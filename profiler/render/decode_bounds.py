"""What bounds a decode step, rendered: step attribution and energy, the prompt-length
sweep (table and chart), the model's anatomy, and the noise verdict.

Figures come from :mod:`profiler.analysis.decode_metrics` (one definition of each),
:mod:`profiler.analysis.anatomy` and :mod:`profiler.analysis.decode_noise`; this module
lays them out for the console and the markdown report alike.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from profiler.analysis.anatomy import anatomy_shares
from profiler.analysis.decode_metrics import (
    decode_energy,
    decode_figures,
    group_by_shape,
    matmul_rate,
    prefill_mfu,
    step_attribution,
)
from profiler.analysis.decode_noise import decode_noise
from profiler.analysis.energy import stage_energy
from profiler.analysis.step_text import SHORT_BOUNDS, noise_line
from profiler.analysis.summaries import GroupSummary
from profiler.records.decode import DecodeRecord
from profiler.render.format import MISSING, count, human_bytes, num, percent
from profiler.render.tables import Column, Table, make_table, render_table

SWEEP_CHART = "prompt_sweep.png"


def _shapes(g: GroupSummary) -> list[list[DecodeRecord]]:
    return group_by_shape(d for r in g.runs if r.status == "ok" for d in r.decode)


def _ms(seconds: float | None) -> str:
    return MISSING if seconds is None else num(seconds * 1e3)


def step_table(g: GroupSummary) -> Table | None:
    """Per decode shape: the warm step split into floor, busy above it and idle, the
    launches per step and the energy; None when no shape was profiled."""
    rows = []
    for recs in _shapes(g):
        f = decode_figures(recs)
        a = step_attribution(recs, f)
        e = decode_energy(recs)
        prof = [d.step_profile for d in recs if d.step_profile is not None]
        if a is None and e is None:
            continue
        launches = prof[0].launches_per_step if prof else None
        rows.append((f, a, e, launches))
    if not rows:
        return None
    gpu = g.key.device.startswith("cuda")
    return make_table(
        [
            Column("batch", tuple(str(f.batch_size) for f, _, _, _ in rows)),
            Column("prompt (tok)", tuple(str(f.prompt_tokens) for f, _, _, _ in rows)),
            Column("step (ms)", tuple(_ms(a.step_s if a else None) for _, a, _, _ in rows)),
            Column(
                "GPU busy (ms)" if gpu else "in ops (ms)",
                tuple(_ms(a.busy_s if a else None) for _, a, _, _ in rows),
            ),
            Column("floor (ms)", tuple(_ms(a.floor_s if a else None) for _, a, _, _ in rows)),
            Column(
                "above floor (ms)",
                tuple(_ms(a.above_floor_s if a else None) for _, a, _, _ in rows),
            ),
            Column(
                "GPU idle (ms)" if gpu else "outside ops (ms)",
                tuple(_ms(a.idle_s if a else None) for _, a, _, _ in rows),
            ),
            Column(
                "launches/step" if gpu else "ops/step",
                tuple(f"{round(n):,}" if n is not None else MISSING for _, _, _, n in rows),
            ),
            Column(
                "bound",
                tuple(SHORT_BOUNDS[(a.bound, gpu)] if a else MISSING for _, a, _, _ in rows),
                "left",
            ),
            Column(
                "J/token",
                tuple(num(e.joules_per_token) if e else MISSING for _, _, e, _ in rows),
                show=any(e for _, _, e, _ in rows),
            ),
            Column(
                "power (W)",
                tuple(num(e.mean_power_w) if e else MISSING for _, _, e, _ in rows),
                show=any(e for _, _, e, _ in rows),
            ),
        ]
    )


def sweep_table(g: GroupSummary) -> Table | None:
    """TTFT, prefill MFU (against the matmul rate in the run's dtype) and the warm step
    per prompt length, when the group holds more than one length at a batch size."""
    shapes = _shapes(g)
    if len({recs[0].prompt_tokens for recs in shapes}) < 2:
        return None
    params = g.model.num_parameters
    rows = []
    for recs in shapes:
        f = decode_figures(recs)
        rate = matmul_rate(recs)
        mfu = None
        if f.ttft and f.ttft.median > 0 and rate and params:
            mfu = prefill_mfu(params, f.prompt_tokens, f.batch_size, f.ttft.median, rate[0])
        rows.append((f, mfu))
    return make_table(
        [
            Column("batch", tuple(str(f.batch_size) for f, _ in rows)),
            Column("prompt (tok)", tuple(str(f.prompt_tokens) for f, _ in rows)),
            Column("TTFT (ms)", tuple(_ms(f.ttft.median if f.ttft else None) for f, _ in rows)),
            Column(
                "prefill MFU (%)", tuple(percent(m) if m is not None else MISSING for _, m in rows)
            ),
            Column("step (ms)", tuple(_ms(f.step.median if f.step else None) for f, _ in rows)),
            Column(
                "tok/s (seq)",
                tuple(num(f.tokens_per_s_seq) if f.tokens_per_s_seq else MISSING for f, _ in rows),
            ),
            Column(
                "MBU (%)", tuple(percent(f.mbu) if f.mbu is not None else MISSING for f, _ in rows)
            ),
        ]
    )


def anatomy_table(g: GroupSummary) -> Table | None:
    """Bytes by module group, with their share of the load and of a decode step's reads
    (at the first decode shape, KV cache included)."""
    anatomy = g.model.anatomy
    if anatomy is None or not anatomy.groups:
        return None
    shapes = _shapes(g)
    per_step = decode_figures(shapes[0]).bytes_per_step if shapes else None
    rows = anatomy_shares(anatomy, per_step)
    return make_table(
        [
            Column("group", tuple(r.name for r in rows), "left"),
            Column("params", tuple(count(r.params) if r.params is not None else "" for r in rows)),
            Column("bytes", tuple(human_bytes(r.load_bytes) if r.load_bytes else "" for r in rows)),
            Column(
                "of load (%)",
                tuple(percent(r.load_share) if r.load_share is not None else "" for r in rows),
            ),
            Column(
                "read per step",
                tuple(human_bytes(r.step_bytes) if r.step_bytes else "0" for r in rows),
            ),
            Column(
                "of step (%)",
                tuple(percent(r.step_share) if r.step_share is not None else "" for r in rows),
                show=per_step is not None,
            ),
        ]
    )


def energy_notes(g: GroupSummary) -> list[str]:
    """Why energy is missing, once per distinct reason (empty when it was measured)."""
    notes = [
        d.energy_note
        for recs in _shapes(g)
        if decode_energy(recs) is None
        for d in recs
        if d.energy_note
    ]
    return list(dict.fromkeys(notes))


def noise_lines(g: GroupSummary) -> list[str]:
    """The noise verdict of each decode shape that is noisy, one line each."""
    out = []
    for recs in _shapes(g):
        n = decode_noise(recs, g.environment.cpu_count)
        line = noise_line(n) if n is not None else None
        if line:
            out.append(f"batch {recs[0].batch_size}, prompt {recs[0].prompt_tokens}: {line}")
    return out


def stage_energy_table(g: GroupSummary) -> Table | None:
    """Joules and mean power per load stage (NVML), None when no stage has energy."""
    rows = stage_energy([r for r in g.runs if r.status == "ok"])
    if not rows:
        return None
    return make_table(
        [
            Column("stage", tuple(e.name for e in rows), "left"),
            Column("energy (J)", tuple(num(e.joules) for e in rows)),
            Column(
                "mean power (W)",
                tuple(num(e.mean_power_w) if e.mean_power_w else MISSING for e in rows),
            ),
        ]
    )


def tables_of(g: GroupSummary, anatomy: bool = True) -> list[tuple[str, Table]]:
    """The titled tables of one group; ``anatomy`` False leaves the model's anatomy out
    (it is the same for every group of one model: shown once)."""
    named = [
        ("step attribution and energy (warm step = floor + above floor + idle)", step_table(g)),
        ("prompt-length sweep", sweep_table(g)),
        (
            "model anatomy (unique tensors; tied weights once)",
            anatomy_table(g) if anatomy else None,
        ),
        ("load energy by stage (whole GPU, NVML)", stage_energy_table(g)),
    ]
    return [(title, t) for title, t in named if t is not None]


def _shows_anatomy(g: GroupSummary, groups: Sequence[GroupSummary]) -> bool:
    """Anatomy is shown with the last group of its model that has decode."""
    same = [x for x in groups if x.key.model == g.key.model and x.decode]
    return bool(same) and same[-1] is g


def console_lines(g: GroupSummary, groups: Sequence[GroupSummary] = ()) -> list[str]:
    """The tables for the terminal (empty when there is nothing; noise is a finding);
    ``groups`` (all shown) lets the anatomy appear once per model."""
    out: list[str] = []
    for title, t in tables_of(g, _shows_anatomy(g, groups) if groups else True):
        out += [f"decode · {title}", render_table(t, "simple"), ""]
    return out


def markdown_section(groups: Sequence[GroupSummary], images: Mapping[str, str]) -> list[str]:
    """The report's "What bounds a decode step" section (empty when nothing to show)."""
    out: list[str] = []
    for g in groups:
        tables = tables_of(g, _shows_anatomy(g, groups))
        if not tables:
            continue
        out += [f"### {g.key.model} · {g.key.cache}", ""] if len(groups) > 1 else []
        for title, t in tables:
            out += [f"**{title[0].upper()}{title[1:]}**", "", render_table(t, "pipe"), ""]
        out += [f"{note[0].upper()}{note[1:]}." for note in energy_notes(g)]
        out += [""] if energy_notes(g) else []
    if not out:
        return []
    head = [
        "## What bounds a decode step",
        "",
        "Busy and idle times come from the torch profiler on extra untimed calls; the "
        "step is the timed warm step. Floor: the larger of bytes per step / memory "
        "bandwidth and the step's matmul FLOPs / the matmul rate measured in the run's "
        "dtype.",
        "",
    ]
    chart = images.get("prompt_sweep")
    tail = [f"![Per-token latency as the KV cache grows]({chart})", ""] if chart else []
    return head + out + tail


def sweep_series(g: GroupSummary) -> list[tuple[int, list[int], list[float]]]:
    """Per prompt length (batch 1 first): context positions and the warm median interval."""
    out = []
    for d in g.decode:
        if d.warm_by_position_s:
            positions = [d.prompt_tokens + i + 1 for i in range(len(d.warm_by_position_s))]
            out.append((d.prompt_tokens, positions, list(d.warm_by_position_s)))
    return out


def write_sweep_chart(
    groups: Sequence[GroupSummary], folder: str | os.PathLike[str]
) -> dict[str, Path]:
    """The per-token latency against the context position, one line per prompt length,
    for the last group that swept prompt lengths; {} when none did."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from profiler.render.plots import DPI, WIDTH_IN, save_png

    swept = [g for g in groups if len({d.prompt_tokens for d in g.decode}) > 1]
    if not swept:
        stale = Path(folder) / SWEEP_CHART  # an earlier report's chart this one lacks
        if stale.is_file():
            stale.unlink()
        return {}
    fig = Figure(figsize=(WIDTH_IN, 3.6), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for prompt, pos, lat in sweep_series(swept[-1]):
        ax.plot(pos, [x * 1e3 for x in lat], label=f"prompt {prompt} tokens", lw=1.2)
    ax.set_xlabel("context position (prompt + generated tokens)")
    ax.set_ylabel("latency (ms/token)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"Per-token latency as the KV cache grows · {swept[-1].key.model}", fontsize=10)
    return {"prompt_sweep": save_png(fig, Path(folder) / SWEEP_CHART)}
