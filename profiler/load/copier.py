"""The fast path's copier: checkpoint files to one device buffer each, started in the
background so that the tokenizer and the meta-device model build overlap the read.

On CUDA, reader threads ``pread`` chunks into their own slots of a pinned pool and
queue each slot's copy with ``cudaMemcpyAsync`` on the thread's own stream
(:mod:`profiler.load.cudart`: ctypes calls release the GIL); an event per slot
says when the slot may be read into again, so several copies are in flight per
thread. The pool is allocated once per process and reused by later loads (its
set-up is the ``pin_pool`` stage, zero when reused). Without the CUDA runtime the
torch copier of :mod:`profiler.load.read` serves; on a CPU device the chunks land
straight in host tensors.

Plan measured on the lent H200, 15.2 GB warm (reports/gpu-h200/fastpath-sweep.md):
16 threads × 4 MiB × 3 slots through ctypes reached 51.8 GB/s (pinned ceiling
53–54); 16 MiB chunks 44.9; 2 MiB 34.1.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from profiler.errors import UserError
from profiler.load.read import (
    Chunk,
    byte_view,
    chunk_plan,
    pinned_copier,
    pread_exact,
    read_chunks,
    run_shared,
)
from profiler.run.device_kind import is_gpu

if TYPE_CHECKING:
    import torch

    from profiler.load.cudart import CudaRuntime

MIB = 1 << 20

# While the main thread builds the tokenizer and the model in Python, a reader that
# returns from pread waits for the GIL up to the switch interval (5 ms by default):
# 16 readers then idle most of the time. A shorter interval for the overlap only.
OVERLAP_SWITCH_INTERVAL_S = 0.0005


@dataclass(frozen=True)
class CopyPlan:
    """``threads`` readers of ``chunk_bytes`` chunks, ``slots`` pinned slots each."""

    threads: int
    chunk_bytes: int
    slots: int = 3

    @property
    def pool_bytes(self) -> int:
        return self.threads * self.slots * self.chunk_bytes


@dataclass
class CopyResult:
    """What the copier did, timed with the recorder's clock."""

    buffers: list[torch.Tensor]
    start_ns: int
    end_ns: int
    engine: str  # "cudart" | "torch" | "host"
    pool_start_ns: int | None = None
    pool_end_ns: int | None = None
    pool_reused: bool = False
    disk_read_bytes: int | None = None


