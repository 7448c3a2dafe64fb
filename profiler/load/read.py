"""TODO: docstring."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from profiler.errors import UserError

if TYPE_CHECKING:
    import torch
import threading


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
    view = memoryview(buffer.numpy()).cast("B")
    fd = os.open(path, os.O_RDONLY)
    try:

        def work(offset: int) -> int:
            n = min(chunk_bytes, size - offset)
            done = 0
            while done < n:
                got = os.preadv(fd, [view[offset + done : offset + n]], offset + done)
                if got <= 0:
                    raise UserError(f"{path}: file ended early while reading: re-download it")
                done += got
            if on_bytes is not None:
                on_bytes(n)
            return n

        offsets = range(0, size, chunk_bytes)
        if threads <= 1:
            total = sum(work(o) for o in offsets)
        else:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                total = sum(pool.map(work, offsets))
    finally:
        os.close(fd)
    return total


def chunk_plan(sizes: Sequence[int], chunk: int) -> list[tuple[int, int, int]]:
    """(file index, offset, length) chunks covering every file, in file order."""
    out: list[tuple[int, int, int]] = []
    for i, size in enumerate(sizes):
        out.extend((i, off, min(chunk, size - off)) for off in range(0, size, chunk))
    return out


def read_to_device(
    paths: Sequence[Path],
    device: str,
    *,
    threads: int,
    chunk_bytes: int,
) -> list[torch.Tensor]:
    """Read every file into one device (or host) uint8 tensor per file."""
    import torch

    sizes = [p.stat().st_size for p in paths]
    on_cuda = device.startswith("cuda")
    dst = [torch.empty(s, dtype=torch.uint8, device=device) for s in sizes]
    plan = chunk_plan(sizes, chunk_bytes)
    fds = [os.open(p, os.O_RDONLY) for p in paths]
    errors: list[BaseException] = []
    lock = threading.Lock()
    next_index = [0]

    def take() -> tuple[int, int, int] | None:
        with lock:
            if next_index[0] >= len(plan):
                return None
            item = plan[next_index[0]]
            next_index[0] += 1
            return item

    def pread_into(fd: int, view: memoryview, offset: int) -> None:
        done = 0
        while done < len(view):
            got = os.preadv(fd, [view[done:]], offset + done)
            if got <= 0:
                raise UserError("checkpoint file ended early while reading: re-download it")
            done += got

    def worker() -> None:
        try:
            if not on_cuda:
                while (item := take()) is not None:
                    f, off, n = item
                    view = memoryview(dst[f].numpy()).cast("B")[off : off + n]
                    pread_into(fds[f], view, off)
                return
            stream = torch.cuda.Stream(device=device)
            bufs = [torch.empty(chunk_bytes, dtype=torch.uint8, pin_memory=True) for _ in range(2)]
            done_events: list[Any] = [None, None]
            k = 0
            while (item := take()) is not None:
                f, off, n = item
                slot = k % 2
                if done_events[slot] is not None:
                    done_events[slot].synchronize()  # the copy out of this buffer finished
                buf = bufs[slot]
                pread_into(fds[f], memoryview(buf.numpy()).cast("B")[:n], off)
                with torch.cuda.stream(stream):
                    dst[f][off : off + n].copy_(buf[:n], non_blocking=True)
                    ev = torch.cuda.Event()
                    ev.record(stream)
                done_events[slot] = ev
                k += 1
            stream.synchronize()
        except BaseException as e:  # surfaced after join
            errors.append(e)

    pool = [threading.Thread(target=worker, name=f"llmprof-read-{i}") for i in range(threads)]
    try:
        for t in pool:
            t.start()
        for t in pool:
            t.join()
    finally:
        for fd in fds:
            os.close(fd)
    if errors:
        raise errors[0]
    return dst
