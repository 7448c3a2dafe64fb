"""The native view's trace read and written: phases over the native calls add up to
their total, imports are apart from own work in every stage record, the trace file
of a session passes the validator with one track per thread, and an unwritable
``--trace`` path is refused before any work."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from profiler.analysis.native_trace import gap_causes, native_attribution, overlap_s
from profiler.errors import UserError
from profiler.measure.imports import ImportTracker
from profiler.measure.recorder import Recorder, stage_imports
from profiler.records.run import NativeView, RunRecord
from profiler.records.stage import StageRecord
from profiler.records.trace import CounterTrack, LoadTrace, Span
from profiler.render.chrome_trace import chrome_trace, validate
from profiler.render.trace_file import check_trace_path, session_trace, write_trace
from tests.support import fake_runs as fr

MS = 1_000_000


def span(cat: str, a: float, b: float, thread: int = 1, name: str = "", **args):
    return Span(name or cat, cat, int(a * MS), int(b * MS), thread, f"t{thread}", args)


def stage(name: str, a: float, b: float, **kw) -> StageRecord:
    return StageRecord(name, "ok", int(a * MS), int(b * MS), **kw)


def traced_view() -> NativeView:
    # tokenizer 0-100 ms (60 ms importing), a gap 100-150 (AutoConfig, not a native
    # call), from_pretrained 150-350 with read on a worker overlapping attach.
    spans = (
        span("import", 10, 70, name="jinja2"),
        span("tokenizer", 70, 90),
        span("config", 120, 140),  # in the gap between calls: not part of the total
        span("init", 160, 200),
        span("read", 200, 300, thread=2),
        span("attach", 250, 320),
        span("read", 330, 340, thread=2),
    )
    counters = (CounterTrack("disk read", "bytes", (0, 100 * MS, 300 * MS), (0, 5e6, 9e6), True),)
    trace = LoadTrace(0, 400 * MS, spans, counters, hooks=("h",))
    stages = (stage("tokenizer", 0, 100, import_s=0.06), stage("from_pretrained", 150, 350))
    return NativeView(stages=stages, trace=trace)


def test_native_phases_cover_the_native_calls_exactly() -> None:
    view = traced_view()
    a = native_attribution(view)
    assert a is not None
    got = {p.label: round(p.seconds * 1e3, 6) for p in a.phases}
    assert got == {
        "import": 60,
        "tokenizer": 20,
        "init": 40,
        "read": 60,
        "read ∥ attach": 50,
        "attach": 20,
        "other": 50,  # 0-10, 90-100 (tokenizer); 150-160, 320-330, 340-350 (from_pretrained)
    }
    assert a.wall_s == pytest.approx(view.total_s)
    assert sum(p.seconds for p in a.phases) == pytest.approx(view.total_s, rel=0.02)
    assert overlap_s(a) == pytest.approx(0.050)


def test_no_trace_no_attribution() -> None:
    assert native_attribution(NativeView(stages=(stage("from_pretrained", 0, 10),))) is None


def test_gap_causes_are_measured_from_both_views() -> None:
    run = dataclasses.replace(
        fr.make_run(),
        stages=(
            stage("tokenizer", 0, 300, import_s=0.25),
            stage("weight_read", 300, 500, counters={"threads": 4}),
        ),
        native=traced_view(),
    )
    causes = {c.what: c for c in gap_causes(run)}
    assert causes["imports"].native == pytest.approx(0.06)
    assert causes["imports"].staged == pytest.approx(0.25)
    assert causes["read"].native == pytest.approx(0.110)
    assert causes["read"].staged == pytest.approx(0.200)
    assert causes["tokenizer"].staged == pytest.approx(0.050)  # own time: 300 - 250 ms
    assert causes["threads"].native == 2 and causes["threads"].staged == 4
    assert causes["overlap"].native == pytest.approx(0.050)


def test_stage_records_carry_imports_and_read_old_records() -> None:
    s = stage(
        "tokenizer", 0, 1000, import_s=0.7, import_modules=688, import_packages={"a": 0.5}, gc_s=0.1
    )
    back = StageRecord.from_dict(json.loads(json.dumps(s.to_dict())))
    assert back == s and back.own_s == pytest.approx(0.2)
    old = s.to_dict()
    for k in ("import_s", "import_modules", "import_packages", "gc_s"):
        old.pop(k)
    assert StageRecord.from_dict(old).import_s == 0.0


def test_native_view_round_trips_its_trace() -> None:
    view = traced_view()
    back = NativeView.from_dict(json.loads(json.dumps(view.to_dict())))
    assert back.trace == view.trace
    assert NativeView.from_dict({"stages": []}).trace is None


def test_stage_imports_split_a_stage_by_package() -> None:
    tracker = ImportTracker()
    tracker.spans += [
        span("import", 10, 50, name="transformers.x", self_ns=10 * MS),
        span("import", 20, 40, name="torch.y", self_ns=20 * MS),
        span("import", 200, 210, name="late"),  # after the stage
        span("gc", 30, 35),  # inside an import: import time already
        span("gc", 45, 60),  # 5 ms inside the import, 10 ms after it
    ]
    secs, modules, packages, gc_s = stage_imports(tracker, 0, 100 * MS)
    assert secs == pytest.approx(0.040) and modules == 2
    assert packages == {"torch": pytest.approx(0.020), "transformers": pytest.approx(0.010)}
    assert gc_s == pytest.approx(0.010)
    assert stage_imports(None, 0, 1) == (0.0, 0, {}, 0.0)


def test_garbage_collections_are_recorded_as_gc_spans() -> None:
    import gc

    tracker = ImportTracker()
    tracker.install()
    try:
        gc.collect()
    finally:
        tracker.uninstall()
    gcs = [s for s in tracker.spans if s.category == "gc"]
    assert gcs and gcs[-1].name == "gc generation 2" and gcs[-1].end_ns >= gcs[-1].start_ns
    assert tracker._on_gc not in gc.callbacks


def test_the_recorder_puts_imports_into_its_stage_records() -> None:
    ticks = iter(range(0, 10_000 * MS, MS))
    rec = Recorder(clock=lambda: next(ticks), sample_memory=False, progress=False)
    rec.imports = ImportTracker()
    with rec.stage("tokenizer"):
        now = next(ticks)
        rec.imports.spans.append(span("import", now / MS, now / MS + 1, name="jinja2"))
    (record,) = rec.records
    assert record.import_modules == 1 and record.import_s == pytest.approx(0.001)


def test_chrome_trace_names_each_thread_once() -> None:
    doc = chrome_trace(traced_view().trace)  # type: ignore[arg-type]
    names = [e for e in doc["traceEvents"] if e["name"] == "thread_name"]
    assert sorted(e["args"]["name"] for e in names) == ["stages", "t1", "t2"]
    assert validate(doc) == []


def runs_with_traces(n: int) -> list[RunRecord]:
    return [
        dataclasses.replace(fr.make_run(), repetition=i, native=traced_view()) for i in range(n)
    ]


def test_session_trace_has_a_process_per_run_and_validates(tmp_path: Path) -> None:
    doc = session_trace(runs_with_traces(2))
    assert doc is not None and validate(doc) == []
    assert {e["pid"] for e in doc["traceEvents"]} == {1, 2}
    titles = [e["args"]["name"] for e in doc["traceEvents"] if e["name"] == "process_name"]
    assert len(titles) == 2 and titles[0] != titles[1]
    path = tmp_path / "sub" / "t.json"
    write_trace(str(path), runs_with_traces(1))
    assert validate(json.loads(path.read_text())) == []
    assert session_trace([fr.make_run()]) is None  # no traced native view: nothing to write


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_read_only_folder_is_refused(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    with pytest.raises(UserError, match="writable"):
        check_trace_path(str(ro / "t.json"))


def test_unwritable_trace_paths_are_refused_and_nothing_is_created(tmp_path: Path) -> None:
    a_file = tmp_path / "f"
    a_file.write_text("x")
    with pytest.raises(UserError, match="writable"):
        check_trace_path(str(a_file / "t.json"))  # a file where a folder should be
    with pytest.raises(UserError, match="folder"):
        check_trace_path(str(tmp_path))
    check_trace_path(str(tmp_path / "new" / "deeper" / "t.json"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_diagnosis_names_a_stage_s_imports_apart_from_its_work() -> None:
    from profiler.analysis.diagnosis import stage_line
    from profiler.analysis.stats import summarize
    from profiler.analysis.summaries import StageSummary

    s = StageSummary(
        name="tokenizer",
        n=1,
        time=summarize([1.3]),
        share_of_total=0.22,
        import_s=0.9,
        import_modules=688,
        own_s=0.4,
    )
    line = stage_line(s, page_state="warm", device="cpu", ceilings=None)
    assert "of which 900 ms importing 688 modules (own work 400 ms)" in line
    plain = stage_line(
        StageSummary(name="tokenizer", n=1, time=summarize([1.3]), share_of_total=0.22),
        page_state="warm",
        device="cpu",
        ceilings=None,
    )
    assert "importing" not in plain
