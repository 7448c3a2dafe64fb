"""The file ceilings: disk_read, page_cache_read_1t and page_cache_read.

All three read one scratch file, written here with incompressible blocks on the
filesystem of the model folder, and unlinked at once so that a crash leaves nothing.
The disk read uses ``O_DIRECT`` where the filesystem allows it (the page cache and,
on a virtual machine, much of the host's caching are bypassed); elsewhere buffered
reads after eviction, with the measured residency saying whether eviction worked.
Reads go through :mod:`profiler.load.read`, the reader the loads use, and page-cache
state is measured and judged with :mod:`profiler.caches.page`.
"""

from __future__ import annotations

import errno
import mmap
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from profiler.analysis.rates import gbps_of
from profiler.caches.page import COLD_MAX_FRACTION, WARM_MIN_FRACTION, evict_fd, resident_in_fd
from profiler.errors import UserError
from profiler.load.read import chunk_plan, read_chunks, read_scratch
from profiler.machine.plan import (
    BLOCK_BYTES,
    GIB,
    MIB,
    READ_THREADS,
    ProbePlan,
    ceiling_from_trials,
)
from profiler.records.ceilings import GBPS, Ceiling


def on_virtual_machine() -> bool:
    """Whether the CPU flags say a hypervisor runs this machine."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return " hypervisor" in line
    except OSError:
        pass
    return False


def scratch_dir(folder: Path, size: int) -> Path:
    """A writable folder on the same filesystem as ``folder``: the folder itself or
    its nearest writable parent on that filesystem."""
    import shutil

    dev = os.stat(folder).st_dev
    start = folder if folder.is_dir() else folder.parent
    for cand in (start, *start.parents):
        try:
            if os.stat(cand).st_dev != dev:
                break
        except OSError:
            break
        if os.access(cand, os.W_OK | os.X_OK):
            free = shutil.disk_usage(cand).free
            if free < size + 256 * MIB:
                raise UserError(
                    f"{cand}: {free / GIB:.1f} GiB free, the disk probe needs "
                    f"{size / GIB:.1f} GiB + 0.25 GiB: free space or pass a smaller --size"
                )
            return cand
    raise UserError(
        f"no writable folder on the filesystem of {folder} for the disk probe's scratch "
        "file: pass --path to a writable folder on the same disk"
    )


def _write_scratch(path: Path, size: int) -> None:
    """Write ``size`` bytes in which every block differs (no dedup or compression in
    the storage stack can shortcut the read), then flush them to the device."""
    import numpy as np

    base = np.frombuffer(os.urandom(BLOCK_BYTES), dtype=np.uint64).copy()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        for i in range(size // BLOCK_BYTES):
            block = np.bitwise_xor(base, np.uint64(i + 1))
            view = memoryview(block.tobytes())
            while len(view):
                n = os.write(fd, view)
                view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)


def read_seconds(
    fd: int, size: int, threads: int, *, scratch: Sequence[Any] = (), dest: memoryview | None = None
) -> float:
    """Seconds to read ``[0, size)`` of ``fd`` in BLOCK_BYTES requests from ``threads``
    threads with llmprof's one reader (:mod:`profiler.load.read`).

    Each block lands at its own offset of ``dest`` when given (a copy into memory
    that stays, as a loader does), else in one of the ``scratch`` buffers (one per
    thread, page-aligned for O_DIRECT).
    """
    t0 = time.perf_counter_ns()
    if dest is not None:
        read_chunks([fd], [dest], chunk_plan([size], BLOCK_BYTES), threads)
    else:
        read_scratch(fd, size, scratch[:threads])
    return (time.perf_counter_ns() - t0) / 1e9


def resident_fraction(fd: int, size: int) -> float | None:
    """Fraction of the first ``size`` bytes of ``fd`` in the page cache, or None where
    the kernel cannot tell (the probe then reports without it)."""
    try:
        return resident_in_fd(fd, size) / size if size > 0 else None
    except OSError:
        return None


def _aligned_buffers(count: int) -> list[mmap.mmap]:
    # Anonymous mmaps are page-aligned, which O_DIRECT needs.
    return [mmap.mmap(-1, BLOCK_BYTES) for _ in range(count)]


def probe_files(
    folder: Path, plan: ProbePlan, fs_type: str | None, say: Callable[[str], None]
) -> list[Ceiling]:
    """disk_read, page_cache_read_1t and page_cache_read, on one scratch file."""
    size = plan.disk_bytes
    scratch = scratch_dir(folder, size)
    path = scratch / f".llmprof-ceilings-{os.getpid()}.tmp"
    say(f"writing a {size / MIB:.0f} MiB scratch file in {scratch}")
    fd_buf = -1
    fd_direct = -1
    try:
        _write_scratch(path, size)
        fd_buf = os.open(path, os.O_RDONLY)
        evict_fd(fd_buf)
        direct_error: str | None = None
        if hasattr(os, "O_DIRECT"):
            try:
                fd_direct = os.open(path, os.O_RDONLY | os.O_DIRECT)
            except OSError as e:
                direct_error = e.strerror or str(e)
        else:
            direct_error = "no O_DIRECT on this platform"
    finally:
        # Unlinked now, the file lives until its descriptors close: a crash below
        # leaves nothing behind.
        try:
            os.unlink(path)
        except OSError:
            pass
    try:
        disk = _probe_disk(fd_buf, fd_direct, direct_error, plan, fs_type, say)
        pages = _probe_page_cache(fd_buf, plan, say)
        return [disk, *pages]
    finally:
        for fd in (fd_buf, fd_direct):
            if fd >= 0:
                os.close(fd)


def _probe_disk(
    fd_buf: int,
    fd_direct: int,
    direct_error: str | None,
    plan: ProbePlan,
    fs_type: str | None,
    say: Callable[[str], None],
) -> Ceiling:
    size = plan.disk_bytes
    bufs = _aligned_buffers(READ_THREADS)
    notes: list[str] = []
    warm = min(size, 4 * BLOCK_BYTES)
    if fd_direct >= 0:
        try:
            # warm-up: the first request and the device queues
            read_seconds(fd_direct, warm, READ_THREADS, scratch=bufs)
        except OSError as e:
            if e.errno != errno.EINVAL:
                raise
            direct_error = "reads with O_DIRECT refused (EINVAL)"
            fd_direct = -1
    trials: list[float] = []
    if fd_direct >= 0:
        say(f"disk_read: {plan.disk_trials} x {size / MIB:.0f} MiB, O_DIRECT")
        for _ in range(plan.disk_trials):
            evict_fd(fd_buf)
            trials.append(gbps_of(size, read_seconds(fd_direct, size, READ_THREADS, scratch=bufs)))
        method = (
            f"O_DIRECT read of a {size / MIB:.0f} MiB scratch file, "
            f"{BLOCK_BYTES // MIB} MiB requests, {READ_THREADS} threads; "
            f"median of {plan.disk_trials} after a warm-up"
        )
        if on_virtual_machine():
            notes.append(
                "virtual machine: the host may cache this virtual disk, so "
                "re-reads can beat the physical disk"
            )
    else:
        say(f"disk_read: {plan.disk_trials} x {size / MIB:.0f} MiB, buffered after eviction")
        notes.append(
            f"O_DIRECT unavailable ({direct_error}): buffered reads after "
            "evicting the file with fadvise(DONTNEED)"
        )
        read_seconds(fd_buf, warm, READ_THREADS, scratch=bufs)
        worst = 0.0
        for _ in range(plan.disk_trials):
            evict_fd(fd_buf)
            frac = resident_fraction(fd_buf, size)
            worst = max(worst, frac or 0.0)
            trials.append(gbps_of(size, read_seconds(fd_buf, size, READ_THREADS, scratch=bufs)))
        if worst > COLD_MAX_FRACTION:
            notes.append(
                f"eviction failed: {worst:.0%} of the file stayed in memory, so "
                "this is a memory read, not a disk read"
            )
        method = (
            f"buffered read of a {size / MIB:.0f} MiB scratch file evicted with "
            f"fadvise, {BLOCK_BYTES // MIB} MiB requests, {READ_THREADS} threads; "
            f"median of {plan.disk_trials} after a warm-up"
        )
    if fs_type in ("tmpfs", "ramfs"):
        notes.append(f"{fs_type} keeps files in memory: this is no disk")
    return ceiling_from_trials("disk_read", GBPS, trials, method, notes, size)


def _probe_page_cache(fd_buf: int, plan: ProbePlan, say: Callable[[str], None]) -> list[Ceiling]:
    size = plan.page_bytes
    dst = bytearray(size)
    whole = memoryview(dst)
    notes = list(plan.notes)
    say(f"page_cache_read: {plan.trials} x {size / MIB:.0f} MiB, 1 and {READ_THREADS} threads")
    # Warm-up pass: brings the file into the page cache and faults the destination in.
    read_seconds(fd_buf, size, READ_THREADS, dest=whole)
    frac = resident_fraction(fd_buf, size)
    if frac is not None and frac < WARM_MIN_FRACTION:
        notes.append(f"only {frac:.0%} of the file stayed in the page cache")
    out = []
    for name, threads in (("page_cache_read_1t", 1), ("page_cache_read", READ_THREADS)):
        trials = [
            gbps_of(size, read_seconds(fd_buf, size, threads, dest=whole))
            for _ in range(plan.trials)
        ]
        method = (
            f"buffered pread of a resident {size / MIB:.0f} MiB file into a "
            f"pre-faulted buffer, {BLOCK_BYTES // MIB} MiB requests, {threads} "
            f"thread(s); median of {plan.trials} after a warm-up"
        )
        out.append(ceiling_from_trials(name, GBPS, trials, method, notes, size))
    del whole
    return out
