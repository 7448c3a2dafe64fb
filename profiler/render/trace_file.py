"""``--trace PATH``: the native loads of one command as one Chrome trace-event file.

Each run's native view is one process in the file (its threads as tracks, its
counters as counter tracks, the native calls on a "stages" track), named by model,
cache state and repetition, so cold and warm repetitions sit one above the other in
Perfetto. The path is checked before any work (:func:`check_trace_path`) and the
document is checked by :func:`profiler.render.chrome_trace.validate` before it is
written: a file that fails would not open.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from profiler.errors import UserError
from profiler.records.io import write_atomic
from profiler.records.run import RunRecord
from profiler.render.chrome_trace import chrome_trace, validate


def check_trace_path(path: str) -> None:
    """UserError (one line) when ``path`` cannot be written; creates nothing."""
    target = Path(path)
    if target.is_dir():
        raise UserError(f"--trace {path}: is a folder: give a file name such as trace.json")
    parent = target.parent if str(target.parent) else Path(".")
    probe = parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent  # the folders that would be created start here
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"--trace {path}: {probe} is not a writable folder: choose a writable path")
    if probe == parent:
        try:
            with tempfile.TemporaryFile(dir=parent):
                pass
        except OSError as e:
            raise UserError(f"--trace {path}: cannot write in {parent}: {e.strerror}") from e


def session_trace(runs: Sequence[RunRecord]) -> dict[str, Any] | None:
    """One trace-event document with a process per traced native view; None if none."""
    events: list[dict[str, Any]] = []
    other: dict[str, Any] = {"tool": "llmprof", "runs": []}
    pid = 0
    for run in runs:
        view = run.native
        if run.status != "ok" or view is None or view.trace is None:
            continue
        pid += 1
        title = f"{run.model.spec} · {run.cache.label} · rep {run.repetition}"
        doc = chrome_trace(view.trace, view.stages, title=title)
        for ev in doc["traceEvents"]:
            events.append({**ev, "pid": pid})
        other["runs"].append({"pid": pid, "title": title, **doc["otherData"]})
    if not events:
        return None
    return {"traceEvents": events, "displayTimeUnit": "ms", "otherData": other}


def write_trace(path: str, runs: Sequence[RunRecord]) -> str:
    """Write the session's trace to ``path``; what was written, in words."""
    doc = session_trace(runs)
    if doc is None:
        return f"no traced native view to write to {path} (ran with --no-native?)"
    problems = validate(doc)
    if problems:  # a bug in chrome_trace, not bad input: say it rather than write it
        raise RuntimeError(f"trace failed validation: {problems[0]}")
    write_atomic(path, json.dumps(doc).encode())
    return f"wrote trace ({len(doc['traceEvents'])} events) to {path}: open it in ui.perfetto.dev"
