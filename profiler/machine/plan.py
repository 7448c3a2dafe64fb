"""Sizes and trial counts of the ceiling probes, fitted to this machine's free memory.

The disk probe's file is whole 16 MiB blocks (``O_DIRECT`` needs aligned lengths);
the page-cache probe needs the file and a destination buffer in memory at once, so
it is cut to what fits. ``--quick`` sizes are for tests and CI: rougher figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from profiler.analysis.stats import median
from profiler.errors import UserError
from profiler.machine.patterns import DISK_SPECS, PAGE_SPECS, ReadSpec
from profiler.records.ceilings import (
    Ceiling,
)
from profiler.run.device_kind import is_gpu

MIB = 1 << 20


GIB = 1 << 30


BLOCK_BYTES = 16 * MIB  # one read request: large enough that per-call cost vanishes


READ_THREADS = 4  # "a few threads": what a parallel loader uses (staged.py reads with 4)


MIN_SIZE_BYTES = BLOCK_BYTES


def round_size(size: int) -> int:
    """Sizes are whole blocks: O_DIRECT reads need aligned lengths."""
    if size < MIN_SIZE_BYTES:
        raise UserError(
            f"size {size} bytes is below {MIN_SIZE_BYTES // MIB} MiB: pass --size 16MiB or more"
        )
    return -(-size // BLOCK_BYTES) * BLOCK_BYTES


def available_ram() -> int:
    """Bytes of memory available now (psutil's estimate, page cache included)."""
    import psutil

    return int(psutil.virtual_memory().available)


@dataclass
class ProbePlan:
    """What each probe will move: bytes per trial and how many trials."""

    disk_bytes: int
    page_bytes: int
    host_bytes: int
    gpu_bytes: int
    matmul_n: int
    disk_trials: int
    trials: int
    notes: list[str] = field(default_factory=list)
    disk_specs: tuple[ReadSpec, ...] = DISK_SPECS  # read patterns of the disk ceiling
    page_specs: tuple[ReadSpec, ...] = PAGE_SPECS  # read patterns of the page-cache ceiling


def probe_plan(
    quick: bool, size_bytes: int | None, device: str, weights: int | None = None
) -> ProbePlan:
    """The plan for this machine: ``size_bytes`` (the disk file) when given, else sized
    from the model's ``weights`` bytes (:func:`profiler.machine.scratch.scratch_size`);
    the other sizes follow from free memory and ``device``."""
    from profiler.machine import patterns
    from profiler.machine.scratch import scratch_size

    disk = round_size(size_bytes if size_bytes is not None else scratch_size(weights, quick=quick))
    avail = available_ram()
    # Page-cache probe: the file and its destination buffer must both fit with room.
    page = min(disk, max(BLOCK_BYTES, (avail // 4) // BLOCK_BYTES * BLOCK_BYTES))
    host = min(256 * MIB if quick else GIB, max(BLOCK_BYTES, avail // 4))
    plan = ProbePlan(
        disk_bytes=disk,
        page_bytes=page,
        host_bytes=host,
        gpu_bytes=256 * MIB if quick else GIB,
        matmul_n=(4096 if quick else 8192) if is_gpu(device) else (1024 if quick else 2048),
        disk_trials=2 if quick else 3,
        trials=3 if quick else 5,
        disk_specs=patterns.DISK_SPECS_QUICK if quick else patterns.DISK_SPECS,
        page_specs=patterns.PAGE_SPECS_QUICK if quick else patterns.PAGE_SPECS,
    )
    if page < disk:
        plan.notes.append(f"page-cache probe limited to {page // MIB} MiB by free memory")
    return plan


def ceiling_from_trials(
    name: str,
    unit: str,
    trials: Sequence[float],
    method: str,
    notes: Sequence[str] = (),
    size_bytes: int | None = None,
) -> Ceiling:
    """A ceiling whose value is the median of ``trials``."""
    if not trials:
        raise ValueError(f"{name}: no trials")
    return Ceiling(
        name=name,
        value=median(trials),
        unit=unit,
        trials=tuple(trials),
        method=method,
        notes=tuple(notes),
        size_bytes=size_bytes,
    )
