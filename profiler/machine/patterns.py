"""Ceilings as the best of the access patterns a loader could use.

A ceiling measured one way is beaten by a loader that reads another way (the H200's
cold weight read ran at 119% of a 4-thread ``O_DIRECT`` "ceiling" by reading
buffered, with readahead). So each bandwidth ceiling is measured several ways and
the best one is the ceiling; the record keeps every pattern and names the winner.

:func:`best_of` is the pure rule; :func:`measure_read` times one read pattern on an
open scratch file, cold (evicted and checked with ``mincore``) or warm.
"""

from __future__ import annotations

import mmap
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from profiler.analysis.rates import gbps_of
from profiler.analysis.stats import median
from profiler.caches.page import COLD_MAX_FRACTION, evict_fd, resident_in_fd
from profiler.load.read import read_scratch
from profiler.records.ceilings import Ceiling, Pattern

MIB = 1 << 20

EVICTION_FAILED = "eviction failed"


@dataclass(frozen=True)
class ReadSpec:
    """A read pattern: ``threads`` threads of ``request_bytes`` requests, O_DIRECT
    (``direct``) or buffered, over ``files`` files."""

    direct: bool
    threads: int
    request_bytes: int
    files: int = 1

    @property
    def mode(self) -> str:
        return "direct" if self.direct else "buffered"

    @property
    def label(self) -> str:
        how = "O_DIRECT" if self.direct else "buffered"
        files = f", {self.files} files" if self.files > 1 else ""
        return f"{how} {self.threads}t × {self.request_bytes // MIB} MiB{files}"


# Cold reads: what the loaders do (buffered with readahead, 1 to 16 threads) and what
# a direct-I/O loader does (O_DIRECT, queue depth from threads). Measured on the
# H200 box: buffered 16t×16MiB 1.95 GB/s, O_DIRECT 4t×16MiB 1.38 (reports/gpu-h200/
# explore/disk.json), so the single O_DIRECT pattern was no ceiling.
DISK_SPECS: tuple[ReadSpec, ...] = (
    ReadSpec(True, 4, 16 * MIB),
    ReadSpec(True, 16, 16 * MIB),
    ReadSpec(True, 8, 64 * MIB),
    ReadSpec(False, 1, 16 * MIB),
    ReadSpec(False, 4, 64 * MIB),
    ReadSpec(False, 16, 16 * MIB),
)

DISK_SPECS_QUICK: tuple[ReadSpec, ...] = (
    ReadSpec(True, 4, 16 * MIB),
    ReadSpec(False, 4, 16 * MIB),
    ReadSpec(False, 16, 16 * MIB),
)

# Warm reads (page cache → user memory): CPU-bound, scales with threads; small
# requests stay in the CPU caches (H200: 16t×2MiB 87.9 GB/s, 16t×16MiB 59.6).
PAGE_SPECS: tuple[ReadSpec, ...] = (
    ReadSpec(False, 4, 16 * MIB),
    ReadSpec(False, 16, 16 * MIB),
    ReadSpec(False, 16, 2 * MIB),
    ReadSpec(False, 32, 2 * MIB),
)

PAGE_SPECS_QUICK: tuple[ReadSpec, ...] = (
    ReadSpec(False, 4, 16 * MIB),
    ReadSpec(False, 16, 2 * MIB),
)


def best_of(
    name: str,
    unit: str,
    patterns: Sequence[Pattern],
    *,
    notes: Sequence[str] = (),
    size_bytes: int | None = None,
    method: str = "",
) -> Ceiling:
    """The ceiling ``name``: the pattern with the highest median wins; every pattern is
    kept. Patterns whose notes say eviction failed (memory reads, not disk reads)
    win only when no other pattern was measured, and then the ceiling says so."""
    measured = [p for p in patterns if p.value is not None]
    if not measured:
        raise ValueError(f"{name}: no pattern measured")
    clean = [p for p in measured if not any(EVICTION_FAILED in n for n in p.notes)]
    pool = clean or measured
    win = max(pool, key=lambda p: p.value or 0.0)
    out_notes = list(notes)
    if not clean:
        out_notes.append(f"{EVICTION_FAILED} for every pattern: these are memory reads")
    how = method or f"best of {len(measured)} patterns"
    return Ceiling(
        name=name,
        value=win.value,
        unit=unit,
        trials=win.trials,
        method=f"{how}; winner: {win.label}",
        notes=tuple(out_notes),
        size_bytes=size_bytes,
        patterns=tuple(patterns),
        winner=win.label,
    )


