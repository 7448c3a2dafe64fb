"""What tracing the native load costs (``--trace``, and the native view's timeline):
must stay under 2% of the load.

A benchmark, not a unit test: it runs ``load_native`` on ``synthetic:gpt2`` (float32,
~500 MB) plain and traced, alternated in one process, ROUNDS times each, then
measures the tracer's direct costs (per span, per imported module, per counter
sample) and one traced native load in a fresh process. About a minute on 2 cores::

    pytest suites/test_trace_overhead.py --benchmark-only -s

The paired difference of whole loads is reported; on a shared 2-core machine its
noise can exceed 2%, so the gate is the direct-cost share of a fresh process's
load (costs × counts / wall), which is what a user's traced load pays.
"""

from __future__ import annotations

import pytest

pytest.importorskip("pytest_benchmark")
torch = pytest.importorskip("torch")

from profiler.analysis.stats import median  # noqa: E402
from profiler.load.common import LoadOptions  # noqa: E402
from profiler.run.trace_overhead import (  # noqa: E402
    measure_trace_overhead,
    module_cost_s,
    run_fresh_counts,
    sample_cost_s,
    span_cost_s,
)

MODEL = "synthetic:gpt2"
DTYPE = "float32"
ROUNDS = 11  # odd: plain first in 6 rounds, traced first in 5
BUDGET_FRACTION = 0.02

_clock_s = [0.0]


def trace_clock() -> float:
    """pytest-benchmark timer that advances by one measured traced load per round."""
    return _clock_s[0]


@pytest.mark.llmprof_bench
@pytest.mark.benchmark(group="llmprof-trace-overhead", timer=trace_clock)
def test_trace_overhead(
    benchmark, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from profiler.sources import resolve_local

    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    local = resolve_local(MODEL)
    assert local is not None, f"{MODEL} did not resolve to a local model"
    options = LoadOptions(dtype=DTYPE, device="cpu")
    result = measure_trace_overhead(local.path, options, rounds=ROUNDS)
    pending = list(result.traced_s)

    def replay() -> None:
        _clock_s[0] += pending.pop(0)

    benchmark.pedantic(replay, rounds=ROUNDS, iterations=1)

    costs = {"span_s": span_cost_s(), "sample_s": sample_cost_s(), "module_s": module_cost_s()}
    counts = run_fresh_counts(local.path, options)
    spent = (
        counts["spans"] * costs["span_s"]
        + counts["modules"] * costs["module_s"]
        + counts["samples"] * costs["sample_s"]
    )
    # The tracker runs from the first line of the child: its share is of the whole
    # fresh process up to the end of the load (imports included).
    share = spent / counts["process_to_load_end_s"]
    benchmark.extra_info.update(
        {
            "model": MODEL,
            "dtype": DTYPE,
            "rounds": ROUNDS,
            "plain_s": list(result.plain_s),
            "traced_s": list(result.traced_s),
            "paired_overhead_fraction": result.paired_fraction,
            **costs,
            **{f"fresh_{k}": v for k, v in counts.items()},
            "direct_cost_s": spent,
            "direct_share_fraction": share,
            "budget_fraction": BUDGET_FRACTION,
        }
    )
    with capsys.disabled():
        print(
            f"\ntrace overhead on {MODEL} ({DTYPE}, {ROUNDS} rounds, warm process): plain "
            f"median {median(result.plain_s):.3f} s, traced {median(result.traced_s):.3f} s, "
            f"paired {result.paired_fraction:+.2%}\n"
            f"direct costs: {costs['span_s'] * 1e6:.2f} µs/span, "
            f"{costs['module_s'] * 1e6:.1f} µs/imported module, "
            f"{costs['sample_s'] * 1e6:.1f} µs/counter sample; a fresh process's traced load "
            f"had {counts['spans']:.0f} spans, {counts['modules']:.0f} modules, "
            f"{counts['samples']:.0f} samples in {counts['process_to_load_end_s']:.2f} s: "
            f"{spent * 1e3:.1f} ms = {share:.2%} (budget {BUDGET_FRACTION:.0%})"
        )
    assert share < BUDGET_FRACTION
