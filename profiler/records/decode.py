"""Decode records: every ``generate()`` call's timestamps, kept raw.

Figures (step time, tokens/s, MBU) are computed from these records by
:mod:`profiler.analysis.decode_metrics`, never stored here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from profiler.records.fields import known_fields
from profiler.records.step import StepProfile


@dataclass(frozen=True)
class DecodeCall:
    """One ``generate()`` call: its prefill and the time of every new token.

    ``token_times_ns`` holds one timestamp per generated token, taken after the
    device produced it; ``start_ns`` is when ``generate()`` was entered. Intervals
    are computed inside one call only, never across calls.
    """

    start_ns: int
    end_ns: int
    token_times_ns: tuple[int, ...]
    prompt_start_ns: int | None = None  # when generate() handed the prompt over
    energy_j: float | None = None  # whole-GPU joules over the call (NVML), None without

    @property
    def ttft_s(self) -> float:
        return (self.token_times_ns[0] - self.start_ns) / 1e9 if self.token_times_ns else 0.0

    @property
    def intervals_s(self) -> tuple[float, ...]:
        t = self.token_times_ns
        return tuple((b - a) / 1e9 for a, b in zip(t, t[1:], strict=False))

    @property
    def wall_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    def to_dict(self) -> dict[str, Any]:
        return {
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "prompt_start_ns": self.prompt_start_ns,
            "token_times_ns": list(self.token_times_ns),
            "ttft_s": self.ttft_s,
            "wall_s": self.wall_s,
            "energy_j": self.energy_j,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DecodeCall:
        return cls(
            start_ns=data["start_ns"],
            end_ns=data["end_ns"],
            token_times_ns=tuple(data.get("token_times_ns", ())),
            prompt_start_ns=data.get("prompt_start_ns"),
            energy_j=data.get("energy_j"),
        )


@dataclass(frozen=True)
class DecodeRecord:
    """Decode at one batch size: the first call of the process and the warm calls."""

    batch_size: int
    prompt_tokens: int
    new_tokens: int
    temperature: float
    seed: int | None
    first_call: DecodeCall | None  # first generate() of the process (not warmed)
    calls: tuple[DecodeCall, ...]  # measured warm calls
    plain_calls_s: tuple[float, ...] = ()  # same generate() without the hook
    weight_bytes: int | None = None  # bytes each step reads for weights
    kv_bytes_per_token: int | None = None  # KV-cache bytes per position per sequence
    memory_bandwidth_gbps: float | None = None
    bandwidth_source: str | None = None
    peak_gpu_allocated_bytes: int | None = None
    kv_cache_bytes: int | None = None
    attention_backend: str | None = None
    text: str | None = None
    notes: tuple[str, ...] = ()
    # the matmul rate measured in the run's own dtype (profiler.machine.matmul)
    matmul_tflops: float | None = None
    matmul_dtype: str | None = None
    matmul_method: str | None = None
    step_profile: StepProfile | None = None  # profiled untimed calls (records/step.py)
    energy_note: str | None = None  # why energy_j is missing, when it is
    load_average_1m: float | None = None  # os.getloadavg()[0] after the warm calls

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["first_call"] = self.first_call.to_dict() if self.first_call else None
        d["calls"] = [c.to_dict() for c in self.calls]
        d["plain_calls_s"] = list(self.plain_calls_s)
        d["notes"] = list(self.notes)
        d["step_profile"] = self.step_profile.to_dict() if self.step_profile else None
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DecodeRecord:
        d = known_fields(cls, data)
        fc = data.get("first_call")
        d["first_call"] = DecodeCall.from_dict(fc) if fc else None
        d["calls"] = tuple(DecodeCall.from_dict(c) for c in data.get("calls", ()))
        d["plain_calls_s"] = tuple(data.get("plain_calls_s", ()))
        d["notes"] = tuple(data.get("notes", ()))
        sp = data.get("step_profile")
        d["step_profile"] = StepProfile.from_dict(sp) if sp else None
        return cls(**d)
