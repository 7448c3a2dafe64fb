"""Loads split across devices: the per-device table and the bounding device.

Built from :func:`profiler.analysis.placement.run_placement`; the console and the
markdown report each add one call.
"""

from __future__ import annotations

from collections.abc import Sequence

from profiler.analysis.placement import Placement, run_placement
from profiler.records.run import RunRecord
from profiler.render.format import (
    MILLISECONDS,
    bytes_unit,
    human_bytes,
    human_seconds,
    num,
    percent,
    quantity,
)
from profiler.render.tables import Column, Table, make_table, render_table


def placement_table(p: Placement) -> Table:
    """One row per device: bytes placed (and share), copies, GB/s, memory."""
    devs = p.devices
    b = bytes_unit([d.placed_bytes for d in devs])
    m = bytes_unit([d.torch_allocated_bytes for d in devs] + [d.nvml_used_bytes for d in devs])
    share = [d.placed_bytes / p.total_bytes if p.total_bytes else None for d in devs]
    return make_table(
        [
            Column("device", tuple(d.device for d in devs), align="left"),
            Column(f"placed ({b.name})", tuple(quantity(d.placed_bytes, b) for d in devs)),
            Column("share (%)", tuple(percent(s) for s in share)),
            Column(
                "h2d (ms)",
                tuple(quantity(d.h2d_time_s, MILLISECONDS) for d in devs),
                show=any(d.h2d_time_s is not None for d in devs),
            ),
            Column(
                "h2d (GB/s)",
                tuple(num(d.h2d_gbps) for d in devs),
                show=any(d.h2d_gbps is not None for d in devs),
            ),
            Column(
                f"torch allocated ({m.name})",
                tuple(quantity(d.torch_allocated_bytes, m) for d in devs),
                show=any(d.torch_allocated_bytes is not None for d in devs),
            ),
            Column(
                f"NVML used ({m.name})",
                tuple(quantity(d.nvml_used_bytes, m) for d in devs),
                show=any(d.nvml_used_bytes is not None for d in devs),
            ),
            Column(
                "bounds", tuple("◀" if d.device == p.bounding else "" for d in devs), align="left"
            ),
        ]
    )


def placement_lines(runs: Sequence[RunRecord], fmt: str, heading: str = "") -> list[str]:
    """Per-device section of every split load in ``runs`` (empty when there are none)."""
    out: list[str] = []
    for run in runs:
        p = run_placement(run)
        if p is None:
            continue
        title = f"devices · {run.variant or 'device map'} · cache {run.cache.label}"
        head = f"load {human_seconds(p.load_s)}, {human_bytes(p.total_bytes)} placed" + (
            f"; imbalance {num(p.imbalance)}× the mean" if p.imbalance is not None else ""
        )
        out += [f"{heading}{title}", ""] if heading else [title]
        out += [head, ""] if heading else [head]
        out += [render_table(placement_table(p), fmt), ""]
    return out


def placement_diagnosis(runs: Sequence[RunRecord]) -> list[str]:
    """Which device bounds each split load, and why."""
    out = []
    for run in runs:
        p = run_placement(run)
        if p is None or p.bounding is None:
            continue
        dev = next(d for d in p.devices if d.device == p.bounding)
        if p.bound_by == "h2d time":
            why = (
                f"its host-to-device copies took {human_seconds(dev.h2d_time_s)} "
                f"for {human_bytes(dev.h2d_bytes)}"
            )
        else:
            why = f"it holds the most weights, {human_bytes(dev.placed_bytes)}"
        out.append(f"{p.bounding} bounds the load ({run.variant}): {why}")
    return out
