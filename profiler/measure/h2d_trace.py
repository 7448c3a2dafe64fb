"""TODO: docstring."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


class H2DTrace:
    """torch.profiler with CUDA activity only; sums host→device memcpy events.

    The trace is exported and parsed as JSON because that is where the profiler
    puts the byte count of each copy.
    """

    def __init__(self) -> None:
        from torch.profiler import ProfilerActivity, profile

        self._prof = profile(activities=[ProfilerActivity.CUDA])
        self._summary: dict[str, float | int | str] = {}

    def __enter__(self) -> H2DTrace:
        self._prof.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._prof.__exit__(*exc)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "trace.json")
            self._prof.export_chrome_trace(path)
            events = json.loads(Path(path).read_text()).get("traceEvents", [])
        count = nbytes = 0
        dur_us = 0.0
        for ev in events:
            name = str(ev.get("name", ""))
            if ev.get("cat") == "gpu_memcpy" and "HtoD" in name:
                count += 1
                dur_us += float(ev.get("dur", 0.0))
                nbytes += int(ev.get("args", {}).get("bytes", 0))
        self._summary = {"h2d_copies": count, "h2d_bytes": nbytes, "h2d_time_s": dur_us / 1e6}

    def summary(self) -> dict[str, float | int | str]:
        return self._summary
