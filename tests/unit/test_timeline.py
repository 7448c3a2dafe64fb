"""Wall-time attribution of a traced load (profiler/analysis/timeline.py) on span sets
whose answer is known by hand: overlapping threads, nesting, gaps, clipping."""

from __future__ import annotations

import pytest

from profiler.analysis.timeline import (
    OTHER,
    activity_totals,
    attribute,
    import_time,
    imports_by_package,
    label_of,
    union_ns,
)
from profiler.records.trace import Span

MS = 1_000_000


def span(cat: str, start_ms: float, end_ms: float, thread: int = 1, name: str = "", **args):
    return Span(name or cat, cat, int(start_ms * MS), int(end_ms * MS), thread, f"t{thread}", args)


def phases(spans, start_ms=0, end_ms=100):
    a = attribute(spans, int(start_ms * MS), int(end_ms * MS))
    return {p.label: round(p.seconds * 1e3, 6) for p in a.phases}, a


def test_gaps_are_other_and_phases_sum_to_the_wall():
    got, a = phases([span("read", 10, 30), span("attach", 50, 60)])
    assert got == {"read": 20, "attach": 10, OTHER: 70}
    assert sum(p.seconds for p in a.phases) == pytest.approx(a.wall_s, rel=0.02)
    assert a.other_s == pytest.approx(0.070)


def test_overlap_across_threads_is_its_own_phase():
    # read on thread 1 from 0-40, copy on thread 2 from 20-60: 20 ms of each alone,
    # 20 ms together.
    got, _ = phases([span("read", 0, 40, 1), span("copy", 20, 60, 2)], 0, 60)
    assert got == {"read": 20, "read ∥ copy": 20, "copy": 20}


def test_innermost_span_on_a_thread_wins():
    # An import nested in model construction is import time, not init time.
    got, _ = phases([span("init", 0, 50), span("import", 10, 30)], 0, 50)
    assert got == {"init": 30, "import": 20}


def test_gc_inside_an_import_is_import_time_and_gc_outside_is_its_own():
    got, _ = phases(
        [span("init", 0, 50), span("import", 10, 30), span("gc", 15, 20), span("gc", 40, 45)], 0, 50
    )
    assert got == {"init": 25, "import": 20, "gc": 5}


def test_framing_spans_are_not_activities():
    got, _ = phases([span("frame", 0, 100), span("read", 10, 20)])
    assert got == {"read": 10, OTHER: 90}


def test_same_activity_on_two_threads_counts_once():
    got, _ = phases([span("read", 0, 30, 1), span("read", 10, 40, 2)], 0, 40)
    assert got == {"read": 40}


def test_spans_outside_the_interval_are_clipped():
    got, a = phases([span("read", -10, 10), span("copy", 90, 120)], 0, 100)
    assert got == {"read": 10, "copy": 10, OTHER: 80}
    assert a.wall_s == pytest.approx(0.1)


def test_activity_totals_count_overlapped_time_for_each_activity():
    _, a = phases([span("read", 0, 40, 1), span("copy", 20, 60, 2)], 0, 60)
    totals = activity_totals(a)
    assert totals["read"] == pytest.approx(0.040)
    assert totals["copy"] == pytest.approx(0.040)


def test_label_order_is_the_pipeline_order():
    assert label_of(["copy", "read", "import"]) == "import ∥ read ∥ copy"
    assert label_of([]) == OTHER


def test_empty_interval():
    a = attribute([span("read", 0, 10)], 5 * MS, 5 * MS)
    assert a.wall_s == 0 and a.phases == ()


@pytest.mark.parametrize(
    ("intervals", "expected"),
    [
        ([], 0),
        ([(0, 10), (5, 15)], 15),
        ([(0, 10), (20, 30)], 20),
        ([(0, 30), (5, 10), (12, 14)], 30),
        ([(5, 5), (7, 6)], 0),
    ],
)
def test_union(intervals, expected):
    assert union_ns(intervals) == expected


def test_import_time_counts_nested_imports_once_and_clips():
    spans = [
        span("import", 10, 50, name="transformers", self_ns=10 * MS),
        span("import", 20, 40, name="torch", self_ns=20 * MS),
        span("import", 90, 110, name="jinja2", self_ns=20 * MS),
        span("read", 0, 100),
    ]
    it = import_time(spans, 0, 100 * MS)
    assert it.seconds == pytest.approx(0.050)  # 10-50 and 90-100
    assert it.modules == 2  # jinja2 finished after the interval


def test_imports_by_package_uses_self_time():
    spans = [
        span("import", 0, 100, name="transformers", self_ns=30 * MS),
        span("import", 10, 80, name="torch", self_ns=60 * MS),
        span("import", 80, 90, name="torch.nn", self_ns=10 * MS),
    ]
    got = {
        p.package: (round(p.seconds, 6), p.modules) for p in imports_by_package(spans, 0, 200 * MS)
    }
    assert got == {"torch": (0.07, 2), "transformers": (0.03, 1)}
