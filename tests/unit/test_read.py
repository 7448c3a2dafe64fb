"""The one parallel reader (profiler/load/read.py) and the fast path's read plan."""

from __future__ import annotations

import mmap
import os
import threading
from pathlib import Path

import pytest
import torch

from profiler.errors import UserError
from profiler.load.fast import read_plan
from profiler.load.read import (
    Chunk,
    chunk_plan,
    pread_exact,
    read_chunks,
    read_file_into,
    read_scratch,
    read_to_device,
    run_shared,
)


def test_chunk_plan_covers_every_byte_once_in_file_order() -> None:
    plan = chunk_plan([10, 0, 4], 4)
    assert plan == [
        Chunk(0, 0, 4),
        Chunk(0, 4, 4),
        Chunk(0, 8, 2),
        Chunk(2, 0, 4),
    ]
    with pytest.raises(ValueError):
        chunk_plan([10], 0)


def test_read_plan_follows_where_most_bytes_are() -> None:
    # mostly cached: 4 MiB chunks (the H200 sweep's best), threads up to 2 × cores
    assert read_plan(1.0, 64) == (16, 4 << 20)
    assert read_plan(0.5, 4) == (8, 4 << 20)
    # mostly on disk: 16 MiB requests (the best cold pattern measured there)
    assert read_plan(0.0, 64) == (16, 16 << 20)
    assert read_plan(0.49, 2) == (4, 16 << 20)
    # never zero threads
    assert read_plan(1.0, 0)[0] == 1 and read_plan(0.0, 0)[0] == 1


def test_copy_plan_slots_follow_the_chunk_size() -> None:
    from profiler.load.fast import copy_plan

    warm = copy_plan(1.0, 16)
    assert (warm.threads, warm.chunk_bytes, warm.slots) == (16, 4 << 20, 3)
    assert warm.pool_bytes == 16 * 3 * (4 << 20)
    cold = copy_plan(0.0, 16)
    assert (cold.chunk_bytes, cold.slots) == (16 << 20, 2)
    assert copy_plan(1.0, 16, threads=3, chunk_bytes=4096, slots=5).slots == 5


def test_run_shared_hands_each_item_to_one_worker() -> None:
    seen: list[tuple[int, int]] = []
    lock = threading.Lock()

    def worker(i: int, feed) -> None:
        for item in feed:
            with lock:
                seen.append((i, item))

    run_shared(list(range(100)), 4, worker)
    assert sorted(item for _, item in seen) == list(range(100))


def test_run_shared_raises_the_first_error_and_stops_the_others() -> None:
    taken: list[int] = []

    def worker(i: int, feed) -> None:
        for item in feed:
            taken.append(item)
            if item == 3:
                raise OSError("boom")

    with pytest.raises(OSError, match="boom"):
        run_shared(list(range(10_000)), 3, worker)
    assert len(taken) < 10_000  # the feed stopped after the failure


def _data_file(tmp_path: Path, size: int) -> tuple[Path, bytes]:
    data = os.urandom(size)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    return path, data


@pytest.mark.parametrize(("threads", "chunk"), [(1, 1 << 20), (3, 4097)])
def test_read_file_into_gives_the_file_bytes(tmp_path: Path, threads: int, chunk: int) -> None:
    path, data = _data_file(tmp_path, 100_003)
    buf = torch.empty(len(data), dtype=torch.uint8)
    counted: list[int] = []
    n = read_file_into(path, buf, threads=threads, chunk_bytes=chunk, on_bytes=counted.append)
    assert n == len(data) == sum(counted)
    assert bytes(buf.numpy()) == data


def test_a_file_that_ends_early_is_named_in_a_user_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, data = _data_file(tmp_path, 1000)
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(EOFError):
            pread_exact(fd, memoryview(bytearray(2000)), 0)
        with pytest.raises(EOFError):
            read_chunks([fd], [memoryview(bytearray(2000))], chunk_plan([2000], 512), 2)
    finally:
        os.close(fd)
    # the file shrinks between stat and read: the kernel returns 0 bytes
    monkeypatch.setattr(os, "preadv", lambda *_a: 0)
    buf = torch.empty(len(data), dtype=torch.uint8)
    with pytest.raises(UserError, match=f"{path.name}: file ended early"):
        read_file_into(path, buf, threads=2)
    with pytest.raises(UserError, match="ended early"):
        read_to_device([path], "cpu", threads=2, chunk_bytes=256)


def test_read_scratch_reads_whole_buffers_and_the_tail(tmp_path: Path) -> None:
    path, data = _data_file(tmp_path, 3 * mmap.PAGESIZE + 100)
    bufs = [mmap.mmap(-1, mmap.PAGESIZE) for _ in range(2)]
    fd = os.open(path, os.O_RDONLY)
    try:
        read_scratch(fd, len(data), bufs)  # no error: every request was satisfied
        with pytest.raises(EOFError):
            read_scratch(fd, len(data) + mmap.PAGESIZE, bufs)
    finally:
        os.close(fd)


def test_read_to_device_on_cpu_gives_one_buffer_per_file(tmp_path: Path) -> None:
    files = []
    for i, size in enumerate((5000, 1, 12_345)):
        p = tmp_path / f"f{i}"
        p.write_bytes(os.urandom(size))
        files.append(p)
    bufs = read_to_device(files, "cpu", threads=3, chunk_bytes=1024)
    assert [bytes(b.numpy()) for b in bufs] == [p.read_bytes() for p in files]
