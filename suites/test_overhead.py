"""What llmprof's instrumentation costs a load: must stay under 2%.

A benchmark, not a unit test: it loads a 124 M-parameter model (``synthetic:gpt2``,
float32, ~500 MB) 2 * ROUNDS + 1 times and takes about 30 s on 2 cores. Run it with::

    pytest suites/test_overhead.py --benchmark-only -s

:func:`profiler.run.overhead.measure_overhead` alternates the same staged load with a
:class:`~profiler.measure.recorder.NullRecorder` (plain) and with the real recorder
(instrumented) in one process, so both see the same machine, page cache and
imports. The benchmark's own samples are the instrumented load times (replayed
through :func:`overhead_clock`, so the JSON's stats are those loads and nothing
else); ``extra_info`` holds both sample sets, their medians and the overhead
fraction, and both sample sets as llmprof metrics that ``llmprof compare`` reads.
"""

from __future__ import annotations

import pytest

pytest.importorskip("pytest_benchmark")
torch = pytest.importorskip("torch")

from profiler.analysis.metrics import MetricSamples, metrics_to_extra_info  # noqa: E402
from profiler.analysis.stats import median  # noqa: E402
from profiler.load.common import LoadOptions  # noqa: E402
from profiler.run.overhead import measure_overhead  # noqa: E402

MODEL = "synthetic:gpt2"
DTYPE = "float32"
# Odd: plain goes first in 11 rounds, instrumented in 10 (order effects cancel). A
# load takes ~0.5 s here and varies by +-10% on a shared 2-core machine, so fewer
# rounds leave the median's noise larger than the 2% being measured.
ROUNDS = 21
BUDGET_FRACTION = 0.02

_clock_s = [0.0]


def overhead_clock() -> float:
    """pytest-benchmark timer that advances by one measured instrumented load per round."""
    return _clock_s[0]


@pytest.mark.llmprof_bench
@pytest.mark.benchmark(group="llmprof-overhead", timer=overhead_clock)
def test_instrumentation_overhead(
    benchmark, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from profiler.sources import resolve_local

    # As in the profiling child (profiler/child.py): no tokenizer thread pool
    # competing with the load for the two cores.
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")

    local = resolve_local(MODEL)
    assert local is not None, f"{MODEL} did not resolve to a local model"
    options = LoadOptions(dtype=DTYPE, device="cpu")
    result = measure_overhead(local.path, options, rounds=ROUNDS)
    assert len(result.plain_s) == len(result.instrumented_s) == ROUNDS

    pending = list(result.instrumented_s)

    def replay() -> None:
        _clock_s[0] += pending.pop(0)

    benchmark.pedantic(replay, rounds=ROUNDS, iterations=1)
    assert benchmark.stats.stats.data == pytest.approx(list(result.instrumented_s))

    # Each round ran both loads back to back: the median of the per-round ratios is
    # a second estimate, less sensitive to drift of the machine over the minute.
    paired = result.paired_fraction

    prefix = f"overhead/{MODEL}/cpu/{DTYPE}"
    metrics = {
        f"{prefix}/load.plain_s": MetricSamples(
            f"{prefix}/load.plain_s", "s", "lower", result.plain_s
        ),
        f"{prefix}/load.instrumented_s": MetricSamples(
            f"{prefix}/load.instrumented_s", "s", "lower", result.instrumented_s
        ),
    }
    benchmark.extra_info.update(
        {
            "model": MODEL,
            "dtype": DTYPE,
            "model_path": str(local.path),
            "rounds": ROUNDS,
            "plain_s": list(result.plain_s),
            "instrumented_s": list(result.instrumented_s),
            "plain_median_s": median(result.plain_s),
            "instrumented_median_s": median(result.instrumented_s),
            "overhead_fraction": result.fraction,
            "paired_overhead_fraction": paired,
            "budget_fraction": BUDGET_FRACTION,
            "torch_threads": torch.get_num_threads(),
        }
    )
    benchmark.extra_info.update(metrics_to_extra_info(metrics))
    with capsys.disabled():
        print(
            f"\nllmprof instrumentation overhead on {MODEL} ({DTYPE}, {ROUNDS} rounds): "
            f"plain median {median(result.plain_s):.3f} s, instrumented median "
            f"{median(result.instrumented_s):.3f} s, overhead {result.fraction:+.2%} "
            f"(median of per-round ratios {paired:+.2%}; budget {BUDGET_FRACTION:.0%})"
        )
    # Gate on the paired estimate: the ratio of medians mixes in whatever else the
    # shared machine did between rounds (seen: +9.8% by medians, -0.13% paired, in
    # one run under a concurrent CI job).
    assert paired < BUDGET_FRACTION, (
        f"instrumentation costs {paired:.2%} of a load (paired), budget {BUDGET_FRACTION:.0%}"
    )
