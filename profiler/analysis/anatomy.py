"""Shares of a model's anatomy: of the load's bytes and of what a decode step reads.

A decode step reads every weight once (lookup-only embedding tables excepted) and
the KV cache at the decode's mean context, so its bytes are the groups' read bytes
plus a KV-cache row (``decode_metrics.decode_bytes_per_step`` is the one definition
of that total; the KV row here is what it adds to the weights).
"""

from __future__ import annotations

from dataclasses import dataclass

from profiler.records.anatomy import ModelAnatomy

KV_ROW = "KV cache"


@dataclass(frozen=True)
class AnatomyShare:
    """One row of the anatomy table; None where a share does not apply."""

    name: str
    params: int | None
    load_bytes: int | None
    load_share: float | None  # fraction of the loaded bytes
    step_bytes: float | None  # bytes this group adds to one decode step
    step_share: float | None  # fraction of the bytes one decode step reads


def anatomy_shares(
    anatomy: ModelAnatomy, bytes_per_step: float | None = None
) -> list[AnatomyShare]:
    """Rows per group, plus a KV-cache row when ``bytes_per_step`` (weights + KV, from
    :func:`profiler.analysis.decode_metrics.decode_figures`) exceeds the weight bytes."""
    load_total = sum(g.load_bytes for g in anatomy.groups)
    read_total = float(sum(g.read_bytes for g in anatomy.groups))
    step_total = bytes_per_step if bytes_per_step and bytes_per_step >= read_total else read_total
    rows = [
        AnatomyShare(
            name=g.name,
            params=g.params,
            load_bytes=g.load_bytes,
            load_share=g.load_bytes / load_total if load_total else None,
            step_bytes=float(g.read_bytes),
            step_share=g.read_bytes / step_total if step_total else None,
        )
        for g in anatomy.groups
    ]
    kv = step_total - read_total
    if kv > 0:
        rows.append(AnatomyShare(KV_ROW, None, None, None, kv, kv / step_total))
    return rows
