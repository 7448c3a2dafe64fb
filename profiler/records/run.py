"""Result records: what one profiled run measured, and nothing about how to show it.

Every record is a frozen dataclass with ``to_dict``/``from_dict``. Field names carry
their unit as a suffix (``_ns``, ``_s``, ``_bytes``, ``_gbps``, ``_fraction``); the
``UNITS`` table spells the suffixes out and is written into every JSON file, so a
file read years later still says what its numbers mean.

Forward compatibility: ``from_dict`` ignores keys it does not know and fills fields
added later with their defaults; a file whose ``schema_version`` is newer than this
code is refused (see :func:`check_schema`) because its meaning may have changed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from profiler.errors import UserError
from profiler.records.anatomy import ModelAnatomy
from profiler.records.decode import DecodeRecord
from profiler.records.decode_variant import DecodeVariantFacts
from profiler.records.fields import SCHEMA_VERSION, UNITS, known_fields
from profiler.records.stage import OUTSIDE_LOAD, StageRecord
from profiler.records.trace import LoadTrace


@dataclass(frozen=True)
class ModelInfo:
    """What was loaded: where it came from and what is in it."""

    spec: str  # what the user typed
    source_kind: str  # hub | local | synthetic | bundled | gguf
    path: str  # the folder (or .gguf file) actually loaded
    revision: str | None = None  # resolved commit for hub models
    architecture: str | None = None
    num_parameters: int | None = None
    weight_format: str | None = None  # safetensors | bin | gguf
    weight_files: tuple[str, ...] = ()
    weight_bytes: int | None = None
    storage_dtype: str | None = None
    random_weights: bool = False
    notes: tuple[str, ...] = ()
    anatomy: ModelAnatomy | None = None  # bytes by module group (records/anatomy.py)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["weight_files"] = list(self.weight_files)
        d["notes"] = list(self.notes)
        d["anatomy"] = self.anatomy.to_dict() if self.anatomy else None
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelInfo:
        d = known_fields(cls, data)
        d["weight_files"] = tuple(data.get("weight_files", ()))
        d["notes"] = tuple(data.get("notes", ()))
        anatomy = data.get("anatomy")
        d["anatomy"] = ModelAnatomy.from_dict(anatomy) if anatomy else None
        return cls(**d)


@dataclass(frozen=True)
class CacheState:
    """The state of each cache before the run, as requested and as measured."""

    hub: str = "n/a"  # cold | warm | n/a (local folders never touch the hub cache)
    page: str = "uncontrolled"  # cold | warm | uncontrolled
    process: str = "fresh"  # fresh (new subprocess) | in-process
    page_resident_fraction_before: float | None = None  # mincore over weight files
    page_verified: bool | None = None  # True: measured residency matches the request

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CacheState:
        return cls(**known_fields(cls, data))

    @property
    def label(self) -> str:
        """Short label for grouping: the page-cache state, marked when unverified."""
        page = self.page
        if page == "cold" and self.page_verified is False:
            page = "not-cold"
        parts = [page]
        if self.hub != "n/a":
            parts.insert(0, f"hub-{self.hub}")
        if self.process == "in-process":
            parts.append("in-process")
        return "/".join(parts)


@dataclass(frozen=True)
class Environment:
    """Fingerprint of the machine and software a run was measured on."""

    python: str
    platform: str
    cpu_model: str
    cpu_count: int
    ram_bytes: int
    torch: str | None = None
    transformers: str | None = None
    huggingface_hub: str | None = None
    safetensors: str | None = None
    cuda: str | None = None
    gpu_name: str | None = None
    gpu_driver: str | None = None
    gpu_memory_bytes: int | None = None
    gpu_pci_bus_id: str | None = None
    weights_filesystem: str | None = None
    weights_device: str | None = None
    hostname: str | None = None
    tool_version: str | None = None

    # Fields that change between otherwise identical machines; left out of the
    # fingerprint so two runs on one box compare as the same machine.
    VOLATILE: ClassVar[tuple[str, ...]] = ("hostname", "gpu_pci_bus_id", "weights_device")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Environment:
        return cls(**known_fields(cls, data))

    def machine_key(self) -> dict[str, Any]:
        """What must match for two runs to be called 'the same machine'."""
        keys = ("cpu_model", "cpu_count", "gpu_name", "gpu_driver", "cuda", "torch", "transformers")
        return {k: getattr(self, k) for k in keys}


@dataclass(frozen=True)
class NativeView:
    """Plain ``from_pretrained`` (+ ``.to()``) timed as a whole, with counters.

    ``stages`` are the few calls a user makes (``from_pretrained``, ``to_device``);
    ``attribution`` maps counter names to values measured during them, and
    ``unattributed`` lists what could not be pinned to a cause.
    """

    stages: tuple[StageRecord, ...]
    load_kwargs: dict[str, str] = field(default_factory=dict)
    attribution: dict[str, float | int | str] = field(default_factory=dict)
    unattributed: tuple[str, ...] = ()
    trace: LoadTrace | None = None  # the timeline of the load (hooks, imports, counters)

    @property
    def total_s(self) -> float:
        return sum(s.duration_s for s in self.stages if s.status == "ok")

    def to_dict(self) -> dict[str, Any]:
        return {
            "stages": [s.to_dict() for s in self.stages],
            "total_s": self.total_s,
            "load_kwargs": dict(self.load_kwargs),
            "attribution": dict(self.attribution),
            "unattributed": list(self.unattributed),
            "trace": self.trace.to_dict() if self.trace is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NativeView:
        return cls(
            stages=tuple(StageRecord.from_dict(s) for s in data.get("stages", ())),
            load_kwargs=dict(data.get("load_kwargs", {})),
            attribution=dict(data.get("attribution", {})),
            unattributed=tuple(data.get("unattributed", ())),
            trace=LoadTrace.from_dict(data["trace"]) if data.get("trace") else None,
        )


@dataclass(frozen=True)
class RunRecord:
    """One repetition of one profile: the staged view, the native view, decode."""

    model: ModelInfo
    device: str
    dtype_requested: str
    dtype_resolved: str
    cache: CacheState
    environment: Environment
    repetition: int = 0
    stages: tuple[StageRecord, ...] = ()
    native: NativeView | None = None
    decode: tuple[DecodeRecord, ...] = ()
    status: str = "ok"  # ok | failed
    error: str | None = None  # last error lines of a failed repetition
    exit_code: int | None = None
    notes: tuple[str, ...] = ()
    created_at: str = ""
    run_id: str = ""
    suite: str | None = None
    variant: str | None = None  # set when run as one of `llmprof load --variants`
    decode_variant: DecodeVariantFacts | None = None  # `llmprof decode --variants`
    schema_version: int = SCHEMA_VERSION

    @property
    def staged_total_s(self) -> float:
        """Every stage of the child process, imports and CUDA init included."""
        return sum(s.duration_s for s in self.stages if s.status == "ok")

    @property
    def load_total_s(self) -> float:
        """The model load alone (tokenizer to eval): comparable with the native view.

        Wall time covered by the load's stages: stages that overlap (the fast path
        reads in the background while the tokenizer loads) count once."""
        spans = sorted(
            (s.start_ns, s.end_ns)
            for s in self.stages
            if s.status == "ok" and s.name not in OUTSIDE_LOAD
        )
        total, reach = 0, None
        for start, end in spans:
            if reach is None or start >= reach:
                total += end - start
                reach = end
            elif end > reach:
                total += end - reach
                reach = end
        return total / 1e9

    def stage(self, name: str) -> StageRecord | None:
        for s in self.stages:
            if s.name == name:
                return s
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "kind": "llmprof.run",
            "units": UNITS,
            "run_id": self.run_id,
            "created_at": self.created_at,
            "suite": self.suite,
            "variant": self.variant,
            "status": self.status,
            "error": self.error,
            "exit_code": self.exit_code,
            "repetition": self.repetition,
            "model": self.model.to_dict(),
            "device": self.device,
            "dtype_requested": self.dtype_requested,
            "dtype_resolved": self.dtype_resolved,
            "cache": self.cache.to_dict(),
            "environment": self.environment.to_dict(),
            "stages": [s.to_dict() for s in self.stages],
            "staged_total_s": self.staged_total_s,
            "load_total_s": self.load_total_s,
            "native": self.native.to_dict() if self.native else None,
            "decode": [d.to_dict() for d in self.decode],
            "notes": list(self.notes),
            "decode_variant": self.decode_variant.to_dict() if self.decode_variant else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunRecord:
        check_schema(data)
        d = known_fields(cls, data)
        d["model"] = ModelInfo.from_dict(data["model"])
        d["cache"] = CacheState.from_dict(data.get("cache", {}))
        d["environment"] = Environment.from_dict(data["environment"])
        d["stages"] = tuple(StageRecord.from_dict(s) for s in data.get("stages", ()))
        nat = data.get("native")
        d["native"] = NativeView.from_dict(nat) if nat else None
        d["decode"] = tuple(DecodeRecord.from_dict(x) for x in data.get("decode", ()))
        d["notes"] = tuple(data.get("notes", ()))
        dv = data.get("decode_variant")
        d["decode_variant"] = DecodeVariantFacts.from_dict(dv) if dv else None
        return cls(**d)


def check_schema(data: Mapping[str, Any]) -> None:
    """Refuse data that is not an llmprof run record or comes from a newer version."""
    if not isinstance(data, Mapping) or data.get("kind") != "llmprof.run":
        raise UserError('not an llmprof run record (no "kind": "llmprof.run")')
    version = data.get("schema_version")
    if not isinstance(version, int):
        raise UserError("llmprof record has no integer schema_version")
    if version > SCHEMA_VERSION:
        raise UserError(
            f"record has schema version {version}, this llmprof reads up to "
            f"{SCHEMA_VERSION}: upgrade llmprof (pip install -U llmprof)"
        )
