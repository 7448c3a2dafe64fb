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

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from profiler.errors import UserError
from profiler.records import STAGE_ORDER, RunRecord
from profiler.resultsio import expand_paths, parse_runs
from profiler.stats import median, percentile

Direction = Literal["lower", "higher"]

# Version of the ``extra_info["llmprof_metrics"]`` format. Bump it when the meaning
# of a field changes; readers refuse versions newer than they know.
EXTRA_INFO_KEY = "llmprof_metrics"
EXTRA_INFO_VERSION = 1

UNIT_SECONDS = "s"
UNIT_BYTES = "bytes"
UNIT_TOKENS_PER_S = "tokens/s"


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


@dataclass(frozen=True)
class LoadedMetrics:
    """Metrics read from one path, with the machine they were measured on.

    ``machine`` holds only fields that should match for two measurements to be
    comparable (volatile fields such as the hostname are left out).
    ``machine_conflicts`` names machine fields on which the files or runs read
    here disagree among themselves.
    """

    metrics: dict[str, MetricSamples]
    machine: dict[str, Any]
    source_format: str  # llmprof | pytest-benchmark | mixed
    notes: tuple[str, ...] = ()
    failed_runs: int = 0
    machine_conflicts: tuple[str, ...] = ()


_TIME_SCALES = ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns"))
_BYTE_SCALES = ((1024.0**3, "GiB"), (1024.0**2, "MiB"), (1024.0, "KiB"), (1.0, "B"))


def unit_scale(value: float, unit: str) -> tuple[float, str]:
    """Divisor and label to show ``value`` of ``unit`` in a human scale.

    Seconds become ms/µs/ns when smaller than 1, bytes KiB/MiB/GiB; other units
    are shown as they are (``tokens/s`` as ``tok/s``).
    """
    v = abs(value)
    if unit == UNIT_SECONDS:
        scales = _TIME_SCALES
    elif unit == UNIT_BYTES:
        scales = _BYTE_SCALES
    else:
        return 1.0, "tok/s" if unit == UNIT_TOKENS_PER_S else unit
    for div, label in scales:
        if v >= div:
            return div, label
    return scales[0] if v == 0 else scales[-1]


def number_decimals(x: float) -> int | None:
    """Decimals that show ``x`` with about three significant digits (None: use %g)."""
    a = abs(x)
    if a >= 100 or a == 0:
        return 0
    if a >= 10:
        return 1
    if a >= 0.01:
        return 2
    return None


def format_number(x: float, decimals: int | None = -1, *, trim: bool = False) -> str:
    """About three significant digits, without scientific notation for usual sizes.

    ``decimals`` forces a count (None: ``%.3g``), so a spread can be shown with the
    precision of the median it goes with; ``trim`` drops trailing zeros (``5`` not
    ``5.00``), for settings rather than measurements.
    """
    if not math.isfinite(x):
        return str(x)
    d = number_decimals(x) if decimals == -1 else decimals
    text = f"{x:.3g}" if d is None else f"{x:.{d}f}"
    if trim and "." in text and "e" not in text:
        text = text.rstrip("0").rstrip(".")
    return text


def format_quantity(value: float, unit: str, *, trim: bool = False) -> str:
    """``value`` with a human unit: ``0.0123, "s"`` gives ``12.3 ms``."""
    div, label = unit_scale(value, unit)
    return f"{format_number(value / div, trim=trim)} {label}"


# --------------------------------------------------------------------------- runs


def run_prefix(run: RunRecord) -> str:
    """The group a run belongs to: runs with the same prefix are repetitions."""
    return f"{run.model.spec}/{run.device}/{run.dtype_resolved}/{run.cache.label}"


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
    - per decode record at batch size B (warm calls only; the first call of the
      process is a cold start and is not a steady-state figure):

      - ``decode.bB.ttft_s``: median time to first token over the warm calls;
      - ``decode.bB.token_p50_s`` / ``token_p99_s``: percentiles of the
        token-to-token intervals of all warm calls together;
      - ``decode.bB.tokens_per_s`` (higher is better): end-to-end throughput,
        prefill included. For each warm call, ``batch_size * tokens generated``
        (``len(token_times_ns)``, which is ``new_tokens`` unless generation stopped
        early) divided by the call's wall time; the sample is the median over the
        calls. When every call generates the same count this equals
        ``batch_size * new_tokens / median wall time``.

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
            calls = [c for c in rec.calls if c.token_times_ns]
            if not calls:
                continue
            d = f"{p}/decode.b{rec.batch_size}"
            col.add(f"{d}.ttft_s", UNIT_SECONDS, "lower", median([c.ttft_s for c in calls]))
            intervals = [x for c in calls for x in c.intervals_s]
            if intervals:
                col.add(f"{d}.token_p50_s", UNIT_SECONDS, "lower", percentile(intervals, 50))
                col.add(f"{d}.token_p99_s", UNIT_SECONDS, "lower", percentile(intervals, 99))
            rates = [
                rec.batch_size * len(c.token_times_ns) / c.wall_s for c in calls if c.wall_s > 0
            ]
            if rates:
                col.add(f"{d}.tokens_per_s", UNIT_TOKENS_PER_S, "higher", median(rates))
    return col.result()


