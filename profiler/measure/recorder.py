"""The stage recorder: clean boundaries, one record per stage.

A stage is timed with CLOCK_MONOTONIC; on a GPU the device is synchronized before
the end time is read, so a stage's time includes the device work it queued (and no
stage inherits the queue of the one before). Around each stage the recorder reads
memory (before, after, peaks) and the kernel's I/O counters, so a record says how
many bytes really came from storage while it ran.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO

from profiler.measure.gpu import GpuProbe
from profiler.measure.imports import ImportTracker
from profiler.measure.memory import PeakSampler, snapshot, stage_memory
from profiler.records.stage import StageRecord
from profiler.run.faults import injected_slowdowns


def disk_read_bytes() -> int | None:
    """Bytes this process caused to be fetched from storage (``/proc/self/io``).

    Page-cache hits do not count: a warm read reports ~0 here, which is the point.
    """
    try:
        with open("/proc/self/io", "rb") as f:
            for line in f:
                if line.startswith(b"read_bytes:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def major_faults() -> int:
    """Major page faults of this process so far (faults that waited for storage)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_majflt


@dataclass
class StageHandle:
    """What code inside a stage can tell the recorder while the stage runs."""

    name: str
    bytes: int | None = None
    bytes_what: str = ""
    notes: list[str] = field(default_factory=list)
    counters: dict[str, float | int | str] = field(default_factory=dict)
    _progress: Callable[[int, int], None] | None = None

    def add_bytes(self, n: int) -> None:
        """Count ``n`` more payload bytes."""
        self.bytes = (self.bytes or 0) + n

    def note(self, text: str) -> None:
        """Add a note to the stage record (once)."""
        if text not in self.notes:
            self.notes.append(text)

    def progress(self, done: int, total: int) -> None:
        """Report progress on stderr for a long stage (never used for timing)."""
        if self._progress is not None:
            self._progress(done, total)


