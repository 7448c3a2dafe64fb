"""Host-to-device copies seen by ``torch.profiler``, for the native view's attribution.

Inside ``from_pretrained`` + ``.to()`` the copies overlap other work, so a timer
cannot isolate them; the CUDA activity trace can. :class:`H2DTrace` records one,
and :func:`summarize_h2d` (pure, tested on synthetic events) turns its events into
a count, bytes and device time of the host-to-device copies.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


def summarize_h2d(events: Iterable[Mapping[str, Any]]) -> dict[str, float | int | str]:
    """``h2d_copies``, ``h2d_bytes`` and ``h2d_time_s`` of the host-to-device memcpy
    events of a Chrome trace (category ``gpu_memcpy``, ``HtoD`` in the name; ``dur``
    in microseconds, the size in ``args.bytes``). Other events are ignored."""
    count = nbytes = 0
    dur_us = 0.0
    for ev in events:
        if ev.get("cat") == "gpu_memcpy" and "HtoD" in str(ev.get("name", "")):
            count += 1
            dur_us += float(ev.get("dur", 0.0))
            nbytes += int((ev.get("args") or {}).get("bytes", 0))
    return {"h2d_copies": count, "h2d_bytes": nbytes, "h2d_time_s": dur_us / 1e6}


class H2DTrace:
    """torch.profiler with CUDA activity only; sums host→device memcpy events.

    The trace is exported and parsed as JSON because that is where the profiler
    puts the byte count of each copy.
    """

    def __init__(self) -> None:
        from torch.profiler import ProfilerActivity, profile

        self._prof = profile(activities=[ProfilerActivity.CUDA])
        self._summary: dict[str, float | int | str] = {}
        # The exported events, kept for readers that split the copies further
        # (per device: profiler/run/placement.py).
        self.events: list[dict[str, Any]] = []

    def __enter__(self) -> H2DTrace:
        self._prof.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._prof.__exit__(*exc)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "trace.json")
            self._prof.export_chrome_trace(path)
            self.events = json.loads(Path(path).read_text()).get("traceEvents", [])
        self._summary = summarize_h2d(self.events)

    def summary(self) -> dict[str, float | int | str]:
        """What :func:`summarize_h2d` found in the last traced block."""
        return self._summary