# --------------------------------------------------------------------- extra_info


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


def _number(x: Any, what: str) -> float:
    # bool is an int in Python; a true/false sample is a bug upstream, not a time.
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
        values = tuple(_number(x, f"a sample of metric {name!r}") for x in samples)
        threshold = entry.get("threshold")
        if threshold is not None:
            threshold = _number(threshold, f"the threshold of metric {name!r}")
            if threshold < 0:
                raise UserError(f"metric {name!r} has a negative threshold")
        out[str(name)] = MetricSamples(str(name), unit, direction, values, threshold)
    return out


# ------------------------------------------------------------------ loading files


@dataclass
class _Load:
    """Mutable state while reading the files of one path."""

    runs: list[tuple[RunRecord, str]] = field(default_factory=list)
    metrics: dict[str, MetricSamples] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)  # metric -> file it came from
    machines: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    formats: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)

    def add_metric(self, m: MetricSamples, origin: str) -> None:
        # The same name from two places would pool two measurements of possibly
        # different code into one sample set, and double n: refuse instead.
        if m.name in self.origin:
            raise UserError(
                f"metric {m.name!r} appears in both {self.origin[m.name]} and {origin}: "
                "pass only one of them"
            )
        self.metrics[m.name] = m
        self.origin[m.name] = origin


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise UserError(f"{path}: cannot read ({reason}): pass an existing results file") from e
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not JSON ({e.msg} at line {e.lineno})") from e


def _is_pytest_benchmark(doc: Any) -> bool:
    return (
        isinstance(doc, dict)
        and isinstance(doc.get("benchmarks"), list)
        and isinstance(doc.get("machine_info"), dict)
    )


def _is_llmprof(doc: Any) -> bool:
    return isinstance(doc, dict) and doc.get("kind") in ("llmprof.run", "llmprof.runs")


def pytest_benchmark_machine(machine_info: Mapping[str, Any]) -> dict[str, Any]:
    """The stable part of pytest-benchmark's ``machine_info``.

    Uses llmprof's key names where the meaning is the same (``cpu_model``,
    ``cpu_count``), so the fingerprint compares across both formats. Fields whose
    name mentions gpu, cuda or torch (added by a ``pytest_benchmark_update_machine_info``
    hook) are kept as they are; the node name and clock speeds are left out as
    volatile.
    """
    out: dict[str, Any] = {}
    cpu = machine_info.get("cpu")
    if isinstance(cpu, Mapping):
        brand = cpu.get("brand_raw") or cpu.get("brand")
        if brand:
            out["cpu_model"] = brand
        if isinstance(cpu.get("count"), int):
            out["cpu_count"] = cpu["count"]
    if machine_info.get("python_version"):
        out["python"] = machine_info["python_version"]
    for key, value in machine_info.items():
        low = key.lower()
        if any(w in low for w in ("gpu", "cuda", "torch")) and _is_plain(value):
            out[key] = value
    return out


