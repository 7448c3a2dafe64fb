"""Regression verdicts: compare two sets of metrics the way a CI gate should.

A change is a regression only when three things hold together:

1. the median moved past a relative threshold (default 10%) in the bad direction;
2. the two sample sets really differ: Mann–Whitney U two-sided p < alpha;
3. the absolute change of the median is larger than a noise floor for its unit
   (5 ms, 8 MB, 0.5 tokens/s by default), so a 40% swing of a 1 ms stage does
   not fail a build.

A large change that is not significant is "noisy", not a regression; an
improvement is the same test in the good direction. When the samples are too few
for the test to ever reach p < alpha (fewer than 3 on a side, or sizes whose
smallest attainable p is not below alpha, such as 3 vs 3 with alpha 0.01), the
verdict rests on threshold and floor only and is marked low confidence, rather
than the gate silently never firing. Metrics on one side only are reported as
"new" or "missing", never dropped.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from profiler.analysis.metrics import MetricSamples
from profiler.analysis.stats import Summary, mann_whitney_p, min_mann_whitney_p, summarize
from profiler.errors import UserError
from profiler.render.format import human_quantity, p_value, percent_setting, signed_percent

Verdict = Literal["regression", "improvement", "unchanged", "noisy", "new", "missing"]
Confidence = Literal["normal", "low"]

# Absolute change of the median below which a change is noise, per unit. Seconds:
# scheduler and timer jitter on a shared CI runner is a few ms. Bytes: allocator
# arenas and page-cache accounting move RSS by a few MB between identical runs.
DEFAULT_FLOORS: dict[str, float] = {"s": 0.005, "bytes": 8e6, "tokens/s": 0.5}

# Below this many samples on a side no significance test is run.
MIN_SAMPLES = 3

# Order of verdicts in reports: what needs attention first.
VERDICT_ORDER: tuple[Verdict, ...] = (
    "regression",
    "missing",
    "noisy",
    "improvement",
    "new",
    "unchanged",
)


@dataclass(frozen=True)
class Row:
    """The verdict on one metric.

    ``confidence`` is "low" when no significance test could decide (see
    ``confidence_note``); the verdict then rests on threshold and floor only.
    ``change`` is the signed relative change of the median, current vs baseline
    (+0.12 = 12% larger), whatever the direction; ``inf`` when the baseline median
    is 0 and the current one is not. ``p_value`` is None when no test was run.
    ``reason`` says in words why the verdict is what it is.
    """

    metric: str
    unit: str
    direction: Literal["lower", "higher"]
    baseline: Summary | None
    current: Summary | None
    change: float | None
    p_value: float | None
    verdict: Verdict
    confidence: Confidence
    reason: str
    threshold: float = 0.0  # the relative threshold applied to this metric
    floor: float = 0.0  # the absolute floor applied, in ``unit``
    confidence_note: str = ""  # why confidence is low, when it is


@dataclass(frozen=True)
class Comparison:
    """All rows of a comparison, with the machines and anything worth noting."""

    rows: tuple[Row, ...]
    machine_baseline: dict[str, Any]
    machine_current: dict[str, Any]
    machine_differences: dict[str, tuple[Any, Any]]
    notes: tuple[str, ...] = ()
    threshold: float = 0.10
    alpha: float = 0.01
    floors: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_FLOORS))

    @property
    def regressions(self) -> tuple[Row, ...]:
        return tuple(r for r in self.rows if r.verdict == "regression")

    @property
    def improvements(self) -> tuple[Row, ...]:
        return tuple(r for r in self.rows if r.verdict == "improvement")

    def counts(self) -> dict[str, int]:
        """Number of rows per verdict, in :data:`VERDICT_ORDER`, zero counts left out."""
        out: dict[str, int] = {}
        for v in VERDICT_ORDER:
            n = sum(1 for r in self.rows if r.verdict == v)
            if n:
                out[v] = n
        return out


def machine_differences(
    baseline: Mapping[str, Any], current: Mapping[str, Any]
) -> dict[str, tuple[Any, Any]]:
    """Fields known on both sides whose values differ, as ``{field: (base, cur)}``.

    A field present on one side only is unknown on the other (pytest-benchmark
    does not record a GPU unless a hook adds it), so it is not a difference.
    """
    return {
        k: (baseline[k], current[k]) for k in baseline if k in current and baseline[k] != current[k]
    }


def threshold_for(
    metric: str,
    default: float,
    thresholds: Mapping[str, float] | None,
    samples: Sequence[MetricSamples | None] = (),
) -> float:
    """The relative threshold that applies to ``metric``.

    Precedence: the last pattern of ``thresholds`` (shell globs, an exact name is a
    glob too) that matches, as the user's explicit word; then a threshold carried
    by the metric itself (current side first); then ``default``.
    """
    chosen: float | None = None
    for pattern, value in (thresholds or {}).items():
        if fnmatch.fnmatchcase(metric, pattern):
            chosen = value
    if chosen is not None:
        return chosen
    for m in samples:
        if m is not None and m.threshold is not None:
            return m.threshold
    return default


def _relative_change(base: float, cur: float) -> float:
    if base == 0:
        return 0.0 if cur == 0 else math.copysign(math.inf, cur)
    return (cur - base) / abs(base)


def _check_comparable(name: str, base: MetricSamples, cur: MetricSamples) -> None:
    if base.unit != cur.unit:
        raise UserError(
            f"metric {name!r} is in {base.unit} in the baseline but {cur.unit} in the "
            "current results: compare results of the same llmprof version"
        )
    if base.direction != cur.direction:
        raise UserError(
            f"metric {name!r} is {base.direction}-is-better in the baseline but "
            f"{cur.direction}-is-better in the current results: compare like with like"
        )


def _significance(
    base: MetricSamples, cur: MetricSamples, alpha: float
) -> tuple[float | None, Confidence, str]:
    """(p-value, confidence, why confidence is low): the test when it can decide."""
    nb, nc = len(base.samples), len(cur.samples)
    if nb < MIN_SAMPLES or nc < MIN_SAMPLES:
        return (
            None,
            "low",
            f"only {nb} vs {nc} samples (fewer than {MIN_SAMPLES}): no significance "
            "test, decided on threshold and floor only",
        )
    p = mann_whitney_p(base.samples, cur.samples)
    smallest = min_mann_whitney_p(nb, nc)
    if smallest >= alpha:
        return (
            p,
            "low",
            f"with {nb} vs {nc} samples p cannot go below {p_value(smallest)}, not "
            f"below alpha {alpha:g}: decided on threshold and floor only (take more "
            "repetitions)",
        )
    return p, "normal", ""


def _judge(
    name: str,
    base: MetricSamples,
    cur: MetricSamples,
    *,
    threshold: float,
    alpha: float,
    floor: float,
) -> Row:
    _check_comparable(name, base, cur)
    sb, sc = summarize(base.samples), summarize(cur.samples)
    change = _relative_change(sb.median, sc.median)
    delta = sc.median - sb.median
    worse = (delta > 0) if cur.direction == "lower" else (delta < 0)
    p, confidence, test_note = _significance(base, cur, alpha)

    moved = f"median {signed_percent(change)}"
    if abs(change) <= threshold:
        verdict: Verdict = "unchanged"
        reason = f"{moved}, within the {percent_setting(threshold)} threshold"
    elif abs(delta) <= floor:
        verdict = "unchanged"
        reason = (
            f"{moved} but the change {human_quantity(abs(delta), cur.unit)} is under "
            f"the floor {human_quantity(floor, cur.unit, trim=True)}"
        )
    elif confidence == "low":
        verdict = "regression" if worse else "improvement"
        reason = f"{moved}, past threshold and floor"
    elif p is not None and p < alpha:
        verdict = "regression" if worse else "improvement"
        reason = f"{moved}, past threshold and floor, significant (p {p_value(p)} < {alpha:g})"
    else:
        verdict = "noisy"
        reason = (
            f"{moved}, past threshold and floor, but not significant (p {p_value(p)} >= {alpha:g})"
        )
    return Row(
        metric=name,
        unit=cur.unit,
        direction=cur.direction,
        baseline=sb,
        current=sc,
        change=change,
        p_value=p,
        verdict=verdict,
        confidence=confidence,
        reason=f"{reason}; {test_note}" if test_note else reason,
        threshold=threshold,
        floor=floor,
        confidence_note=test_note,
    )


def _one_sided(
    name: str,
    b: MetricSamples | None,
    c: MetricSamples | None,
    threshold: float,
    floors: Mapping[str, float],
) -> Row:
    """The row of a metric found on one side only: "new" or "missing", never dropped."""
    m = c if c is not None else b
    assert m is not None
    s = summarize(m.samples)
    if c is not None:
        verdict: Verdict = "new"
        reason = "only in the current results"
    else:
        verdict = "missing"
        reason = "in the baseline but not in the current results (failed or not run?)"
    return Row(
        metric=name,
        unit=m.unit,
        direction=m.direction,
        baseline=None if b is None else s,
        current=None if c is None else s,
        change=None,
        p_value=None,
        verdict=verdict,
        confidence="normal",
        reason=reason,
        threshold=threshold,
        floor=floors.get(m.unit, 0.0),
    )


def compare(
    baseline: Mapping[str, MetricSamples],
    current: Mapping[str, MetricSamples],
    *,
    threshold: float = 0.10,
    alpha: float = 0.01,
    floor: Mapping[str, float] | None = None,
    thresholds: Mapping[str, float] | None = None,
    machine_baseline: Mapping[str, Any] | None = None,
    machine_current: Mapping[str, Any] | None = None,
    notes: Sequence[str] = (),
) -> Comparison:
    """Compare every metric of ``baseline`` with ``current``; see the module doc.

    ``floor`` overrides :data:`DEFAULT_FLOORS` per unit (a unit in neither has
    floor 0). ``thresholds`` maps metric-name globs to relative thresholds (see
    :func:`threshold_for`). ``machine_*`` are the machine fingerprints of the two
    sides, compared into ``machine_differences``; ``notes`` are carried into the
    result (for example what loading the files noticed).

    Raises UserError when the two sides have no metric in common: nothing could be
    compared, and a report of only "new" and "missing" would pass a CI gate.
    """
    if threshold < 0:
        raise UserError(f"threshold {threshold:g} is negative: give a value such as 10%")
    if not 0 < alpha < 1:
        raise UserError(f"alpha {alpha:g} is not between 0 and 1: give a value such as 0.01")
    floors = dict(DEFAULT_FLOORS)
    floors.update(floor or {})
    common = [n for n in baseline if n in current]
    if not common:
        raise UserError(
            "baseline and current have no metric in common "
            f"(baseline e.g. {_example(baseline)}, current e.g. {_example(current)}): "
            "compare results of the same suite"
        )
    rows: list[Row] = []
    for name in sorted(set(baseline) | set(current)):
        b, c = baseline.get(name), current.get(name)
        t = threshold_for(name, threshold, thresholds, (c, b))
        if b is not None and c is not None:
            rows.append(_judge(name, b, c, threshold=t, alpha=alpha, floor=floors.get(c.unit, 0.0)))
        else:
            rows.append(_one_sided(name, b, c, t, floors))

    mb = dict(machine_baseline or {})
    mc = dict(machine_current or {})
    all_notes = list(notes)
    one_sided = sorted(set(mb) ^ set(mc))
    if mb and mc and one_sided:
        all_notes.append(
            "machine fields known on one side only, not compared: " + ", ".join(one_sided)
        )
    return Comparison(
        rows=tuple(rows),
        machine_baseline=mb,
        machine_current=mc,
        machine_differences=machine_differences(mb, mc),
        notes=tuple(all_notes),
        threshold=threshold,
        alpha=alpha,
        floors=floors,
    )


def _example(metrics: Mapping[str, MetricSamples]) -> str:
    return repr(next(iter(metrics))) if metrics else "none"
