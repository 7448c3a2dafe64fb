"""Charts for the markdown report: load stages, per-token latency, throughput.

The data behind each chart comes from a pure function (:func:`stage_bars`,
:func:`latency_series`, :func:`throughput_series`) that tests check directly; the
``*_figure`` functions only draw it. matplotlib is imported inside the functions and
figures are drawn on the Agg canvas, without pyplot's global state. Files are
written to a temporary name and renamed, so a chart is either whole or absent.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from profiler.analysis.grouping import Subject, machine_label, varying_fields
from profiler.analysis.summaries import GroupSummary
from profiler.records.io import write_atomic
from profiler.records.stage import OUTSIDE_LOAD, STAGE_ORDER, sort_stages
from profiler.render.format import human_seconds

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 110
WIDTH_IN = 9.0


@dataclass(frozen=True)
class Segment:
    """One stage inside a stacked bar: where it starts and how long it lasts (seconds)."""

    stage: str
    start_s: float
    width_s: float


@dataclass(frozen=True)
class StageBar:
    label: str
    segments: tuple[Segment, ...]

    @property
    def total_s(self) -> float:
        return sum(s.width_s for s in self.segments)


@dataclass(frozen=True)
class LatencySeries:
    """Per-token latency of one decode shape along the generated position.

    ``positions`` number the generated tokens: interval ``i`` ends at token
    ``i + 2`` (token 1 is the first token, whose latency is the TTFT).
    """

    label: str
    batch_size: int
    positions: tuple[int, ...]
    first_s: tuple[float, ...]
    warm_s: tuple[float, ...]
    p50_s: float | None
    p99_s: float | None
    ttft_warm_s: float | None
    ttft_first_s: float | None


@dataclass(frozen=True)
class ThroughputSeries:
    label: str
    batch_sizes: tuple[int, ...]
    tokens_per_s: tuple[float, ...]  # whole batch, median over warm calls
    tokens_per_s_seq: tuple[float, ...]


# --------------------------------------------------------------------- chart data


def chart_label(
    group: GroupSummary, fields: Sequence[str], *, cache: bool = True, sep: str = " · "
) -> str:
    """A short name for a group on a chart: the model's last path part, varying fields.

    With ``sep="\\n"`` the subject and the cache state go on separate lines.
    """
    parts = []
    for f in fields:
        if f == "cache":
            continue
        if f == "model":
            parts.append(group.key.model.rsplit("/", 1)[-1])
        elif f == "machine":
            parts.append(machine_label(group.environment))
        else:
            parts.append(str(getattr(group.key, f)))
    subject = " · ".join(parts)
    if not cache:
        return subject or group.key.model.rsplit("/", 1)[-1]
    if not subject:
        return group.key.cache
    return f"{subject}{sep}{group.key.cache}"


def common_title(groups: Sequence[GroupSummary], what: str) -> str:
    """A chart title naming what all groups share (model, device, dtype)."""
    fields = varying_fields([g.key for g in groups])
    g = groups[0]
    parts = [what]
    if "model" not in fields:
        parts.append(g.key.model.rsplit("/", 1)[-1])
    if "device" not in fields:
        parts.append(g.key.device)
    if "dtype" not in fields:
        parts.append(g.key.dtype)
    return " · ".join(parts)


def decode_representatives(groups: Sequence[GroupSummary]) -> list[int]:
    """Per subject, the index of the group whose decode the charts show.

    Decode runs after the load, so the page-cache state of the load does not change
    it; one group per subject (the last one with decode: warm before uncontrolled
    comes last in group order) avoids drawing the same curves twice.
    """
    chosen: dict[Subject, int] = {}
    for i, g in enumerate(groups):
        if g.decode:
            chosen[g.key.subject] = i
    return sorted(chosen.values())


def stage_bars(groups: Sequence[GroupSummary]) -> list[StageBar]:
    """One bar per group with completed stages; one segment per ok stage (median time)."""
    fields = varying_fields([g.key for g in groups])
    bars = []
    for g in groups:
        segments = []
        at = 0.0
        for s in g.stages:
            if s.time is None:
                continue
            segments.append(Segment(s.name, at, s.time.median))
            at += s.time.median
        if segments:
            bars.append(StageBar(chart_label(g, fields, sep="\n"), tuple(segments)))
    return bars


def latency_series(group: GroupSummary, label: str) -> list[LatencySeries]:
    """One series per decode shape of the group that has per-token intervals."""
    out = []
    for d in group.decode:
        n = max(len(d.first_by_position_s), len(d.warm_by_position_s))
        if n == 0:
            continue
        out.append(
            LatencySeries(
                label=label,
                batch_size=d.batch_size,
                positions=tuple(range(2, n + 2)),
                first_s=d.first_by_position_s,
                warm_s=d.warm_by_position_s,
                p50_s=d.figures.interval.median if d.figures.interval else None,
                p99_s=d.figures.interval.p99 if d.figures.interval else None,
                ttft_warm_s=d.figures.ttft.median if d.figures.ttft else None,
                ttft_first_s=d.first_ttft.median if d.first_ttft else None,
            )
        )
    return out


def throughput_series(groups: Sequence[GroupSummary]) -> list[ThroughputSeries]:
    """Tokens/s against batch size, one series per subject measured at two batch sizes
    or more (see :func:`decode_representatives`)."""
    fields = varying_fields([g.key for g in groups])
    out = []
    for g in (groups[i] for i in decode_representatives(groups)):
        points = [
            (d.batch_size, f.tokens_per_s_batch, f.tokens_per_s_seq)
            for d in g.decode
            if (f := d.figures).tokens_per_s_batch is not None and f.tokens_per_s_seq is not None
        ]
        if len({b for b, _, _ in points}) < 2:
            continue
        points.sort()
        out.append(
            ThroughputSeries(
                chart_label(g, fields, cache=False),
                tuple(p[0] for p in points),
                tuple(p[1] for p in points),
                tuple(p[2] for p in points),
            )
        )
    return out


def planned_images(groups: Sequence[GroupSummary]) -> dict[str, str]:
    """The charts a report of these groups gets: key -> file name (no drawing)."""
    out: dict[str, str] = {}
    if stage_bars(groups):
        out["load_stages"] = "load_stages.png"
    n = 0
    for i in decode_representatives(groups):
        if latency_series(groups[i], ""):
            n += 1
            out[f"token_latency/{i}"] = f"token_latency_{n}.png"
    if throughput_series(groups):
        out["throughput"] = "throughput.png"
    return out


# ------------------------------------------------------------------------- drawing


def _new_figure(height_in: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH_IN, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def stage_colors(names: Sequence[str]) -> dict[str, tuple[float, float, float, float]]:
    """A fixed colour per stage name: the same in every bar and in every report.

    Known stages take their place in the pipeline order (records.STAGE_ORDER);
    others follow it, in the order given.
    """
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    extra = [n for n in sort_stages(names) if n not in STAGE_ORDER]
    slot = {n: i for i, n in enumerate([*STAGE_ORDER, *extra])}
    return {n: cmap(slot[n] % 20) for n in names}


def load_stages_figure(bars: Sequence[StageBar], title: str = "Load stages") -> Figure:
    """Stacked horizontal bars: one bar per cache state / group, one segment per stage."""
    names = [s.stage for b in bars for s in b.segments]
    colors = stage_colors(names)
    lines = max((b.label.count("\n") + 1 for b in bars), default=1)
    fig = _new_figure(1.8 + (0.35 + 0.25 * lines) * len(bars))
    ax = fig.add_subplot()
    ys = list(range(len(bars)))
    drawn: set[str] = set()
    for y, bar in zip(ys, bars, strict=True):
        for seg in bar.segments:
            label = seg.stage if seg.stage not in drawn else None
            drawn.add(seg.stage)
            ax.barh(
                y,
                seg.width_s,
                left=seg.start_s,
                height=0.6,
                color=colors[seg.stage],
                edgecolor="white",
                linewidth=0.6,
                # Hatched: process start, which the load total leaves out.
                hatch="///" if seg.stage in OUTSIDE_LOAD else None,
                label=label,
            )
        ax.text(bar.total_s, y, f"  {human_seconds(bar.total_s)}", va="center", fontsize=9)
    ax.set_yticks(ys, [b.label for b in bars])
    ax.invert_yaxis()  # first group on top, as in the tables
    longest = max((b.total_s for b in bars), default=1.0)
    ax.set_xlim(0, longest * 1.15 if longest > 0 else 1.0)
    ax.set_xlabel("time (s), median per stage")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    handles, labels = ax.get_legend_handles_labels()
    order = sort_stages(labels)
    by_label = dict(zip(labels, handles, strict=True))
    startup = any(n in OUTSIDE_LOAD for n in order)
    fig.legend(
        [by_label[n] for n in order],
        order,
        loc="outside lower center",
        ncol=min(len(order), 6),
        fontsize=8,
        frameon=False,
        title="hatched: process start, outside the load total" if startup else None,
        title_fontsize=8,
    )
    return fig


def latency_figure(series: Sequence[LatencySeries]) -> Figure:
    """Per-token latency along the generated position: first call against warm calls."""
    fig = _new_figure(1.0 + 2.6 * len(series))
    axes = fig.subplots(len(series), 1, squeeze=False)[:, 0]
    for ax, s in zip(axes, series, strict=True):
        marker = "o" if len(s.positions) <= 64 else None  # dots hide a long line
        if s.first_s:
            ax.plot(
                s.positions[: len(s.first_s)],
                [v * 1e3 for v in s.first_s],
                marker=marker,
                ms=3,
                color="tab:orange",
                label="first call of the process",
            )
        if s.warm_s:
            ax.plot(
                s.positions[: len(s.warm_s)],
                [v * 1e3 for v in s.warm_s],
                marker=marker,
                ms=3,
                color="tab:blue",
                label="warm calls, median per position",
            )
        if s.p50_s is not None:
            ax.axhline(
                s.p50_s * 1e3,
                color="tab:blue",
                ls="--",
                lw=1,
                label="warm p50",
            )
        if s.p99_s is not None:
            ax.axhline(
                s.p99_s * 1e3,
                color="tab:red",
                ls=":",
                lw=1.2,
                label="warm p99",
            )
        ttft = []
        if s.ttft_warm_s is not None:
            ttft.append(f"warm {s.ttft_warm_s * 1e3:.1f} ms")
        if s.ttft_first_s is not None:
            ttft.append(f"first call {s.ttft_first_s * 1e3:.1f} ms")
        sub = f"batch {s.batch_size}" + (f" · TTFT {', '.join(ttft)}" if ttft else "")
        if s.p50_s is not None and s.p99_s is not None:
            sub += f" · warm p50 {s.p50_s * 1e3:.2f} ms, p99 {s.p99_s * 1e3:.2f} ms"
        ax.set_title(sub, fontsize=10)
        ax.set_ylabel("latency (ms/token)")
        ax.set_ylim(bottom=0, top=ax.get_ylim()[1] * 1.08)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("generated token position (token 1 is the TTFT, not shown)")
    # One legend for all panels: the same four lines in each, values in the titles.
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(
        handles, labels, loc="outside lower center", ncol=len(labels), fontsize=8, frameon=False
    )
    fig.suptitle(f"Per-token latency · {series[0].label}" if series else "Per-token latency")
    return fig


def throughput_figure(series: Sequence[ThroughputSeries]) -> Figure:
    """Tokens/s of the whole batch (solid) and per sequence (dashed) against batch size."""
    fig = _new_figure(4.2)
    ax = fig.add_subplot()
    batches: set[int] = set()
    for i, s in enumerate(series):
        color = f"C{i % 10}"
        ax.plot(
            s.batch_sizes, s.tokens_per_s, marker="o", color=color, label=f"{s.label}: whole batch"
        )
        ax.plot(
            s.batch_sizes,
            s.tokens_per_s_seq,
            marker="o",
            ls="--",
            color=color,
            alpha=0.6,
            label=f"{s.label}: per sequence",
        )
        batches.update(s.batch_sizes)
    ax.set_xscale("log", base=2)
    ticks = sorted(batches)
    ax.set_xticks(ticks, [str(b) for b in ticks])
    ax.minorticks_off()
    ax.set_xlabel("batch size")
    ax.set_ylabel("decode tokens/s (prefill excluded)")
    ax.set_ylim(bottom=0)
    ax.set_title("Decode throughput against batch size")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return fig


def save_png(fig: Figure, path: str | os.PathLike[str]) -> Path:
    """Write ``fig`` as PNG atomically (:func:`profiler.records.io.write_atomic`)."""
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=DPI)
    write_atomic(path, png.getvalue())
    return Path(path)


CHART_FILES = ("load_stages.png", "throughput.png", "token_latency_*.png")


def write_plots(groups: Sequence[GroupSummary], folder: str | os.PathLike[str]) -> dict[str, Path]:
    """Draw every chart :func:`planned_images` lists into ``folder``; key -> file.

    Charts of an earlier report in the same folder that this one does not draw are
    removed (only files with the names this module gives), so the folder never
    holds a chart that the report beside it does not describe.
    """
    folder = Path(folder)
    plan = planned_images(groups)
    if folder.is_dir():
        keep = set(plan.values())
        for pattern in CHART_FILES:
            for old in folder.glob(pattern):
                if old.name not in keep and old.is_file():
                    old.unlink()
    fields = varying_fields([g.key for g in groups])
    out: dict[str, Path] = {}
    for key, name in plan.items():
        if key == "load_stages":
            fig = load_stages_figure(stage_bars(groups), common_title(groups, "Load stages"))
        elif key == "throughput":
            fig = throughput_figure(throughput_series(groups))
        else:
            g = groups[int(key.split("/", 1)[1])]
            label = chart_label(g, ("model", *[f for f in fields if f != "model"]), cache=False)
            fig = latency_figure(latency_series(g, label))
        out[key] = save_png(fig, folder / name)
    return out