def _is_plain(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _load_pytest_benchmark(doc: dict[str, Any], path: Path, st: _Load) -> None:
    st.machines.append((pytest_benchmark_machine(doc["machine_info"]), str(path)))
    missing_data: list[str] = []
    for i, bench in enumerate(doc["benchmarks"]):
        if not isinstance(bench, dict):
            raise UserError(f"{path}: benchmark #{i} is not an object")
        name = bench.get("fullname") or bench.get("name")
        if not isinstance(name, str) or not name:
            raise UserError(f"{path}: benchmark #{i} has no name")
        stats = bench.get("stats")
        if not isinstance(stats, dict):
            raise UserError(f"{path}: benchmark {name!r} has no stats")
        try:
            data = stats.get("data")
            if isinstance(data, list) and data:
                samples = tuple(_number(x, "a sample") for x in data)
            else:
                samples = (_number(stats.get("median"), "stats.median"),)
                missing_data.append(name)
            extra = bench.get("extra_info") or {}
            carried = (
                metrics_from_extra_info(extra)
                if isinstance(extra, Mapping) and EXTRA_INFO_KEY in extra
                else {}
            )
        except UserError as e:
            raise UserError(f"{path}: benchmark {name!r}: {e}") from e
        st.add_metric(MetricSamples(name, UNIT_SECONDS, "lower", samples), str(path))
        for m in carried.values():
            st.add_metric(m, f"{path} ({name})")
    if missing_data:
        st.notes.append(
            f"{path}: {len(missing_data)} benchmark(s) without raw samples (only the median, "
            "so no significance test): rerun pytest with --benchmark-save-data"
        )


def _machine_conflicts(machines: Sequence[dict[str, Any]]) -> list[str]:
    keys: dict[str, None] = {}
    for m in machines:
        keys.update(dict.fromkeys(m))
    return [k for k in keys if len({repr(m.get(k)) for m in machines if k in m}) > 1]


def load_metrics(path: str | Path) -> LoadedMetrics:
    """Read metrics from llmprof results or pytest-benchmark JSON.

    ``path`` is a JSON file or a folder (its ``*.json`` files, recursively). Each
    file may be llmprof results (``"kind": "llmprof.run(s)"``) or pytest-benchmark
    output (``--benchmark-json``). llmprof runs of all files are pooled before
    grouping, so a folder of one-run files gives one sample per run; a run present
    twice (same run id and repetition) is counted once.

    Raises UserError naming the file for a missing or unreadable file, JSON in
    neither format, a schema newer than this code, or a metric found in two files.
    """
    root = Path(path)
    files = expand_paths([root])
    if root.is_dir() and not files:
        raise UserError(f"{root}: folder holds no .json files: pass a results file or folder")
    st = _Load()
    for f in files:
        doc = _read_json(f)
        if _is_llmprof(doc):
            st.formats.add("llmprof")
            st.runs.extend((r, str(f)) for r in parse_runs(doc, str(f)))
        elif _is_pytest_benchmark(doc):
            st.formats.add("pytest-benchmark")
            _load_pytest_benchmark(doc, f, st)
        else:
            raise UserError(
                f"{f}: neither llmprof results nor pytest-benchmark JSON: pass a file "
                "written by llmprof or by pytest --benchmark-json"
            )

    failed = 0
    conflicts: dict[str, None] = {}  # ordered set of machine fields that disagree
    if st.runs:
        runs = _dedupe(st.runs, st.notes)
        for m in metrics_from_runs([r for r, _ in runs]).values():
            st.add_metric(m, str(root))
        counts = failed_run_counts([r for r, _ in runs])
        failed = sum(counts.values())
        for prefix, n in counts.items():
            total = sum(1 for r, _ in runs if run_prefix(r) == prefix)
            st.notes.append(f"{root}: {n} of {total} runs of {prefix} failed and were left out")
        # The machine is that of the runs that produced metrics: a failed run left
        # nothing to compare, so its machine must not make the fingerprint ambiguous.
        measured = [(r, o) for r, o in runs if r.status == "ok"] or runs
        by_file: dict[str, list[dict[str, Any]]] = {}
        for r, origin in measured:
            by_file.setdefault(origin, []).append(r.environment.machine_key())
        for origin, keys in by_file.items():
            within = _machine_conflicts(keys)
            if within:
                st.notes.append(f"{origin}: runs disagree on the machine ({', '.join(within)})")
                conflicts.update(dict.fromkeys(within))
            st.machines.append((keys[0], origin))

    machine = dict(st.machines[0][0]) if st.machines else {}
    across = _machine_conflicts([m for m, _ in st.machines])
    if across:
        st.notes.append(f"{root}: files disagree on the machine ({', '.join(across)})")
        conflicts.update(dict.fromkeys(across))
    if not st.metrics and not failed:
        raise UserError(f"{root}: holds no metrics: pass results with at least one ok run")
    formats = sorted(st.formats)
    return LoadedMetrics(
        metrics=st.metrics,
        machine=machine,
        source_format=formats[0] if len(formats) == 1 else "mixed",
        notes=tuple(st.notes),
        failed_runs=failed,
        machine_conflicts=tuple(conflicts),
    )


def _dedupe(runs: Iterable[tuple[RunRecord, str]], notes: list[str]) -> list[tuple[RunRecord, str]]:
    seen: set[tuple[str, str, int]] = set()
    out: list[tuple[RunRecord, str]] = []
    dropped = 0
    for r, origin in runs:
        if r.run_id:
            key = (r.run_id, run_prefix(r), r.repetition)
            if key in seen:
                dropped += 1
                continue
            seen.add(key)
        out.append((r, origin))
    if dropped:
        notes.append(f"{dropped} run(s) present twice (same run id and repetition) counted once")
    return out
