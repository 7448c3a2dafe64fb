"""The ceilings record: measured limits of one machine, saved as JSON.

Frozen data with ``to_dict``/``from_dict`` and a schema version; the probes are in
:mod:`profiler.machine`, the pairing of stages with ceilings in
:mod:`profiler.machine.bounds`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from profiler.errors import UserError

CEILINGS_KIND = "llmprof.ceilings"


# 2: each Ceiling keeps the access patterns tried (``patterns``) and names the winner.
# Version-1 files still read (no patterns).
CEILINGS_SCHEMA_VERSION = 2


GBPS = "GB/s"


TFLOPS = "TFLOP/s"


HOST_ITEMS: tuple[str, ...] = (
    "disk_read",
    "page_cache_read_1t",
    "page_cache_read",
    "host_memcpy",
)


GPU_ITEMS: tuple[str, ...] = (
    "h2d_pageable",
    "h2d_pinned",
    "d2h_pinned",
    "device_memory",
)


MATMUL = "matmul_bf16_tflops"


ITEM_ORDER: tuple[str, ...] = HOST_ITEMS + GPU_ITEMS + (MATMUL,)


@dataclass(frozen=True)
class Pattern:
    """One way of doing a ceiling's work, measured: a read with ``threads`` threads of
    ``request_bytes`` requests, ``mode`` ``"direct"`` (O_DIRECT) or ``"buffered"``; a
    copy ``"whole"`` or ``"chunked"``, ``"pinned"`` or ``"pageable"``. ``value`` is the
    median of ``trials``; ``files`` how many files the read spread over. ``origin`` is
    ``"probe"`` for the planned patterns, ``"reprobe"`` for one re-run with a stage's
    own pattern after the stage beat the ceiling."""

    label: str
    value: float | None
    trials: tuple[float, ...] = ()
    mode: str = ""
    threads: int | None = None
    request_bytes: int | None = None
    files: int = 1
    origin: str = "probe"
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "value": self.value,
            "trials": list(self.trials),
            "mode": self.mode,
            "threads": self.threads,
            "request_bytes": self.request_bytes,
            "files": self.files,
            "origin": self.origin,
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Pattern:
        value = data.get("value")
        threads = data.get("threads")
        req = data.get("request_bytes")
        return cls(
            label=str(data["label"]),
            value=None if value is None else float(value),
            trials=tuple(float(x) for x in data.get("trials", ())),
            mode=str(data.get("mode", "")),
            threads=None if threads is None else int(threads),
            request_bytes=None if req is None else int(req),
            files=int(data.get("files", 1)),
            origin=str(data.get("origin", "probe")),
            notes=tuple(str(x) for x in data.get("notes", ())),
        )


@dataclass(frozen=True)
class Ceiling:
    """One measured limit.

    ``value`` is the median of ``trials`` in ``unit`` (``"GB/s"`` for bandwidths,
    ``"TFLOP/s"`` for the matmul rate); ``None`` when the probe was skipped, with the
    reason in ``notes``. ``size_bytes`` is the payload of one trial (the file read,
    the source of a copy, one operand of the matmul).
    """

    name: str
    value: float | None
    unit: str
    trials: tuple[float, ...] = ()
    method: str = ""
    notes: tuple[str, ...] = ()
    size_bytes: int | None = None
    patterns: tuple[Pattern, ...] = ()  # every pattern tried; the value is the winner's
    winner: str = ""  # label of the winning pattern ("" for single-way probes)

    @property
    def measured(self) -> bool:
        return self.value is not None

    @property
    def gbps(self) -> float | None:
        """The value when it is a bandwidth, else None (a matmul rate is no GB/s)."""
        return self.value if self.unit == GBPS else None

    @property
    def trials_gbps(self) -> tuple[float, ...]:
        return self.trials if self.unit == GBPS else ()

    @property
    def tflops(self) -> float | None:
        return self.value if self.unit == TFLOPS else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "trials": list(self.trials),
            "method": self.method,
            "notes": list(self.notes),
            "size_bytes": self.size_bytes,
            "patterns": [p.to_dict() for p in self.patterns],
            "winner": self.winner,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Ceiling:
        value = data.get("value")
        return cls(
            name=str(data["name"]),
            value=None if value is None else float(value),
            unit=str(data.get("unit", GBPS)),
            trials=tuple(float(x) for x in data.get("trials", ())),
            method=str(data.get("method", "")),
            notes=tuple(str(x) for x in data.get("notes", ())),
            size_bytes=data.get("size_bytes"),
            patterns=tuple(Pattern.from_dict(p) for p in data.get("patterns", ())),
            winner=str(data.get("winner", "")),
        )


def skipped(name: str, unit: str, reason: str) -> Ceiling:
    """A ceiling that was not measured, saying why."""
    return Ceiling(name=name, value=None, unit=unit, method="not measured", notes=(reason,))


@dataclass(frozen=True)
class Ceilings:
    """All ceilings of one machine, measured together.

    ``device`` is the device the GPU items were measured on (``"cpu"`` when none);
    ``folder`` the folder whose filesystem ``disk_read`` measured; ``quick`` marks the
    small sizes used in tests and CI, whose figures are rougher.
    """

    fingerprint: dict[str, Any]
    measured_at: str
    items: dict[str, Ceiling]
    schema_version: int = CEILINGS_SCHEMA_VERSION
    device: str = "cpu"
    folder: str = ""
    quick: bool = False
    elapsed_s: float | None = None

    def get(self, name: str) -> Ceiling | None:
        return self.items.get(name)

    def value(self, name: str) -> float | None:
        """The measured value of ``name``, or None when absent or skipped."""
        c = self.items.get(name)
        return c.value if c is not None else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": CEILINGS_KIND,
            "schema_version": self.schema_version,
            "measured_at": self.measured_at,
            "device": self.device,
            "folder": self.folder,
            "quick": self.quick,
            "elapsed_s": self.elapsed_s,
            "fingerprint": dict(self.fingerprint),
            "items": {k: v.to_dict() for k, v in self.items.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Ceilings:
        if not isinstance(data, Mapping) or data.get("kind") != CEILINGS_KIND:
            raise UserError(f'not an llmprof ceilings file (no "kind": "{CEILINGS_KIND}")')
        version = data.get("schema_version")
        if not isinstance(version, int) or version > CEILINGS_SCHEMA_VERSION:
            raise UserError(
                f"ceilings schema version {version!r} is not one this llmprof reads "
                f"(up to {CEILINGS_SCHEMA_VERSION}): run `llmprof ceilings --refresh`"
            )
        items = {str(k): Ceiling.from_dict(v) for k, v in data.get("items", {}).items()}
        elapsed = data.get("elapsed_s")
        return cls(
            fingerprint=dict(data.get("fingerprint", {})),
            measured_at=str(data.get("measured_at", "")),
            items=items,
            schema_version=version,
            device=str(data.get("device", "cpu")),
            folder=str(data.get("folder", "")),
            quick=bool(data.get("quick", False)),
            elapsed_s=None if elapsed is None else float(elapsed),
        )
