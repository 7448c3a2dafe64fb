"""What the native load's timeline picture draws (profiler/render/timeline_plot.py):
lanes per thread without framing spans, the disk read rate from the cumulative
counter, the host-to-device rate from the copy spans; and that it is drawn."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from profiler.records.trace import CounterTrack, LoadTrace, Span
from profiler.render.timeline_plot import timeline_data, timeline_section, write_timelines
from tests.support import fake_runs as fr

MS = 1_000_000


def trace() -> LoadTrace:
    spans = (
        Span("from_pretrained", "frame", 0, 1000 * MS, 1, "MainThread"),
        Span("init", "init", 0, 100 * MS, 1, "MainThread"),
        Span("w", "read", 100 * MS, 300 * MS, 2, "worker"),
        # 200 MB to the GPU in 100 ms, overlapping another 100 MB in 100 ms.
        Span(
            "w",
            "copy",
            300 * MS,
            400 * MS,
            2,
            "worker",
            {"bytes": 200_000_000, "target_device": "cuda:0"},
        ),
        Span(
            "v",
            "copy",
            350 * MS,
            450 * MS,
            3,
            "worker2",
            {"bytes": 100_000_000, "target_device": "cuda:0"},
        ),
        Span("v", "cast", 500 * MS, 600 * MS, 3, "worker2", {"bytes": 5, "target_device": "cpu"}),
    )
    disk = CounterTrack("disk read", "bytes", (0, 500 * MS, 1000 * MS), (0.0, 1e9, 1e9), True)
    rss = CounterTrack("RSS anonymous", "bytes", (0, 1000 * MS), (1.0, 2.0))
    return LoadTrace(0, 1000 * MS, spans, (rss, disk))


def test_lanes_rates_and_no_framing() -> None:
    data = timeline_data(trace())
    assert [lane.name for lane in data.lanes] == ["MainThread", "worker", "worker2"]
    assert data.lanes[0].bars == ((0.0, 0.1, "init"),)  # the frame is not drawn
    assert data.disk_mbps == ((0.0, pytest.approx(2000.0)), (0.5, 0.0))
    rates = [(t, round(r)) for t, r in data.h2d_mbps]
    assert rates == [(0.3, 2000), (0.35, 3000), (0.4, 1000), (0.45, 0)]
    assert data.duration_s == pytest.approx(1.0)


def test_timelines_are_written_and_described(tmp_path: Path) -> None:
    from profiler.records.run import NativeView

    run = dataclasses.replace(fr.make_run(), native=NativeView(stages=(), trace=trace()))
    written = write_timelines([run], tmp_path)
    (key,) = written
    assert written[key].read_bytes().startswith(b"\x89PNG")
    text = "\n".join(timeline_section([run], {key: written[key].name}))
    assert "## Timeline of the native load" in text and written[key].name in text
    assert write_timelines([fr.make_run()], tmp_path / "none") == {}
