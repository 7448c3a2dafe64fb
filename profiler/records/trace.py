"""Timeline records of one load: spans of work on threads, and sampled counters.

A :class:`Span` is one piece of work with a start and an end on the monotonic clock,
the thread that did it and a few facts (tensor name, bytes, dtypes, device). A
:class:`CounterTrack` is one quantity sampled over time (bytes read from disk, RSS,
GPU memory). :class:`LoadTrace` holds both for one load, plus the hook points that
were missing in the transformers version that ran (the trace is then partial and
says so). Data only: attribution is in :mod:`profiler.analysis.timeline`, the Chrome
trace format in :mod:`profiler.render.chrome_trace`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

TRACE_SCHEMA_VERSION = 1

ArgValue = int | float | str


@dataclass(frozen=True)
class Span:
    """One piece of work: ``category`` is the phase it belongs to (read, cast, copy,
    attach, init, import, ...); ``name`` what it was (a tensor, a module, a file)."""

    name: str
    category: str
    start_ns: int
    end_ns: int
    thread_id: int
    thread_name: str = ""
    args: dict[str, ArgValue] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "category": self.category,
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "thread_id": self.thread_id,
            "thread_name": self.thread_name,
            "args": dict(self.args),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Span:
        return cls(
            name=str(data["name"]),
            category=str(data["category"]),
            start_ns=int(data["start_ns"]),
            end_ns=int(data["end_ns"]),
            thread_id=int(data.get("thread_id", 0)),
            thread_name=str(data.get("thread_name", "")),
            args=dict(data.get("args", {})),
        )


@dataclass(frozen=True)
class CounterTrack:
    """Samples of one quantity: ``times_ns[i]`` (monotonic) and ``values[i]`` in
    ``unit`` (``bytes`` for cumulative or current byte counts)."""

    name: str
    unit: str
    times_ns: tuple[int, ...]
    values: tuple[float, ...]
    cumulative: bool = False  # True: a running total (draw its rate), else a level

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "unit": self.unit,
            "times_ns": list(self.times_ns),
            "values": list(self.values),
            "cumulative": self.cumulative,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CounterTrack:
        return cls(
            name=str(data["name"]),
            unit=str(data.get("unit", "")),
            times_ns=tuple(int(x) for x in data.get("times_ns", ())),
            values=tuple(float(x) for x in data.get("values", ())),
            cumulative=bool(data.get("cumulative", False)),
        )


@dataclass(frozen=True)
class LoadTrace:
    """The timeline of one load between ``start_ns`` and ``end_ns``."""

    start_ns: int
    end_ns: int
    spans: tuple[Span, ...] = ()
    counters: tuple[CounterTrack, ...] = ()
    hooks: tuple[str, ...] = ()  # hook points that were installed
    missing_hooks: tuple[str, ...] = ()  # hook points this transformers lacks
    notes: tuple[str, ...] = ()
    schema_version: int = TRACE_SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "spans": [s.to_dict() for s in self.spans],
            "counters": [c.to_dict() for c in self.counters],
            "hooks": list(self.hooks),
            "missing_hooks": list(self.missing_hooks),
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LoadTrace:
        return cls(
            start_ns=int(data["start_ns"]),
            end_ns=int(data["end_ns"]),
            spans=tuple(Span.from_dict(s) for s in data.get("spans", ())),
            counters=tuple(CounterTrack.from_dict(c) for c in data.get("counters", ())),
            hooks=tuple(str(h) for h in data.get("hooks", ())),
            missing_hooks=tuple(str(h) for h in data.get("missing_hooks", ())),
            notes=tuple(str(n) for n in data.get("notes", ())),
            schema_version=int(data.get("schema_version", TRACE_SCHEMA_VERSION)),
        )
