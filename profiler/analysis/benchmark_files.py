"""Reading results files for ``llmprof compare``: llmprof records and pytest-benchmark JSON.

A path (a file, or a folder searched for ``*.json``) becomes named metrics with raw
samples (:mod:`profiler.analysis.metrics`), the machine they were measured on, and
notes on what was left out (failed runs, runs present twice, benchmarks without raw
samples). Bad input is a UserError naming the file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from profiler.analysis.metrics import (
    EXTRA_INFO_KEY,
    UNIT_SECONDS,
    MetricSamples,
    failed_run_counts,
    finite_number,
    metrics_from_extra_info,
    metrics_from_runs,
    run_prefix,
)
from profiler.errors import UserError
from profiler.records.io import expand_paths, parse_runs
from profiler.records.run import RunRecord


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
    from profiler.records.validate import parse_json

    try:
        return parse_json(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not JSON ({e.msg} at line {e.lineno})") from e
    except (ValueError, RecursionError) as e:
        raise UserError(f"{path}: not a valid results file ({e})") from e


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
                samples = tuple(finite_number(x, "a sample") for x in data)
            else:
                samples = (finite_number(stats.get("median"), "stats.median"),)
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
