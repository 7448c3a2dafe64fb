"""The fast path's read overlaps tokenizer and meta init, the load total counts the
overlap once, and the fast-path figures read the right stages."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from profiler.analysis.fastpath import FAST, TUTORIAL, fastpath_figures
from profiler.errors import UserError
from profiler.load.copier import CopyPlan, start_copy
from profiler.records.ceilings import GBPS, Ceiling, Ceilings
from profiler.records.run import RunRecord
from profiler.records.stage import StageRecord
from tests.support.fake_runs import make_run


def _stage(name: str, start_s: float, end_s: float, nbytes: int | None = None) -> StageRecord:
    return StageRecord(name, "ok", int(start_s * 1e9), int(end_s * 1e9), bytes=nbytes)


def _with_stages(run: RunRecord, *stages: StageRecord) -> RunRecord:
    return replace(run, stages=stages)


def test_load_total_counts_overlapping_stages_once() -> None:
    run = _with_stages(
        make_run(),
        _stage("import", 0.0, 5.0),  # outside the load
        _stage("tokenizer", 10.0, 10.3),
        _stage("config", 10.3, 10.31),
        _stage("model_init", 10.31, 10.6),
        _stage("read_copy", 10.0, 10.5),  # in the background meanwhile
        _stage("attach", 10.7, 10.8),  # after a gap: the gap is not load time
    )
    assert run.load_total_s == pytest.approx(0.7)
    seq = _with_stages(make_run(), _stage("tokenizer", 0, 1), _stage("attach", 1, 3))
    assert seq.load_total_s == pytest.approx(3.0)


def test_fast_load_reads_in_the_background(tmp_path: Path) -> None:
    from profiler.load.common import LoadOptions
    from profiler.load.fast import load_fast
    from profiler.measure.recorder import Recorder
    from tests.support.tiny import make_tiny_model

    folder = make_tiny_model(tmp_path / "m", max_shard_size="100KB")
    rec = Recorder(progress=False)
    load_fast(folder, LoadOptions(), rec, threads=3, chunk_bytes=4096)
    by = {r.name: r for r in rec.records}
    rc, tok = by["read_copy"], by["tokenizer"]
    assert rc.start_ns <= tok.start_ns  # reads started first
    assert rc.counters["engine"] == "host" and rc.counters["files"] > 1
    assert rc.bytes == sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    assert "pin_pool" not in by  # no pinned pool on the CPU
    assert any("overlapping tokenizer" in n for n in rc.notes)


def test_copier_error_reaches_the_caller(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = tmp_path / "a.bin"
    good.write_bytes(bytes(range(256)) * 64)
    job = start_copy([good], "cpu", CopyPlan(threads=2, chunk_bytes=1000))
    buf = job.wait().buffers[0]
    assert bytes(buf.numpy()) == good.read_bytes()

    import profiler.load.read as read

    def short_read(fd: int, view: memoryview, offset: int) -> None:
        raise EOFError("file ended at byte 0")

    monkeypatch.setattr(read, "pread_exact", short_read)
    job = start_copy([good], "cpu", CopyPlan(threads=2, chunk_bytes=1000))
    with pytest.raises(UserError, match="ended early while reading: re-download it"):
        job.wait()


def _fast_run(cache: str, rc_s: float, load_s: float, variant: str) -> RunRecord:
    base = make_run(cache=cache)
    stages = (_stage("tokenizer", 0, load_s), _stage("read_copy", 0, rc_s, 15_000_000_000))
    stages = tuple(
        replace(s, ceiling_name="page_cache_read", ceiling_gbps=80.0)
        if s.name == "read_copy"
        else s
        for s in stages
    )
    return replace(base, stages=stages, variant=variant)


def test_fastpath_figures_against_pinned_and_the_tutorial() -> None:
    runs = [
        _fast_run("warm", 0.3, 0.6, FAST),
        _fast_run("warm", 0.3, 2.4, TUTORIAL),
        _fast_run("cold", 8.0, 9.0, FAST),
    ]
    pinned = Ceiling("h2d_pinned", 54.0, GBPS)
    cs = Ceilings(fingerprint={}, measured_at="now", items={"h2d_pinned": pinned})
    warm, cold = fastpath_figures(runs, cs)
    assert warm.cache == "warm" and warm.read_copy_gbps == pytest.approx(50.0)
    assert warm.pinned_fraction == pytest.approx(50 / 54)
    assert warm.ceiling_name == "page_cache_read"
    assert warm.ceiling_fraction == pytest.approx(50 / 80)
    assert warm.speedup == pytest.approx(4.0)
    assert cold.speedup is None and cold.read_copy_gbps == pytest.approx(15 / 8)
    assert fastpath_figures(runs, None)[0].pinned_fraction is None


class FakeRuntime:
    """The calls the copier makes, with copies done at once into host memory (the
    "device" pointers are host addresses) and a log of what was called."""

    def __init__(self) -> None:
        import threading

        self.calls: list[tuple[str, int]] = []
        self.lock = threading.Lock()
        self.pending: dict[int, list[tuple[int, int, int]]] = {}
        self.next = 1

    def _id(self) -> int:
        with self.lock:
            self.next += 1
            return self.next

    def set_device(self, index: int) -> None:
        self.calls.append(("set_device", index))

    def stream(self) -> int:
        return self._id()

    def event(self) -> int:
        return self._id()

    def copy_h2d_async(self, dst: int, src: int, nbytes: int, stream: int) -> None:
        # Deferred until the stream or an event after it is synchronized: a slot
        # overwritten before its copy ran would copy the wrong bytes.
        self.pending.setdefault(stream, []).append((dst, src, nbytes))

    def event_record(self, event: int, stream: int) -> None:
        self.calls.append(("record", event))
        self.pending.setdefault(-event, []).append((stream, 0, 0))

    def _flush(self, stream: int) -> None:
        import ctypes

        for dst, src, n in self.pending.pop(stream, []):
            ctypes.memmove(dst, src, n)

    def event_sync(self, event: int) -> None:
        for stream, _, _ in self.pending.pop(-event, []):
            self._flush(stream)

    def stream_sync(self, stream: int) -> None:
        self._flush(stream)

    def event_destroy(self, event: int) -> None:
        pass

    def stream_destroy(self, stream: int) -> None:
        pass


def test_cudart_worker_slots_never_overwrite_a_pending_copy(tmp_path: Path) -> None:
    import ctypes
    import os

    import numpy as np

    from profiler.load.copier import cudart_worker
    from profiler.load.read import chunk_plan, run_shared

    files = []
    for i, size in enumerate((10_000, 7_777)):
        p = tmp_path / f"f{i}.bin"
        p.write_bytes(np.random.default_rng(i).integers(0, 256, size, dtype=np.uint8).tobytes())
        files.append(p)
    sizes = [p.stat().st_size for p in files]
    plan = CopyPlan(threads=3, chunk_bytes=512, slots=2)
    pool = (ctypes.c_char * plan.pool_bytes)()
    dst = [np.zeros(s, dtype=np.uint8) for s in sizes]
    fds = [os.open(p, os.O_RDONLY) for p in files]
    rt = FakeRuntime()
    try:
        work = cudart_worker(
            rt,  # type: ignore[arg-type]
            0,
            ctypes.addressof(pool),
            plan,
            fds,
            [d.ctypes.data for d in dst],
        )
        run_shared(chunk_plan(sizes, plan.chunk_bytes), plan.threads, work)
    finally:
        for fd in fds:
            os.close(fd)
    for p, d in zip(files, dst, strict=True):
        assert d.tobytes() == p.read_bytes()
    assert ("set_device", 0) in rt.calls
