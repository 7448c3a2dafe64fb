"""The file ceilings: disk_read, page_cache_read_1t and page_cache_read.

All three read one scratch file, written here with incompressible blocks on the
filesystem of the model folder, sized from the model and removed on every exit path
(:mod:`profiler.machine.scratch`). Each ceiling is the best of several read patterns
(:mod:`profiler.machine.patterns`): ``O_DIRECT`` and buffered, several thread counts
and request sizes, every disk trial on a file evicted and checked cold with
``mincore``. Where reads of a cold file run as fast as the page cache, something
below the guest caches the disk, and the ceiling says so.
Reads go through :mod:`profiler.load.read`, the reader the loads use, and page-cache
state is measured and judged with :mod:`profiler.caches.page`.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from profiler.caches.page import WARM_MIN_FRACTION, evict_fd
from profiler.errors import UserError
from profiler.load.read import chunk_plan, read_chunks, read_scratch
from profiler.machine.patterns import (
    ReadSpec,
    aligned_buffers,
    best_of,
    measure_read,
    pool_bytes,
    resident_fraction,
)
from profiler.machine.plan import BLOCK_BYTES, MIB, READ_THREADS, ProbePlan
from profiler.machine.scratch import check_free, scratch_file
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
            check_free(cand, size, shutil.disk_usage(cand).free)
            return cand
    raise UserError(
        f"no writable folder on the filesystem of {folder} for the disk probe's scratch "
        "file: pass --path to a writable folder on the same disk"
    )


def write_scratch(path: Path, size: int) -> None:
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


def host_cache_note(disk: Ceiling, page_1t: Ceiling, vm: bool) -> str | None:
    """A note when reads of an evicted, ``mincore``-cold file run as fast as the same
    reads from the page cache: something below the guest (the hypervisor's host page
    cache on a virtual machine, a storage cache elsewhere) serves them, and the disk
    ceiling is what this guest gets, not what the physical disk does.

    Like with like: the cold buffered 1-thread pattern (the disk ceiling's value when
    it has none) against the best warm 1-thread trial, so that a busy machine that
    slowed one warm trial does not pass for a cached disk."""
    cold = next(
        (p.value for p in disk.patterns if p.mode == "buffered" and p.threads == 1), disk.value
    )
    warm = max(page_1t.trials) if page_1t.trials else page_1t.value
    if cold is None or warm is None or warm <= 0:
        return None
    if cold < HOST_CACHE_MIN_RATIO * warm:
        return None
    where = "the host caches this virtual disk" if vm else "a cache below the page cache"
    return (
        f"cold reads ran at {cold / warm:.0%} of the same reads from the page cache: "
        f"{where}; this ceiling is what the guest gets"
    )


# A cold read at this fraction of a single-thread page-cache read is no disk read.
HOST_CACHE_MIN_RATIO = 0.7


def probe_files(
    folder: Path, plan: ProbePlan, fs_type: str | None, say: Callable[[str], None]
) -> list[Ceiling]:
    """disk_read, page_cache_read_1t and page_cache_read, on one scratch file sized
    by the plan (:mod:`profiler.machine.scratch`), removed on every exit path."""
    size = plan.disk_bytes
    scratch = scratch_dir(folder, size)
    with scratch_file(scratch, size) as path:
        say(f"writing a {size / MIB:.0f} MiB scratch file in {scratch}")
        write_scratch(path, size)
        fd_buf = os.open(path, os.O_RDONLY)
        fd_direct = -1
        direct_error: str | None = None
        if hasattr(os, "O_DIRECT"):
            try:
                fd_direct = os.open(path, os.O_RDONLY | os.O_DIRECT)
            except OSError as e:
                direct_error = e.strerror or str(e)
        else:
            direct_error = "no O_DIRECT on this platform"
        try:
            evict_fd(fd_buf)
            fd_direct, direct_error = _check_direct(fd_direct, direct_error, size)
            disk = _probe_disk(fd_buf, fd_direct, direct_error, plan, fs_type, say)
            pages = _probe_page_cache(fd_buf, plan, say)
        finally:
            for fd in (fd_buf, fd_direct):
                if fd >= 0:
                    os.close(fd)
    note = host_cache_note(disk, pages[0], on_virtual_machine())
    if note:
        disk = replace(disk, notes=(*disk.notes, note))
    return [disk, *pages]


def _check_direct(fd_direct: int, error: str | None, size: int) -> tuple[int, str | None]:
    """One small O_DIRECT read (the first request, the device queues): a filesystem
    that opens with O_DIRECT but refuses the reads gets the buffered patterns only."""
    if fd_direct < 0:
        return fd_direct, error
    try:
        read_scratch(fd_direct, min(size, BLOCK_BYTES), aligned_buffers(1, BLOCK_BYTES))
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise
        os.close(fd_direct)
        return -1, "reads with O_DIRECT refused (EINVAL)"
    return fd_direct, error


def _probe_disk(
    fd_buf: int,
    fd_direct: int,
    direct_error: str | None,
    plan: ProbePlan,
    fs_type: str | None,
    say: Callable[[str], None],
) -> Ceiling:
    size = plan.disk_bytes
    specs = plan.disk_specs
    if fd_direct < 0:
        specs = tuple(s for s in specs if not s.direct)
    notes: list[str] = []
    if direct_error:
        notes.append(f"O_DIRECT unavailable ({direct_error}): buffered patterns only")
    patterns = []
    # One pre-faulted pool for every pattern's buffers: no timed read first-touches
    # its destination, and the faults are paid once.
    pool = aligned_buffers(1, pool_bytes(specs, size))[0]
    for spec in specs:
        say(f"disk_read: {spec.label}, {plan.disk_trials} x {size / MIB:.0f} MiB cold")
        patterns.append(
            measure_read(fd_buf, fd_direct, size, spec, plan.disk_trials, cold=True, pool=pool)
        )
    if fs_type in ("tmpfs", "ramfs"):
        notes.append(f"{fs_type} keeps files in memory: this is no disk")
    method = (
        f"best of {len(patterns)} read patterns of a {size / MIB:.0f} MiB scratch file, "
        f"evicted and checked cold (mincore) before each of {plan.disk_trials} trials"
    )
    return best_of("disk_read", GBPS, patterns, notes=notes, size_bytes=size, method=method)


def _probe_page_cache(fd_buf: int, plan: ProbePlan, say: Callable[[str], None]) -> list[Ceiling]:
    size = min(plan.page_bytes, plan.disk_bytes)
    notes = list(plan.notes)
    say(f"page_cache_read: {len(plan.page_specs) + 1} patterns x {size / MIB:.0f} MiB warm")
    single = ReadSpec(False, 1, BLOCK_BYTES)
    pool = aligned_buffers(1, pool_bytes([single, *plan.page_specs], size))[0]
    # Warm-up pass: brings the file into the page cache.
    warmup = ReadSpec(False, READ_THREADS, BLOCK_BYTES)
    measure_read(fd_buf, -1, size, warmup, 1, cold=False, pool=pool)
    frac = resident_fraction(fd_buf, size)
    if frac is not None and frac < WARM_MIN_FRACTION:
        notes.append(f"only {frac:.0%} of the file stayed in the page cache")
    one = measure_read(fd_buf, -1, size, single, plan.trials, cold=False, pool=pool)
    many = [
        measure_read(fd_buf, -1, size, s, plan.trials, cold=False, pool=pool)
        for s in plan.page_specs
    ]
    what = f"buffered pread of a resident {size / MIB:.0f} MiB file; median of {plan.trials}"
    return [
        best_of(
            "page_cache_read_1t", GBPS, [one], notes=notes, size_bytes=size,
            method=f"{what}, 1 thread",
        ),
        best_of(
            "page_cache_read", GBPS, many, notes=notes, size_bytes=size,
            method=f"{what}, best of {len(many)} patterns",
        ),
    ]  # fmt: skip
