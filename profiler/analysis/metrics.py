"""Named metrics with their raw samples: the input of ``llmprof compare``.

A metric is a name, a unit, a direction (is smaller better, or larger?) and one
sample per measured repetition. Raw samples are kept, never a summary alone, so a
comparison can test whether two sets of samples really differ (Mann–Whitney U)
instead of comparing two single numbers.

Metrics come from llmprof results files (:func:`metrics_from_runs`) or from
pytest-benchmark JSON (:func:`load_metrics`), where a benchmark may carry llmprof
metrics in ``extra_info["llmprof_metrics"]`` (:func:`metrics_to_extra_info`).

Names are ``<model spec>/<device>/<dtype>/<cache label>/<metric>``, for example
``smollm2-135m/cpu/bfloat16/cold/load.weight_read_s``. The model spec and the cache
label may themselves contain ``/``; the metric part is what follows the last one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from profiler.analysis.decode_metrics import DecodeFigures, decode_figures
from profiler.analysis.ranks import rank_of
from profiler.errors import UserError
from profiler.records.run import RunRecord
from profiler.records.stage import STAGE_ORDER

Direction = Literal["lower", "higher"]


# Version of the ``extra_info["llmprof_metrics"]`` format. Bump it when the meaning
# of a field changes; readers refuse versions newer than they know.
EXTRA_INFO_KEY = "llmprof_metrics"


EXTRA_INFO_VERSION = 1


UNIT_SECONDS = "s"


UNIT_BYTES = "bytes"


UNIT_TOKENS_PER_S = "tokens/s"


UNIT_PERCENT = "%"


@dataclass(frozen=True)
class MetricSamples:
    """One metric and its raw samples (one per repetition, or per benchmark round).

    ``threshold`` overrides the comparison's relative threshold for this metric
    (0.25 = 25%), for metrics known to be noisier or steadier than the rest.
    """

    name: str
    unit: str
    direction: Direction
    samples: tuple[float, ...]
    threshold: float | None = None


def run_prefix(run: RunRecord) -> str:
    """The group a run belongs to: runs with the same prefix are repetitions.

    Each rank of a multi-rank run is its own group (``cpu@rank1``), so a regression
    on any one rank is a regression."""
    rank, world = rank_of(run)
    device = f"{run.device}@rank{rank}" if world > 1 else run.device
    return f"{run.model.spec}/{device}/{run.dtype_resolved}/{run.cache.label}"


def failed_run_counts(runs: Sequence[RunRecord]) -> dict[str, int]:
    """How many runs of each group failed (status other than ``"ok"``).

    Failed runs contribute no samples to :func:`metrics_from_runs`; this says how
    many were left out, so a report can say so instead of hiding them.
    """
    out: dict[str, int] = {}
    for run in runs:
        if run.status != "ok":
            key = run_prefix(run)
            out[key] = out.get(key, 0) + 1
    return out


class _Collector:
    """Accumulates samples per metric name, keeping first-seen order."""

    def __init__(self) -> None:
        self._data: dict[str, tuple[str, Direction, list[float]]] = {}

    def add(self, name: str, unit: str, direction: Direction, value: float) -> None:
        if not math.isfinite(value):
            return  # a non-finite figure is no measurement; never feed it to the test
        entry = self._data.get(name)
        if entry is None:
            entry = (unit, direction, [])
            self._data[name] = entry
        entry[2].append(float(value))

    def result(self) -> dict[str, MetricSamples]:
        return {
            name: MetricSamples(name, unit, direction, tuple(samples))
            for name, (unit, direction, samples) in self._data.items()
        }


def _stage_sort_key(name: str) -> tuple[int, str]:
    order = {n: i for i, n in enumerate(STAGE_ORDER)}
    return (order.get(name, len(order)), name)


def metrics_from_runs(runs: Sequence[RunRecord]) -> dict[str, MetricSamples]:
    """Turn run records into metrics; each successful repetition adds one sample.

    Runs whose status is not ``"ok"`` are skipped (count them with
    :func:`failed_run_counts`). Per group ``<prefix>`` (see :func:`run_prefix`):

    - ``load.<stage>_s``: duration of each staged-view stage with status ``"ok"``;
    - ``load.staged_total_s``: sum of those durations (when the run has stages);
    - ``load.native_total_s``: plain ``from_pretrained`` total (when measured);
    - ``load.peak_rss_bytes``: max of the stages' ``memory.peak_rss_bytes``;
    - ``load.peak_gpu_bytes``: max of the stages' ``torch_peak_allocated_bytes``;
    - per decode record at batch size B, warm calls only (the first call of the
      process is a cold start and is not a steady-state figure), each figure as
      :func:`profiler.analysis.decode_metrics.decode_figures` defines it, so the
      numbers are those of the decode table and the diagnosis:

      - ``decode.bB.ttft_s``: TTFT;
      - ``decode.bB.token_p50_s`` / ``token_p99_s``: percentiles of the
        token-to-token intervals of all warm calls together;
      - ``decode.bB.step_s``: decode step time (median over calls of each call's
        decode time per step);
      - ``decode.bB.tokens_per_s_batch`` (higher is better): decode tokens/s of the
        whole batch, ``batch / step`` (prefill excluded);
      - ``decode.bB.mbu_pct`` (higher is better): memory-bandwidth utilisation in %.

    Times and memory are lower-is-better.
    """
    col = _Collector()
    for run in runs:
        if run.status != "ok":
            continue
        p = run_prefix(run)
        ok_stages = [s for s in run.stages if s.status == "ok"]
        for s in sorted(ok_stages, key=lambda s: _stage_sort_key(s.name)):
            col.add(f"{p}/load.{s.name}_s", UNIT_SECONDS, "lower", s.duration_s)
        if ok_stages:
            col.add(f"{p}/load.staged_total_s", UNIT_SECONDS, "lower", run.staged_total_s)
        if run.native is not None and any(s.status == "ok" for s in run.native.stages):
            col.add(f"{p}/load.native_total_s", UNIT_SECONDS, "lower", run.native.total_s)
        mems = [s.memory for s in ok_stages if s.memory is not None]
        if mems:
            col.add(
                f"{p}/load.peak_rss_bytes",
                UNIT_BYTES,
                "lower",
                max(m.peak_rss_bytes for m in mems),
            )
        gpu = [m.torch_peak_allocated_bytes for m in mems if m.torch_peak_allocated_bytes]
        if gpu:
            col.add(f"{p}/load.peak_gpu_bytes", UNIT_BYTES, "lower", max(gpu))
        for rec in run.decode:
            _add_decode(col, f"{p}/decode.b{rec.batch_size}", decode_figures([rec]))
    return col.result()


def _add_decode(col: _Collector, d: str, f: DecodeFigures) -> None:
    if f.ttft is not None:
        col.add(f"{d}.ttft_s", UNIT_SECONDS, "lower", f.ttft.median)
    if f.interval is not None:
        col.add(f"{d}.token_p50_s", UNIT_SECONDS, "lower", f.interval.median)
        col.add(f"{d}.token_p99_s", UNIT_SECONDS, "lower", f.interval.p99)
    if f.step is not None:
        col.add(f"{d}.step_s", UNIT_SECONDS, "lower", f.step.median)
    if f.tokens_per_s_batch is not None:
        col.add(f"{d}.tokens_per_s_batch", UNIT_TOKENS_PER_S, "higher", f.tokens_per_s_batch)
    if f.mbu is not None:
        col.add(f"{d}.mbu_pct", UNIT_PERCENT, "higher", f.mbu * 100)


def metrics_to_extra_info(metrics: Mapping[str, MetricSamples]) -> dict[str, Any]:
    """JSON-able form of ``metrics`` for pytest-benchmark's ``extra_info``.

    Returns ``{"llmprof_metrics": {...}}``, so a benchmark can do
    ``benchmark.extra_info.update(metrics_to_extra_info(m))``. Raw samples, unit,
    direction and any per-metric threshold travel with each metric.
    """
    return {
        EXTRA_INFO_KEY: {
            "version": EXTRA_INFO_VERSION,
            "metrics": {
                name: {
                    "unit": m.unit,
                    "direction": m.direction,
                    "samples": list(m.samples),
                    "threshold": m.threshold,
                }
                for name, m in metrics.items()
            },
        }
    }


def finite_number(x: Any, what: str) -> float:
    """``x`` as a float, or UserError naming ``what`` when it is not a finite number.

    bool is an int in Python; a true/false sample is a bug upstream, not a time.
    """
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        raise UserError(f"{what} is {x!r}, not a finite number")
    return float(x)


def metrics_from_extra_info(d: Mapping[str, Any]) -> dict[str, MetricSamples]:
    """Read metrics written by :func:`metrics_to_extra_info`.

    ``d`` is a benchmark's whole ``extra_info`` (no ``"llmprof_metrics"`` key:
    no metrics) or the value stored under that key. Raises UserError on a
    malformed entry or a format version newer than this code.
    """
    if not isinstance(d, Mapping):
        raise UserError(f"{EXTRA_INFO_KEY} is not an object")
    if EXTRA_INFO_KEY in d:
        d = d[EXTRA_INFO_KEY]
    elif "metrics" not in d:
        return {}
    if not isinstance(d, Mapping):
        raise UserError(f"{EXTRA_INFO_KEY} is not an object")
    version = d.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise UserError(f"{EXTRA_INFO_KEY} has no integer version")
    if version > EXTRA_INFO_VERSION:
        raise UserError(
            f"{EXTRA_INFO_KEY} has version {version}, this llmprof reads up to "
            f"{EXTRA_INFO_VERSION}: upgrade llmprof"
        )
    raw = d.get("metrics")
    if not isinstance(raw, Mapping):
        raise UserError(f'{EXTRA_INFO_KEY} has no "metrics" object')
    out: dict[str, MetricSamples] = {}
    for name, entry in raw.items():
        if not isinstance(entry, Mapping):
            raise UserError(f"metric {name!r} is not an object")
        unit = entry.get("unit")
        direction = entry.get("direction")
        samples = entry.get("samples")
        if not isinstance(unit, str) or not unit:
            raise UserError(f"metric {name!r} has no unit")
        if direction not in ("lower", "higher"):
            raise UserError(f"metric {name!r} has direction {direction!r}, not lower/higher")
        if not isinstance(samples, list) or not samples:
            raise UserError(f"metric {name!r} has no samples")
        values = tuple(finite_number(x, f"a sample of metric {name!r}") for x in samples)
        threshold = entry.get("threshold")
        if threshold is not None:
            threshold = finite_number(threshold, f"the threshold of metric {name!r}")
            if threshold < 0:
                raise UserError(f"metric {name!r} has a negative threshold")
        out[str(name)] = MetricSamples(str(name), unit, direction, values, threshold)
    return out
