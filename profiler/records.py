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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from profiler.errors import UserError

SCHEMA_VERSION = 1

UNITS: dict[str, str] = {
    "_ns": "nanoseconds (CLOCK_MONOTONIC)",
    "_s": "seconds",
    "_bytes": "bytes",
    "_gbps": "gigabytes (1e9 bytes) per second",
    "_fraction": "fraction of 1 (0.25 = 25%)",
    "_per_s": "per second",
}

StageStatus = Literal["ok", "skipped", "failed"]

# Stage names of the staged view, in pipeline order. Renderers and comparisons use
# this order; stages not listed here sort after them in the order they occurred.
STAGE_ORDER: tuple[str, ...] = (
    "python_start",
    "import",
    "cuda_init",
    "hub_download",
    "tokenizer",
    "config",
    "model_init",
    "weight_read",
    "read_copy",
    "deserialize",
    "dequantize",
    "dtype_cast",
    "h2d_copy",
    "attach",
    "eval",
)


# Stages that are not part of loading the model itself: a fresh process pays them
# before any load. "Load total" comparisons (staged vs native, variants) leave them
# out so that both sides measure the same work.
OUTSIDE_LOAD: frozenset[str] = frozenset({"python_start", "import", "cuda_init", "hub_download"})


def _filter_known(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}


@dataclass(frozen=True)
class MemorySnapshot:
    """Memory of the process (and its GPU) at one instant.

    RSS is split because mmap'd weight files count in RSS as file-backed pages: they
    are page cache the kernel can drop, not memory the model owns.
    """

    rss_bytes: int
    rss_anon_bytes: int
    rss_file_bytes: int
    gpu_used_bytes: int | None = None  # NVML: whole device, every process
    torch_allocated_bytes: int | None = None
    torch_reserved_bytes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MemorySnapshot:
        return cls(**_filter_known(cls, data))


@dataclass(frozen=True)
class StageMemory:
    """Memory before and after a stage, and the peaks seen while it ran."""

    before: MemorySnapshot
    after: MemorySnapshot
    peak_rss_bytes: int
    peak_rss_anon_bytes: int
    peak_gpu_used_bytes: int | None = None
    torch_peak_allocated_bytes: int | None = None
    torch_peak_reserved_bytes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["before"] = self.before.to_dict()
        d["after"] = self.after.to_dict()
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StageMemory:
        d = _filter_known(cls, data)
        d["before"] = MemorySnapshot.from_dict(data["before"])
        d["after"] = MemorySnapshot.from_dict(data["after"])
        return cls(**d)


@dataclass(frozen=True)
class StageRecord:
    """One stage of a load: its time, the bytes it moved, its memory, and notes.

    ``bytes`` is the payload the stage handled (``bytes_what`` says which: bytes read
    from files, bytes cast, bytes copied to the device). ``disk_read_bytes`` is what
    the kernel really fetched from storage while the stage ran (``/proc/self/io``),
    which is 0 when the page cache served the reads.
    """

    name: str
    status: StageStatus
    start_ns: int
    end_ns: int
    bytes: int | None = None
    bytes_what: str = ""
    disk_read_bytes: int | None = None
    memory: StageMemory | None = None
    ceiling_name: str | None = None  # filled by the ceilings comparison
    ceiling_gbps: float | None = None
    notes: tuple[str, ...] = ()
    counters: dict[str, float | int | str] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    @property
    def gbps(self) -> float | None:
        if self.status != "ok" or not self.bytes or self.end_ns <= self.start_ns:
            return None
        return self.bytes / (self.end_ns - self.start_ns)

    @property
    def ceiling_fraction(self) -> float | None:
        g = self.gbps
        if g is None or not self.ceiling_gbps:
            return None
        return g / self.ceiling_gbps

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "duration_s": self.duration_s,
            "bytes": self.bytes,
            "bytes_what": self.bytes_what,
            "gbps": self.gbps,
            "disk_read_bytes": self.disk_read_bytes,
            "memory": self.memory.to_dict() if self.memory else None,
            "ceiling_name": self.ceiling_name,
            "ceiling_gbps": self.ceiling_gbps,
            "ceiling_fraction": self.ceiling_fraction,
            "notes": list(self.notes),
            "counters": dict(self.counters),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StageRecord:
        d = _filter_known(cls, data)
        d["notes"] = tuple(data.get("notes", ()))
        d["counters"] = dict(data.get("counters", {}))
        mem = data.get("memory")
        d["memory"] = StageMemory.from_dict(mem) if mem else None
        return cls(**d)


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

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["weight_files"] = list(self.weight_files)
        d["notes"] = list(self.notes)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelInfo:
        d = _filter_known(cls, data)
        d["weight_files"] = tuple(data.get("weight_files", ()))
        d["notes"] = tuple(data.get("notes", ()))
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
        return cls(**_filter_known(cls, data))

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
        return cls(**_filter_known(cls, data))

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
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NativeView:
        return cls(
            stages=tuple(StageRecord.from_dict(s) for s in data.get("stages", ())),
            load_kwargs=dict(data.get("load_kwargs", {})),
            attribution=dict(data.get("attribution", {})),
            unattributed=tuple(data.get("unattributed", ())),
        )


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
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DecodeCall:
        return cls(
            start_ns=data["start_ns"],
            end_ns=data["end_ns"],
            token_times_ns=tuple(data.get("token_times_ns", ())),
            prompt_start_ns=data.get("prompt_start_ns"),
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

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["first_call"] = self.first_call.to_dict() if self.first_call else None
        d["calls"] = [c.to_dict() for c in self.calls]
        d["plain_calls_s"] = list(self.plain_calls_s)
        d["notes"] = list(self.notes)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DecodeRecord:
        d = _filter_known(cls, data)
        fc = data.get("first_call")
        d["first_call"] = DecodeCall.from_dict(fc) if fc else None
        d["calls"] = tuple(DecodeCall.from_dict(c) for c in data.get("calls", ()))
        d["plain_calls_s"] = tuple(data.get("plain_calls_s", ()))
        d["notes"] = tuple(data.get("notes", ()))
        return cls(**d)


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
    schema_version: int = SCHEMA_VERSION

    @property
    def staged_total_s(self) -> float:
        """Every stage of the child process, imports and CUDA init included."""
        return sum(s.duration_s for s in self.stages if s.status == "ok")

    @property
    def load_total_s(self) -> float:
        """The model load alone (tokenizer to eval): comparable with the native view."""
        return sum(
            s.duration_s for s in self.stages if s.status == "ok" and s.name not in OUTSIDE_LOAD
        )

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
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunRecord:
        check_schema(data)
        d = _filter_known(cls, data)
        d["model"] = ModelInfo.from_dict(data["model"])
        d["cache"] = CacheState.from_dict(data.get("cache", {}))
        d["environment"] = Environment.from_dict(data["environment"])
        d["stages"] = tuple(StageRecord.from_dict(s) for s in data.get("stages", ()))
        nat = data.get("native")
        d["native"] = NativeView.from_dict(nat) if nat else None
        d["decode"] = tuple(DecodeRecord.from_dict(x) for x in data.get("decode", ()))
        d["notes"] = tuple(data.get("notes", ()))
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


def sort_stages(names: Sequence[str]) -> list[str]:
    """Order stage names along the pipeline; unknown names keep their given order."""
    known = {n: i for i, n in enumerate(STAGE_ORDER)}
    return sorted(dict.fromkeys(names), key=lambda n: (known.get(n, len(known)), 0))
