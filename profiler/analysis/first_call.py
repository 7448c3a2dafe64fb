"""Why a process's first decode call is slower than a warm one, from measurements.

The excess (first call minus median warm call, wall time) is split into:

compilation
    seconds torch.compile itself reported compiling frames during the first call
    (dynamo + inductor; CUDA graph recording is not compilation and stays in
    "other").
per new length
    a first call at a new prompt length minus a second call at that length, both in
    the warm process: the work every new sequence length pays again (kernel and
    attention-plan selection per shape, a recompilation for new static shapes).
    It is part of the first call too, since the first call's length was new.
other
    the rest: lazy initialisation, kernel loading, CUDA graph recording,
    allocator growth. How much the allocator grew is given in bytes (reserved
    memory on CUDA, RSS on CPU) and new cudaMalloc segments, not in seconds.

A warm-up request at start-up at the same shapes removes the whole excess; at
other lengths it removes all but the per-length part, which every new length pays.
"""

from __future__ import annotations

from dataclasses import dataclass

from profiler.analysis.stats import median
from profiler.records.decode_variant import DecodeVariantFacts
from profiler.records.run import RunRecord


@dataclass(frozen=True)
class FirstCallExplained:
    """The first call's excess over a warm call, split (module docstring)."""

    variant: str
    first_s: float
    warm_s: float
    compile_s: float | None
    per_length_s: float | None  # None: no new-length probe
    new_length_compile_s: float | None
    new_length_prompt: int | None
    memory_source: str | None
    memory_growth_bytes: int | None  # during the first call
    memory_growth_warm_bytes: int | None  # during the warm calls
    segments_first: int | None

    @property
    def excess_s(self) -> float:
        return self.first_s - self.warm_s

    @property
    def other_s(self) -> float:
        """The excess not explained by compilation or the per-length work.

        The per-length probe's own compilation is the same kind of work as the first
        call's compilation (a static-shape variant recompiles for every new length),
        so only its non-compile part is taken off again: subtracting both counted the
        compile twice and gave a negative rest (-35.6 s for static-compile on the H200).
        """
        per_length_rest = (self.per_length_s or 0.0) - (self.new_length_compile_s or 0.0)
        return self.excess_s - (self.compile_s or 0.0) - max(per_length_rest, 0.0)

    @property
    def warmup_removes_s(self) -> float:
        """What a start-up warm-up at another length removes: all but per-length work."""
        return self.excess_s - max(self.per_length_s or 0.0, 0.0)


def _growth(a: int | None, b: int | None) -> int | None:
    return b - a if a is not None and b is not None else None


def explain_first_call(run: RunRecord) -> FirstCallExplained | None:
    """The explanation for one variant's run; None when it has no first and warm call."""
    facts: DecodeVariantFacts | None = run.decode_variant
    if run.status != "ok" or not run.decode or facts is None:
        return None
    rec = run.decode[0]
    if rec.first_call is None or not rec.calls:
        return None
    per_length = None
    if facts.new_length_first_s is not None and facts.new_length_warm_s is not None:
        per_length = facts.new_length_first_s - facts.new_length_warm_s
    return FirstCallExplained(
        variant=facts.name,
        first_s=rec.first_call.wall_s,
        warm_s=median([c.wall_s for c in rec.calls]),
        compile_s=facts.compile_first_s,
        per_length_s=per_length,
        new_length_compile_s=facts.compile_new_length_s,
        new_length_prompt=facts.new_length_prompt,
        memory_source=facts.memory_source,
        memory_growth_bytes=_growth(facts.memory_before, facts.memory_after_first),
        memory_growth_warm_bytes=_growth(facts.memory_after_first, facts.memory_after_warm),
        segments_first=facts.segments_first,
    )
