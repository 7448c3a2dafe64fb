"""Parallel ``pread``: the one reader behind every bulk read llmprof times.

The staged view's ``weight_read``, the fast path's ``read_copy`` (into host memory on
the CPU, through pinned chunks on CUDA), the GGUF read and the ceilings' disk and
page-cache probes all read with :func:`pread_exact` on the workers of
:func:`run_shared`. A stage and the ceiling it is compared with therefore issue the
same requests the same way, and a fix to the reader reaches both.

Work is cut into :class:`Chunk` s by :func:`chunk_plan` and handed out in file order,
so a few threads read nearly sequentially. A worker that fails stops the others
after their current chunk; the first error is raised in the caller.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from profiler.errors import UserError
from profiler.run.device_kind import is_gpu

if TYPE_CHECKING:
    import torch

T = TypeVar("T")


@dataclass(frozen=True)
class Chunk:
    """One read request: ``length`` bytes of file number ``file`` at ``offset``."""

    file: int
    offset: int
    length: int


def chunk_plan(sizes: Sequence[int], chunk_bytes: int) -> list[Chunk]:
    """Chunks of at most ``chunk_bytes`` covering every file, in file order."""
    if chunk_bytes <= 0:
        raise ValueError(f"chunk_bytes must be positive, not {chunk_bytes}")
    return [
        Chunk(i, off, min(chunk_bytes, size - off))
        for i, size in enumerate(sizes)
        for off in range(0, size, chunk_bytes)
    ]


def byte_view(buffer: torch.Tensor) -> memoryview:
    """The bytes of a contiguous CPU tensor as a writable ``memoryview`` (no copy)."""
    return buffer.numpy().data.cast("B")


def pread_exact(fd: int, view: memoryview, offset: int) -> None:
    """Fill ``view`` from ``fd`` at ``offset``; EOFError when the file ends first.

    ``preadv`` into the caller's memory: no intermediate buffer, and with an
    ``O_DIRECT`` descriptor the request goes to the device as it is (the caller
    then owns the alignment of ``view``, ``offset`` and its length).
    """
    done = 0
    while done < len(view):
        got = os.preadv(fd, [view[done:]], offset + done)
        if got <= 0:
            raise EOFError(f"file ended at byte {offset + done}, {len(view) - done} bytes short")
        done += got


class _Feed(Generic[T]):
    """Items handed out once each, in order, to any number of threads."""

    def __init__(self, items: Sequence[T]) -> None:
        self._items = items
        self._next = 0
        self._lock = threading.Lock()
        self.stopped = False

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        with self._lock:
            if self.stopped or self._next >= len(self._items):
                raise StopIteration
            item = self._items[self._next]
            self._next += 1
            return item


def run_shared(
    items: Sequence[T], threads: int, worker: Callable[[int, Iterator[T]], None]
) -> None:
    """Run ``worker(index, feed)`` on ``threads`` threads sharing one feed of ``items``.

    Each worker loops over the feed (which hands every item to exactly one of them)
    and may keep per-thread state: its own buffer, CUDA stream, ... With one thread
    the worker runs in the caller's thread. The first error of any worker is raised
    here once all have stopped.
    """
    feed = _Feed(items)
    if threads <= 1:
        worker(0, feed)
        return
    errors: list[BaseException] = []

    def guarded(i: int) -> None:
        try:
            worker(i, feed)
        except BaseException as e:  # raised in the caller below
            feed.stopped = True
            errors.append(e)

    pool = [
        threading.Thread(target=guarded, args=(i,), name=f"llmprof-read-{i}")
        for i in range(threads)
    ]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        raise errors[0]


def read_chunks(
    fds: Sequence[int],
    dests: Sequence[memoryview],
    chunks: Sequence[Chunk],
    threads: int,
    on_bytes: Callable[[int], None] | None = None,
) -> int:
    """Read each chunk to the same offset of its file's destination; returns bytes read.

    The destinations stay (memory a loader keeps); :func:`read_scratch` is the
    variant that reads into reused per-thread buffers.
    """

    def worker(_i: int, feed: Iterator[Chunk]) -> None:
        for c in feed:
            pread_exact(fds[c.file], dests[c.file][c.offset : c.offset + c.length], c.offset)
            if on_bytes is not None:
                on_bytes(c.length)

    run_shared(chunks, threads, worker)
    return sum(c.length for c in chunks)


def read_scratch(fd: int, size: int, buffers: Sequence[Any]) -> None:
    """Read ``[0, size)`` of ``fd``, each thread into its own reused buffer.

    One thread per buffer; requests are the buffers' length. Used where the bytes
    are not kept (the disk and GGUF reads): with page-aligned buffers (anonymous
    ``mmap``) and sizes that are whole buffers it also serves ``O_DIRECT``.
    """
    views = [memoryview(b).cast("B") for b in buffers]
    chunks = chunk_plan([size], len(views[0]))

    def worker(i: int, feed: Iterator[Chunk]) -> None:
        for c in feed:
            pread_exact(fd, views[i][: c.length], c.offset)

    run_shared(chunks, len(views), worker)


def read_file_into(
    path: Path,
    buffer: torch.Tensor,
    *,
    threads: int = 4,
    chunk_bytes: int = 64 * 1024 * 1024,
    on_bytes: Callable[[int], None] | None = None,
) -> int:
    """Read the whole file into ``buffer`` (uint8, contiguous, ≥ file size) with
    ``pread`` from ``threads`` workers; returns bytes read.

    Four workers by default because ``from_pretrained`` materializes tensors on a
    pool of four threads: the staged read then competes on equal terms.
    """
    size = path.stat().st_size
    if size == 0:
        return 0
    fd = os.open(path, os.O_RDONLY)
    try:
        return read_chunks(
            [fd], [byte_view(buffer)], chunk_plan([size], chunk_bytes), threads, on_bytes
        )
    except EOFError as e:
        raise UserError(f"{path}: file ended early while reading: re-download it") from e
    finally:
        os.close(fd)


def read_to_device(
    paths: Sequence[Path], device: str, *, threads: int, chunk_bytes: int
) -> list[torch.Tensor]:
    """Read every file into one device (or host) uint8 tensor per file.

    On the CPU the chunks land directly in the host tensors. On CUDA each worker
    reads into two pinned buffers of its own and copies each to the device on its
    own stream, so the next read overlaps the previous copy.
    """
    import torch

    sizes = [p.stat().st_size for p in paths]
    dst = [torch.empty(s, dtype=torch.uint8, device=device) for s in sizes]
    chunks = chunk_plan(sizes, chunk_bytes)
    fds = [os.open(p, os.O_RDONLY) for p in paths]
    try:
        if is_gpu(device):
            run_shared(chunks, threads, pinned_copier(fds, dst, device, chunk_bytes))
        else:
            read_chunks(fds, [byte_view(t) for t in dst], chunks, threads)
    except EOFError as e:
        raise UserError(
            f"{paths[0].parent}: a checkpoint file ended early while reading: re-download it"
        ) from e
    finally:
        for fd in fds:
            os.close(fd)
    return dst


def pinned_copier(
    fds: Sequence[int], dst: Sequence[torch.Tensor], device: str, chunk_bytes: int
) -> Callable[[int, Iterator[Chunk]], None]:
    """The CUDA worker of :func:`read_to_device`: pread into pinned double buffers,
    async copy to the device on the worker's own stream."""
    import torch

    def worker(_i: int, feed: Iterator[Chunk]) -> None:
        stream = torch.cuda.Stream(device=device)
        bufs = [torch.empty(chunk_bytes, dtype=torch.uint8, pin_memory=True) for _ in range(2)]
        done_events: list[Any] = [None, None]
        for k, c in enumerate(feed):
            slot = k % 2
            if done_events[slot] is not None:
                done_events[slot].synchronize()  # the copy out of this buffer finished
            buf = bufs[slot]
            pread_exact(fds[c.file], byte_view(buf)[: c.length], c.offset)
            target = dst[c.file][c.offset : c.offset + c.length]
            with torch.cuda.stream(stream):
                target.copy_(buf[: c.length], non_blocking=True)
                ev = torch.cuda.Event()
                ev.record(stream)
            done_events[slot] = ev
        stream.synchronize()

    return worker