def pattern_from_trials(
    label: str,
    trials: Sequence[float],
    *,
    mode: str,
    threads: int | None = None,
    request_bytes: int | None = None,
    files: int = 1,
    origin: str = "probe",
    notes: Sequence[str] = (),
) -> Pattern:
    """A pattern whose value is the median of ``trials``."""
    return Pattern(
        label=label,
        value=median(trials) if trials else None,
        trials=tuple(trials),
        mode=mode,
        threads=threads,
        request_bytes=request_bytes,
        files=files,
        origin=origin,
        notes=tuple(notes),
    )


def resident_fraction(fd: int, size: int) -> float | None:
    """Fraction of the first ``size`` bytes of ``fd`` in the page cache, or None where
    the kernel cannot tell (the probe then reports without it)."""
    try:
        return resident_in_fd(fd, size) / size if size > 0 else None
    except OSError:
        return None


def aligned_buffers(count: int, nbytes: int) -> list[mmap.mmap]:
    """Page-aligned buffers (anonymous mmaps), as O_DIRECT needs, faulted in now so
    that no timed read pays for first-touching its destination."""
    import numpy as np

    bufs = [mmap.mmap(-1, nbytes) for _ in range(count)]
    for b in bufs:
        np.frombuffer(b, dtype=np.uint8)[:: mmap.PAGESIZE] = 1
    return bufs


def pool_bytes(specs: Sequence[ReadSpec], size: int) -> int:
    """Bytes of one buffer pool from which every spec's threads get their requests."""
    return max((s.threads * min(s.request_bytes, size) for s in specs), default=0)


def timed_read(fd: int, size: int, buffers: Sequence[Any]) -> float:
    """GB/s of reading ``[0, size)`` of ``fd``, one thread per buffer, requests the
    buffers' size."""
    t0 = time.perf_counter_ns()
    read_scratch(fd, size, buffers)
    return gbps_of(size, (time.perf_counter_ns() - t0) / 1e9)


def measure_read(
    fd_buf: int,
    fd_direct: int,
    size: int,
    spec: ReadSpec,
    trials: int,
    *,
    cold: bool,
    origin: str = "probe",
    pool: mmap.mmap | None = None,
) -> Pattern:
    """Time ``trials`` reads of ``[0, size)`` with ``spec``. ``cold``: the file is
    evicted before each and ``mincore`` must find it gone, else the pattern is noted
    as a memory read. ``fd_direct`` < 0 skips O_DIRECT specs (no pattern value).
    ``pool``: pre-faulted memory to carve the threads' buffers from (see
    :func:`pool_bytes`); without it they are allocated here."""
    fd = fd_direct if spec.direct else fd_buf
    if fd < 0:
        return pattern_from_trials(
            spec.label, [], mode=spec.mode, threads=spec.threads,
            request_bytes=spec.request_bytes, origin=origin, notes=("O_DIRECT unavailable",),
        )  # fmt: skip
    request = min(spec.request_bytes, size)
    bufs: Sequence[Any]
    if pool is not None and len(pool) >= spec.threads * request:
        # Offsets are whole requests (>= 1 MiB): page-aligned, as O_DIRECT needs.
        whole = memoryview(pool)
        bufs = [whole[i * request : (i + 1) * request] for i in range(spec.threads)]
    else:
        bufs = aligned_buffers(spec.threads, request)
    rates: list[float] = []
    worst = 0.0
    for _ in range(trials):
        if cold:
            evict_fd(fd_buf)
            worst = max(worst, resident_fraction(fd_buf, size) or 0.0)
        rates.append(timed_read(fd, size, bufs))
    notes = []
    if cold and worst > COLD_MAX_FRACTION:
        notes.append(f"{EVICTION_FAILED}: {worst:.0%} of the file stayed in memory")
    return pattern_from_trials(
        spec.label, rates, mode=spec.mode, threads=spec.threads,
        request_bytes=spec.request_bytes, files=spec.files, origin=origin, notes=notes,
    )  # fmt: skip
