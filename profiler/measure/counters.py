"""Counter tracks over a load: sampled often enough to draw rate curves.

A background thread reads, every ``interval_s``: the bytes this process has caused
to be read from storage (``/proc/self/io`` ``read_bytes``; page-cache hits do not
count), anonymous and file-backed RSS (``/proc/self/statm``; mmap'd weights are
file-backed), and on CUDA the memory torch has allocated on the device. Each wake-up
takes the GIL from the load it watches, so the interval trades resolution against
cost; at 10 ms a 2-3 s load gets a few hundred points, and the cost is measured by
the trace-overhead benchmark (suites/test_trace_overhead.py).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from profiler.records.trace import CounterTrack

DISK_READ = "disk read"
RSS_ANON = "RSS anonymous"
RSS_FILE = "RSS file-backed"
GPU_ALLOCATED = "GPU allocated"


def _proc_io_reader() -> Callable[[], int | None]:
    try:
        fd = os.open("/proc/self/io", os.O_RDONLY)
    except OSError:
        return lambda: None

    def read() -> int | None:
        try:
            for line in os.pread(fd, 4096, 0).splitlines():
                if line.startswith(b"read_bytes:"):
                    return int(line.split()[1])
        except OSError:
            return None
        return None

    return read


def _statm_reader() -> Callable[[], tuple[int, int] | None]:
    page = os.sysconf("SC_PAGE_SIZE")
    try:
        fd = os.open("/proc/self/statm", os.O_RDONLY)
    except OSError:
        return lambda: None

    def read() -> tuple[int, int] | None:
        try:
            fields = os.pread(fd, 256, 0).split()
        except OSError:
            return None
        rss, shared = int(fields[1]) * page, int(fields[2]) * page
        return rss - shared, shared

    return read


class CounterSampler:
    """Samples the counters in a daemon thread between :meth:`start` and :meth:`stop`.

    ``gpu_allocated`` (a callable returning bytes, e.g. ``torch.cuda.memory_allocated``
    bound to the device) adds the GPU track; it must not synchronize the device.
    """

    def __init__(
        self,
        interval_s: float = 0.01,
        *,
        gpu_allocated: Callable[[], int] | None = None,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.interval_s = interval_s
        self.gpu_allocated = gpu_allocated
        self.clock = clock
        self._io = _proc_io_reader()
        self._statm = _statm_reader()
        self._times: list[int] = []
        self._disk: list[float] = []
        self._anon: list[float] = []
        self._file: list[float] = []
        self._gpu: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> None:
        now = self.clock()
        io = self._io()
        mem = self._statm()
        gpu = self.gpu_allocated() if self.gpu_allocated is not None else None
        self._times.append(now)
        self._disk.append(float(io) if io is not None else float("nan"))
        self._anon.append(float(mem[0]) if mem else float("nan"))
        self._file.append(float(mem[1]) if mem else float("nan"))
        if gpu is not None:
            self._gpu.append(float(gpu))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def start(self) -> None:
        self._stop.clear()
        self.sample()
        self._thread = threading.Thread(target=self._loop, name="llmprof-counters", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.sample()

    def tracks(self) -> list[CounterTrack]:
        times = tuple(self._times)
        out = [
            CounterTrack(DISK_READ, "bytes", times, tuple(self._disk), cumulative=True),
            CounterTrack(RSS_ANON, "bytes", times, tuple(self._anon)),
            CounterTrack(RSS_FILE, "bytes", times, tuple(self._file)),
        ]
        if len(self._gpu) == len(times):
            out.append(CounterTrack(GPU_ALLOCATED, "bytes", times, tuple(self._gpu)))
        return [t for t in out if not all(v != v for v in t.values)]  # drop all-NaN tracks
