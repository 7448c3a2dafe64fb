from __future__ import annotations

import pytest

from profiler.measure.recorder import Recorder
from profiler.run.faults import injected_slowdowns


class FakeClock:
    def __init__(self) -> None:
        self.t = 1_000

    def __call__(self) -> int:
        return self.t

    def advance(self, ns: int) -> None:
        self.t += ns


def test_stage_times_bytes_and_notes_with_fake_clock():
    clock = FakeClock()
    rec = Recorder(clock=clock, sample_memory=False, progress=False)
    with rec.stage("weight_read", "bytes read") as st:
        clock.advance(2_000_000_000)
        st.add_bytes(3_000_000_000)
        st.add_bytes(1_000_000_000)
        st.note("n1")
        st.note("n1")  # notes are not repeated
    rec.skip("h2d_copy", "device is cpu")
    a, b = rec.records
    assert (a.name, a.status, a.duration_s, a.bytes) == ("weight_read", "ok", 2.0, 4_000_000_000)
    assert a.gbps == pytest.approx(2.0)
    assert a.notes == ("n1",)
    assert (b.status, b.duration_s, b.notes) == ("skipped", 0.0, ("device is cpu",))


def test_failed_stage_is_recorded_and_error_propagates():
    clock = FakeClock()
    rec = Recorder(clock=clock, sample_memory=False, progress=False)
    with pytest.raises(RuntimeError), rec.stage("attach"):
        clock.advance(5)
        raise RuntimeError("boom")
    (r,) = rec.records
    assert r.status == "failed" and "boom" in r.notes[0] and r.end_ns - r.start_ns == 5


def test_sync_is_called_before_the_end_clock_read():
    order: list[str] = []
    clock = FakeClock()

    def sync() -> None:
        order.append("sync")
        clock.advance(7)

    rec = Recorder(clock=clock, sync=sync, sample_memory=False, progress=False)
    with rec.stage("h2d_copy"):
        order.append("body")
    assert order == ["body", "sync"]
    assert rec.records[0].end_ns - rec.records[0].start_ns == 7  # device time counted


def test_memory_is_recorded_with_peaks_at_least_before_and_after():
    rec = Recorder(progress=False)
    import mmap

    with rec.stage("alloc"):
        # A fresh private anonymous mapping (a shared one counts as shmem, which statm
        # reports with file pages): malloc could reuse memory freed by earlier tests
        # and leave RSS unchanged, a new mapping's pages are new once touched.
        block = mmap.mmap(-1, 32 * 1024 * 1024, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        for off in range(0, len(block), 4096):
            block[off] = 1
    m = rec.records[0].memory
    assert m is not None
    assert m.peak_rss_bytes >= max(m.before.rss_bytes, m.after.rss_bytes)
    assert m.after.rss_anon_bytes - m.before.rss_anon_bytes >= 30 * 1024 * 1024
    assert m.after.rss_bytes == m.after.rss_anon_bytes + m.after.rss_file_bytes
    block.close()


def test_injected_slowdown_parsing():
    assert injected_slowdowns({"LLMPROF_INJECT_SLOWDOWN": "a=0.5, b=1,bad=x,"}) == {
        "a": 0.5,
        "b": 1.0,
    }
    assert injected_slowdowns({}) == {}


def test_injected_slowdown_lengthens_only_the_named_stage(monkeypatch):
    monkeypatch.setenv("LLMPROF_INJECT_SLOWDOWN", "slow=0.05")
    rec = Recorder(sample_memory=False, progress=False)
    with rec.stage("slow"):
        pass
    with rec.stage("fast"):
        pass
    slow, fast = rec.records
    assert slow.duration_s >= 0.05 and "injected" in slow.notes[0]
    assert fast.notes == ()
