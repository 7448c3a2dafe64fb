"""Energy of load stages: joules (NVML's whole-GPU counter, recorded per stage as the
``energy_j`` counter) and mean power over the stage's time. Decode energy is defined
with the other decode figures (:func:`profiler.analysis.decode_metrics.decode_energy`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from profiler.analysis.stats import median
from profiler.records.run import RunRecord


@dataclass(frozen=True)
class StageEnergy:
    """One stage's energy: medians over the runs that recorded it."""

    name: str
    joules: float
    mean_power_w: float | None  # joules over the stage's time; None for a zero-time stage
    n: int


def stage_energy(runs: Sequence[RunRecord]) -> list[StageEnergy]:
    """Per stage with an ``energy_j`` counter, in the order the stages ran."""
    by_name: dict[str, list[tuple[float, float]]] = {}
    for r in runs:
        for st in r.stages:
            e = st.counters.get("energy_j")
            if st.status == "ok" and isinstance(e, (int, float)):
                by_name.setdefault(st.name, []).append((float(e), st.duration_s))
    out = []
    for name, rows in by_name.items():
        watts = [e / t for e, t in rows if t > 0]
        out.append(
            StageEnergy(
                name=name,
                joules=median([e for e, _ in rows]),
                mean_power_w=median(watts) if watts else None,
                n=len(rows),
            )
        )
    return out