class _Progress:
    """Progress for long stages on stderr: silent for the first second, then a
    line at most every half second. Never used for timing decisions."""

    def __init__(self, name: str, start_ns: int, clock: Callable[[], int], stream: IO[str]):
        self.name, self.start_ns, self.clock, self.stream = name, start_ns, clock, stream
        self.last_ns = 0
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        now = self.clock()
        if now - self.start_ns < 1_000_000_000 or now - self.last_ns < 500_000_000:
            return
        self.last_ns = now
        elapsed = (now - self.start_ns) / 1e9
        rate = done / elapsed / 1e9 if elapsed > 0 else 0.0
        pct = 100.0 * done / total if total else 0.0
        self.stream.write(f"\r  {self.name}: {pct:5.1f}%  {done / 1e9:.2f} GB  {rate:.2f} GB/s")
        self.stream.flush()
        self.shown = True

    def finish(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


def _progress_enabled() -> bool:
    flag = os.environ.get("LLMPROF_PROGRESS")
    if flag is not None:
        return flag not in ("0", "")
    return sys.stderr.isatty()


class Recorder:
    """Collects StageRecords. ``sync`` is called before every clock read that ends a
    stage (``torch.cuda.synchronize`` on GPU); ``clock`` is injectable for tests."""

    def __init__(
        self,
        *,
        gpu: GpuProbe | None = None,
        sync: Callable[[], None] | None = None,
        clock: Callable[[], int] = time.monotonic_ns,
        sample_memory: bool = True,
        progress: bool | None = None,
    ) -> None:
        self.gpu = gpu
        self.sync = sync
        self.clock = clock
        self.sample_memory = sample_memory
        self.progress = _progress_enabled() if progress is None else progress
        self.records: list[StageRecord] = []
        self.slowdowns = injected_slowdowns()
        # Set by the child process, which installs it before anything else: every
        # stage then reports its lazy imports apart from its own work.
        self.imports: ImportTracker | None = None

    def add(self, record: StageRecord) -> None:
        """Add a record timed outside :meth:`stage` (``python_start``, from the spawn time)."""
        self.records.append(record)

    def skip(self, name: str, reason: str) -> None:
        """Record a stage that did not run, with the reason."""
        now = self.clock()
        self.records.append(
            StageRecord(name=name, status="skipped", start_ns=now, end_ns=now, notes=(reason,))
        )

    @contextmanager
    def stage(self, name: str, bytes_what: str = "") -> Iterator[StageHandle]:
        """Time the block as the stage ``name``; ``bytes_what`` says what its bytes are."""
        handle = StageHandle(name=name, bytes_what=bytes_what)
        sampler = PeakSampler(self.gpu) if self.sample_memory else None
        before = snapshot(self.gpu)
        if self.gpu is not None:
            self.gpu.reset_peaks()
        if sampler is not None:
            sampler.start()
        io0, faults0, mods0 = disk_read_bytes(), major_faults(), len(sys.modules)
        energy0 = self.gpu.energy_j() if self.gpu is not None else None
        start = self.clock()
        prog = _Progress(name, start, self.clock, sys.stderr) if self.progress else None
        handle._progress = prog
        status = "ok"
        try:
            yield handle
            if name in self.slowdowns:
                time.sleep(self.slowdowns[name])
                handle.note(f"test-only slowdown of {self.slowdowns[name]} s injected")
        except BaseException as e:
            status = "failed"
            handle.note(f"failed: {type(e).__name__}: {e}"[:300])
            raise
        finally:
            if self.sync is not None and status == "ok":
                self.sync()
            end = self.clock()
            io1, faults1 = disk_read_bytes(), major_faults()
            if prog is not None:
                prog.finish()
            peaks = sampler.stop() if sampler is not None else None
            after = snapshot(self.gpu)
            memory = stage_memory(before, after, peaks, self.gpu) if peaks else None
            handle.counters.setdefault("major_faults", faults1 - faults0)
            energy1 = self.gpu.energy_j() if energy0 is not None and self.gpu else None
            if energy0 is not None and energy1 is not None and energy1 >= energy0:
                # whole-GPU joules from NVML's counter; mean power = this / stage time
                handle.counters.setdefault("energy_j", energy1 - energy0)
            if len(sys.modules) > mods0:
                # First use of a model or tokenizer class imports its module: a real
                # cost users pay once per process, named so it is not mistaken.
                handle.counters.setdefault("modules_imported", len(sys.modules) - mods0)
            import_s, import_modules, import_packages, gc_s = stage_imports(
                self.imports, start, end
            )
            self.records.append(
                StageRecord(
                    name=name,
                    status=status,  # type: ignore[arg-type]
                    start_ns=start,
                    end_ns=end,
                    bytes=handle.bytes,
                    bytes_what=handle.bytes_what,
                    disk_read_bytes=(io1 - io0) if io0 is not None and io1 is not None else None,
                    memory=memory,
                    notes=tuple(handle.notes),
                    counters=dict(handle.counters),
                    import_s=import_s,
                    import_modules=import_modules,
                    import_packages=import_packages,
                    gc_s=gc_s,
                )
            )


# Packages named in a stage's import breakdown; the rest are summed as "other".
TOP_PACKAGES = 12


def stage_imports(
    tracker: ImportTracker | None, start_ns: int, end_ns: int
) -> tuple[float, int, dict[str, float], float]:
    """The import fields of a stage record for ``[start_ns, end_ns)`` (none without
    a tracker): import wall time, modules loaded, own seconds by top-level package,
    and garbage collection outside the imports."""
    if tracker is None:
        return 0.0, 0, {}, 0.0
    from profiler.analysis.timeline import gc_outside_imports, import_time, imports_by_package

    spans = list(tracker.spans)
    it = import_time(spans, start_ns, end_ns)
    packages = imports_by_package(spans, start_ns, end_ns)
    by_package = {p.package: round(p.seconds, 6) for p in packages[:TOP_PACKAGES]}
    rest = sum(p.seconds for p in packages[TOP_PACKAGES:])
    if rest > 0:
        by_package["other"] = round(rest, 6)
    return it.seconds, it.modules, by_package, gc_outside_imports(spans, start_ns, end_ns)


class NullRecorder(Recorder):
    """Runs the same stage code with no measurement at all: the baseline of the
    instrumentation-overhead benchmark (suites/test_overhead.py)."""

    def __init__(self) -> None:
        super().__init__(sample_memory=False, progress=False)

    def skip(self, name: str, reason: str) -> None:
        return None

    @contextmanager
    def stage(self, name: str, bytes_what: str = "") -> Iterator[StageHandle]:
        yield StageHandle(name=name, bytes_what=bytes_what)