class _Pool:
    """One pinned host area per process, grown when a plan needs more, reused."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # held by the load that uses the pool
        self.ptr = 0
        self.nbytes = 0

    def ensure(self, rt: CudaRuntime, nbytes: int) -> bool:
        """Make the pool at least ``nbytes``; True when it was reused as it was."""
        if self.nbytes >= nbytes:
            return True
        if self.ptr:
            rt.free_host(self.ptr)
            self.ptr, self.nbytes = 0, 0
        self.ptr = rt.host_alloc(nbytes)
        self.nbytes = nbytes
        return False


POOL = _Pool()


def cudart_worker(
    rt: CudaRuntime,
    device_index: int,
    base: int,
    plan: CopyPlan,
    fds: Sequence[int],
    dptrs: Sequence[int],
) -> Callable[[int, Iterator[Chunk]], None]:
    """pread into this thread's slots; cudaMemcpyAsync each on the thread's stream."""
    chunk, slots = plan.chunk_bytes, plan.slots

    def worker(k: int, feed: Iterator[Chunk]) -> None:
        rt.set_device(device_index)
        stream = rt.stream()
        events = [rt.event() for _ in range(slots)]
        ptrs = [base + (k * slots + s) * chunk for s in range(slots)]
        views = [memoryview((ctypes.c_char * chunk).from_address(p)).cast("B") for p in ptrs]
        used = [False] * slots
        try:
            for j, c in enumerate(feed):
                s = j % slots
                if used[s]:
                    rt.event_sync(events[s])  # the copy out of this slot is done
                pread_exact(fds[c.file], views[s][: c.length], c.offset)
                rt.copy_h2d_async(dptrs[c.file] + c.offset, ptrs[s], c.length, stream)
                rt.event_record(events[s], stream)
                used[s] = True
        finally:
            # Never leave a copy reading a slot that the next load may overwrite.
            rt.stream_sync(stream)
            for e in events:
                rt.event_destroy(e)
            rt.stream_destroy(stream)

    return worker


class CopyJob:
    """The copier running in a background thread; :meth:`wait` returns its result."""

    def __init__(
        self, paths: Sequence[Path], device: str, plan: CopyPlan, clock: Callable[[], int]
    ) -> None:
        self.paths = list(paths)
        self.device = device
        self.plan = plan
        self.clock = clock
        self.result: CopyResult | None = None
        self.error: BaseException | None = None
        self._old_interval = sys.getswitchinterval()
        self._thread = threading.Thread(target=self._run, name="llmprof-copier", daemon=True)

    def start(self) -> CopyJob:
        sys.setswitchinterval(min(self._old_interval, OVERLAP_SWITCH_INTERVAL_S))
        self._thread.start()
        return self

    def wait(self) -> CopyResult:
        self._thread.join()
        sys.setswitchinterval(self._old_interval)
        if self.error is not None:
            if isinstance(self.error, EOFError):
                raise UserError(
                    f"{self.paths[0].parent}: a checkpoint file ended early while reading: "
                    "re-download it"
                ) from self.error
            raise self.error
        assert self.result is not None
        return self.result

    def _run(self) -> None:
        from profiler.measure.recorder import disk_read_bytes

        try:
            io0 = disk_read_bytes()
            self.result = self._copy()
            io1 = disk_read_bytes()
            if io0 is not None and io1 is not None:
                self.result.disk_read_bytes = io1 - io0
        except BaseException as e:  # re-raised in wait(), in the caller's thread
            self.error = e

    def _copy(self) -> CopyResult:
        import torch

        from profiler.load.cudart import runtime

        start = self.clock()
        sizes = [p.stat().st_size for p in self.paths]
        chunks = chunk_plan(sizes, self.plan.chunk_bytes)
        gpu = is_gpu(self.device)
        dev = torch.device(self.device)
        if gpu:
            if dev.index is None:  # plain "cuda": the current device, named
                dev = torch.device("cuda", torch.cuda.current_device())
            torch.cuda.set_device(dev)
        dst = [torch.empty(s, dtype=torch.uint8, device=dev) for s in sizes]
        fds = [os.open(p, os.O_RDONLY) for p in self.paths]
        try:
            if not gpu:
                read_chunks(fds, [byte_view(t) for t in dst], chunks, self.plan.threads)
                return CopyResult(dst, start, self.clock(), "host")
            # Fresh blocks may still be in use by work queued on torch's stream.
            torch.cuda.current_stream(dev).synchronize()
            rt = runtime()
            if rt is None:
                work = pinned_copier(fds, dst, self.device, self.plan.chunk_bytes)
                run_shared(chunks, self.plan.threads, work)
                torch.cuda.synchronize(dev)
                return CopyResult(dst, start, self.clock(), "torch")
            return self._copy_cudart(rt, dev, dst, fds, chunks, start)
        finally:
            for fd in fds:
                os.close(fd)

    def _copy_cudart(
        self,
        rt: CudaRuntime,
        dev: Any,
        dst: list[torch.Tensor],
        fds: Sequence[int],
        chunks: Sequence[Chunk],
        start: int,
    ) -> CopyResult:
        index = int(dev.index)
        with POOL.lock:
            p0 = self.clock()
            reused = POOL.ensure(rt, self.plan.pool_bytes)
            p1 = self.clock()
            work = cudart_worker(rt, index, POOL.ptr, self.plan, fds, [t.data_ptr() for t in dst])
            run_shared(chunks, self.plan.threads, work)
        return CopyResult(dst, start, self.clock(), "cudart", p0, p1, reused)


def start_copy(
    paths: Sequence[Path],
    device: str,
    plan: CopyPlan,
    clock: Callable[[], int] = time.monotonic_ns,
) -> CopyJob:
    """Start reading ``paths`` to ``device`` in the background."""
    return CopyJob(paths, device, plan, clock).start()
