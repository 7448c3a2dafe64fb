"""The smoke suite as pytest-benchmark benchmarks.

For teams that already use pytest-benchmark: ``--benchmark-json``,
``--benchmark-autosave`` and its storage work as usual, and ``llmprof compare``
reads the JSON back with every stage and decode metric::

    pytest suites/test_load.py --benchmark-only --benchmark-json=base.json
    ... change the code ...
    pytest suites/test_load.py --benchmark-only --benchmark-json=head.json
    llmprof compare base.json head.json

One benchmark per profile of ``suites/smoke.toml`` and page-cache state. Each
round is ONE repetition of :func:`profiler.run.repetitions.profile` (fresh subprocesses),
so each round is one sample and ``rounds`` is the suite's ``repeat``.

What the benchmark's own timing is: pedantic times the function with a timer of
our choosing, and the timer here (:func:`measured_load_clock`) advances only by
the load time llmprof measured inside the child, the native ``from_pretrained``
total (the staged load total when the native view is off). Process start,
imports, building the synthetic model and decode do not enter it, so the
benchmark's min/median/stddev are those of the model load itself, and the
JSON's ``options.timer`` names this clock. Everything else llmprof measured
(every stage's time, peak memory, decode TTFT/latency/tokens-per-second, with
their raw samples) is in ``extra_info["llmprof_metrics"]``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

pytest.importorskip("pytest_benchmark")

from profiler.analysis.metrics import metrics_from_runs, metrics_to_extra_info, run_prefix
from profiler.records.run import RunRecord
from profiler.run.repetitions import profile
from profiler.run.request import ProfileRequest
from profiler.run.suite import load_suite, result_name

SUITE = Path(__file__).with_name("smoke.toml")

_clock_s = [0.0]


def measured_load_clock() -> float:
    """pytest-benchmark timer: a clock that only moves by measured load times.

    pedantic reads it before and after each round; the round adds the load time
    llmprof measured (:func:`_advance`), so the difference is exactly that time.
    """
    return _clock_s[0]


def _advance(seconds: float) -> None:
    _clock_s[0] += seconds


def load_time_s(req: ProfileRequest, run: RunRecord) -> float:
    """The load time a round reports: native total when requested, else staged."""
    if req.native:
        assert run.native is not None, f"native view missing: {run.notes}"
        return run.native.total_s
    return run.load_total_s


def _cases() -> list[pytest.param]:
    out = []
    for req in load_suite(SUITE).requests:
        for state in req.page_states:
            one = dataclasses.replace(req, page_states=(state,))
            out.append(pytest.param(one, id=f"{result_name(req).removesuffix('.json')}-{state}"))
    return out


@pytest.mark.llmprof_bench
@pytest.mark.benchmark(group="llmprof-load", timer=measured_load_clock)
@pytest.mark.parametrize("req", _cases())
def test_load(benchmark, req: ProfileRequest) -> None:
    runs: list[RunRecord] = []

    def one_repetition() -> float:
        # repeat=1: this round is one sample; the record keeps its round index.
        (run,) = profile(dataclasses.replace(req, repeat=1))
        assert run.status == "ok", f"repetition failed (exit {run.exit_code}): {run.error}"
        run = dataclasses.replace(run, repetition=len(runs))
        runs.append(run)
        seconds = load_time_s(req, run)
        _advance(seconds)
        return seconds

    benchmark.pedantic(one_repetition, rounds=req.repeat, iterations=1, warmup_rounds=0)

    assert len(runs) == req.repeat
    metrics = metrics_from_runs(runs)
    prefix = run_prefix(runs[0])
    assert {run_prefix(r) for r in runs} == {prefix}
    for s in runs[0].stages:
        if s.status == "ok":
            assert len(metrics[f"{prefix}/load.{s.name}_s"].samples) == req.repeat
    benchmark.extra_info.update(
        {
            "model": req.spec,
            "device": req.device,
            "dtype": req.dtype,
            "cache": req.page_states[0],
            "timing": "native from_pretrained total" if req.native else "staged load total",
        }
    )
    benchmark.extra_info.update(metrics_to_extra_info(metrics))
    # The benchmark's samples are the load times the runs recorded, in order.
    assert benchmark.stats.stats.data == pytest.approx([load_time_s(req, r) for r in runs])
