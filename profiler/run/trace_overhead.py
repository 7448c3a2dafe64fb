"""What tracing the native load costs: the same ``load_native`` plain and traced,
alternated in one process, and the direct cost of each thing the tracer does.

On a shared 2-core machine the paired difference of whole loads is noisier than the
2% budget, so the costs are also measured one by one: a span recorded by a hook, a
module loaded under the import tracker, a counter sample. Multiplied by how many of
each a fresh process's traced load has (:func:`fresh_counts`, run as
``python -m profiler.run.trace_overhead FOLDER`` in a new interpreter), they give the
tracer's share of that load without the noise of timing two whole loads.
"""

from __future__ import annotations

import time

_T0 = time.monotonic_ns()

import gc  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

from profiler.analysis.stats import median  # noqa: E402
from profiler.load.common import LoadOptions  # noqa: E402
from profiler.measure.recorder import NullRecorder  # noqa: E402


@dataclass(frozen=True)
class TraceOverhead:
    plain_s: tuple[float, ...]
    traced_s: tuple[float, ...]

    @property
    def paired_fraction(self) -> float:
        """Median over rounds of traced / plain − 1 (each round ran both)."""
        pairs = zip(self.plain_s, self.traced_s, strict=True)
        return median([t / p - 1 for p, t in pairs])


def measure_trace_overhead(folder: Path, options: LoadOptions, rounds: int) -> TraceOverhead:
    """Alternate plain and traced native loads (order alternating per round) after
    one untimed load that warms the page cache and the imports."""
    from profiler.load.native import load_native

    load_native(folder, options, NullRecorder(), timeline=False)
    plain: list[float] = []
    traced: list[float] = []
    for i in range(rounds):
        for timeline in (False, True) if i % 2 == 0 else (True, False):
            gc.collect()
            t0 = time.perf_counter()
            view, model = load_native(folder, options, NullRecorder(), timeline=timeline)
            dt = time.perf_counter() - t0
            del view, model
            (traced if timeline else plain).append(dt)
    return TraceOverhead(tuple(plain), tuple(traced))


def span_cost_s(n: int = 20000) -> float:
    """Seconds a hook adds per span: ``tracer.span`` around a no-op, minus the no-op."""
    from profiler.measure.load_trace import LoadTracer

    tr = LoadTracer()

    def noop() -> None:
        return None

    t0 = time.perf_counter()
    for _ in range(n):
        noop()
    bare = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(n):
        with tr.span("read", "x", bytes=1):
            noop()
    return max(0.0, (time.perf_counter() - t0 - bare) / n)


def sample_cost_s(n: int = 2000) -> float:
    """Seconds one counter sample takes (its thread holds the GIL that long)."""
    from profiler.measure.counters import CounterSampler

    sampler = CounterSampler()
    t0 = time.perf_counter()
    for _ in range(n):
        sampler.sample()
    return (time.perf_counter() - t0) / n


_IMPORT_ALL = """
import sys, time
sys.path.insert(0, {root!r})
{setup}
t0 = time.perf_counter()
for i in range({n}):
    __import__(f"mods.m{{i}}")
print(time.perf_counter() - t0)
"""


def module_cost_s(n: int = 400, rounds: int = 3) -> float:
    """Seconds the import tracker adds per module loaded: ``n`` small modules
    imported in fresh interpreters with and without it (median over rounds)."""
    repo = str(Path(__file__).resolve().parents[2])
    with tempfile.TemporaryDirectory() as d:
        pkg = Path(d) / "mods"
        pkg.mkdir()
        (pkg / "__init__.py").write_text("")
        for i in range(n):
            (pkg / f"m{i}.py").write_text(f"X = {i}\ndef f():\n    return X\n")
        tracked = (
            f"sys.path.insert(0, {repo!r})\n"
            "from profiler.measure.imports import ImportTracker\nImportTracker().install()"
        )
        diffs = []
        for _ in range(rounds):
            times = []
            for setup in ("", tracked):
                code = _IMPORT_ALL.format(root=d, setup=setup, n=n)
                out = subprocess.run(
                    [sys.executable, "-c", code], capture_output=True, text=True, check=True
                )
                times.append(float(out.stdout.strip()))
            diffs.append((times[1] - times[0]) / n)
    return max(0.0, median(diffs))


def fresh_counts(folder: Path, options: LoadOptions) -> dict[str, float]:
    """In this (fresh) process: a traced native load as the child runs it; how many
    spans, imported modules and counter samples it recorded, and its wall time."""
    from profiler.measure.imports import ImportTracker

    tracker = ImportTracker()
    tracker.install()
    from profiler.load.native import load_native

    rec = NullRecorder()
    rec.imports = tracker
    t0 = time.perf_counter()
    view, _model = load_native(folder, options, rec)
    wall = time.perf_counter() - t0
    trace = view.trace
    assert trace is not None
    spans = [s for s in trace.spans if s.category not in ("import", "gc")]
    modules = sum(1 for s in tracker.spans if s.category == "import")
    samples = max((len(c.times_ns) for c in trace.counters), default=0)
    return {
        "wall_s": wall,
        "spans": len(spans),
        "modules": modules,
        "samples": samples,
        "process_to_load_end_s": (time.monotonic_ns() - _T0) / 1e9,
    }


def run_fresh_counts(folder: Path, options: LoadOptions) -> dict[str, float]:
    """:func:`fresh_counts` in a new interpreter."""
    out = subprocess.run(
        [sys.executable, "-m", "profiler.run.trace_overhead", str(folder), options.dtype],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


if __name__ == "__main__":
    print(json.dumps(fresh_counts(Path(sys.argv[1]), LoadOptions(dtype=sys.argv[2], device="cpu"))))
