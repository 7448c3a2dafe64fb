"""One stage of a load as measured: its clock span, bytes, memory, lazy imports and
the process (rank, device) that measured it; plus the stage order every table uses."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from profiler.records.fields import known_fields

StageStatus = Literal["ok", "skipped", "failed"]


# Stage names of the staged view, in pipeline order. Renderers and comparisons use
# this order; stages not listed here sort after them in the order they occurred.
STAGE_ORDER: tuple[str, ...] = (
    "python_start",
    "import",
    "cuda_init",
    "pg_init",
    "hub_download",
    "tokenizer",
    "config",
    "from_pretrained",  # the native call; also the whole load of --tp and --device-map
    "model_init",
    "weight_read",
    "pin_pool",
    "read_copy",
    "deserialize",
    "dequantize",
    "dtype_cast",
    "h2d_copy",
    "attach",
    "eval",
    "load_barrier",
)


# Stages that are not part of loading the model itself: a fresh process pays them
# before any load. "Load total" comparisons (staged vs native, variants) leave them
# out so that both sides measure the same work.
# pg_init (torch.distributed set-up) and load_barrier (a rank waiting for the others
# after its own load) are multi-rank costs shown on their own, not a rank's load.
MULTI_RANK_STAGES: frozenset[str] = frozenset({"pg_init", "load_barrier"})
OUTSIDE_LOAD: frozenset[str] = frozenset(
    {"python_start", "import", "cuda_init", "pg_init", "hub_download", "load_barrier"}
)


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
        return cls(**known_fields(cls, data))


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
        d = known_fields(cls, data)
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
    # Lazy imports inside the stage (profiler/measure/imports.py): wall seconds during
    # which some thread was importing, modules loaded, and seconds by top-level package.
    import_s: float = 0.0
    import_modules: int = 0
    import_packages: dict[str, float] = field(default_factory=dict)
    gc_s: float = 0.0  # garbage collection outside those imports (mostly their aftermath)

    # Multi-rank runs (torchrun): which process measured the stage, and on what device.
    rank: int = 0
    world_size: int = 1
    device: str = ""

    @property
    def own_s(self) -> float:
        """The stage's own work: its time without the imports it triggered and the
        garbage collections outside them."""
        return max(0.0, self.duration_s - self.import_s - self.gc_s)

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
            "import_s": self.import_s,
            "import_modules": self.import_modules,
            "import_packages": dict(self.import_packages),
            "gc_s": self.gc_s,
            "rank": self.rank,
            "world_size": self.world_size,
            "device": self.device,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StageRecord:
        d = known_fields(cls, data)
        d["notes"] = tuple(data.get("notes", ()))
        d["counters"] = dict(data.get("counters", {}))
        d["import_packages"] = dict(data.get("import_packages", {}))
        mem = data.get("memory")
        d["memory"] = StageMemory.from_dict(mem) if mem else None
        return cls(**d)


def sort_stages(names: Sequence[str]) -> list[str]:
    """Order stage names along the pipeline; unknown names keep their given order."""
    known = {n: i for i, n in enumerate(STAGE_ORDER)}
    return sorted(dict.fromkeys(names), key=lambda n: (known.get(n, len(known)), 0))
