"""What one decode step was made of, measured on extra untimed calls.

The timed calls give the step time; they carry no profiler, so they cannot say
where the time went. :class:`StepProfile` holds what the torch profiler saw over
the decode steps of separate, untimed calls (prefill left out): device-busy time,
host time in torch ops, launches. The attribution of the timed step
(:func:`profiler.analysis.decode_metrics.attribute_step`) combines both.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from profiler.records.fields import known_fields


@dataclass(frozen=True)
class StepProfile:
    """Per-step figures of the profiled decode steps (means over ``steps`` steps)."""

    steps: int  # decode steps inside the profiled window
    profiled_step_s: float  # window wall time per step, profiler overhead included
    busy_s: float | None  # per step: device (GPU kernels) or in-op (CPU) time
    busy_what: str  # how busy_s was measured
    host_s: float | None  # per step: host time inside top-level torch ops
    launches_per_step: float | None  # kernel launches (CUDA) or top-level ops (CPU)
    launches_what: str
    kernels_per_step: float | None = None  # kernels the GPU ran (CUDA only)
    top_ops: tuple[tuple[str, float], ...] = ()  # (name, seconds per step), largest first
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["top_ops"] = [list(x) for x in self.top_ops]
        d["notes"] = list(self.notes)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StepProfile:
        d = known_fields(cls, data)
        d["top_ops"] = tuple((str(n), float(s)) for n, s in data.get("top_ops", ()))
        d["notes"] = tuple(data.get("notes", ()))
        return cls(**d)
