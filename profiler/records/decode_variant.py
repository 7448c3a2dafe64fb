"""What one ``llmprof decode --variants`` child measured beyond its decode record.

Kept raw: the output tokens and the logit gaps of one greedy call, the compilation
counters and memory around the first call, and a first call at a new prompt length.
:mod:`profiler.analysis.decode_variants` turns them into the ranked table.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from profiler.records.fields import known_fields

_TUPLES = ("tokens", "top1_logits", "top2_gaps", "notes")


@dataclass(frozen=True)
class DecodeVariantFacts:
    """One decode variant's extra measurements (None where not measured).

    ``tokens`` are the new tokens of the first sequence of one warm call;
    ``top1_logits`` and ``top2_gaps`` (top-1 minus top-2 logit) are per new-token
    position of that call's logits, in ``logits_dtype``. The ``memory_*`` fields are
    bytes of ``memory_source`` (CUDA caching allocator reserved, or process RSS)
    before the first call, after it and after the warm calls. ``compile_*`` are
    torch.compile's own frame-compile seconds and graph counts inside the first call
    and inside the first call at ``new_length_prompt`` prompt tokens.
    """

    name: str
    description: str = ""
    skip_reason: str | None = None  # set: the variant could not run here
    tokens: tuple[int, ...] = ()
    top1_logits: tuple[float, ...] = ()
    top2_gaps: tuple[float, ...] = ()
    logits_dtype: str | None = None
    compiled: bool | None = None  # whether torch.compile produced any graph
    compile_first_s: float | None = None
    compile_graphs_first: int | None = None
    compile_new_length_s: float | None = None
    memory_source: str | None = None
    memory_before: int | None = None
    memory_after_first: int | None = None
    memory_after_warm: int | None = None
    segments_first: int | None = None  # cudaMalloc segments the first call added
    segments_warm: int | None = None  # ... and the warm calls
    new_length_prompt: int | None = None
    new_length_first_s: float | None = None
    new_length_warm_s: float | None = None
    warm_call_s: tuple[float, ...] = ()
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for k in (*_TUPLES, "warm_call_s"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DecodeVariantFacts:
        d = known_fields(cls, data)
        for k in (*_TUPLES, "warm_call_s"):
            d[k] = tuple(data.get(k, ()))
        return cls(**d)
