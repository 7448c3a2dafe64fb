"""Mann–Whitney p-values on known samples, every verdict path, and the markdown."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import pytest

from profiler.analysis.compare import DEFAULT_FLOORS, compare, machine_differences, threshold_for
from profiler.analysis.metrics import MetricSamples
from profiler.analysis.stats import mann_whitney_p, min_mann_whitney_p
from profiler.commands.compare import (
    parse_floors,
    parse_fraction,
    parse_metric_thresholds,
)
from profiler.errors import UserError
from profiler.render.comparison import render_comparison_markdown, summary_line

MIB = 1024 * 1024
MB = 1_000_000

# ------------------------------------------------------------------ references


def _midranks(values: Sequence[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def exact_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided exact permutation p of U by enumerating every split (midranks for ties)."""
    pooled = list(a) + list(b)
    ranks = _midranks(pooled)
    n = len(a)

    def u(idx: Sequence[int]) -> float:
        return sum(ranks[i] for i in idx) - n * (n + 1) / 2

    observed = u(range(n))
    splits = [u(c) for c in itertools.combinations(range(len(pooled)), n)]
    le = sum(1 for x in splits if x <= observed + 1e-9) / len(splits)
    ge = sum(1 for x in splits if x >= observed - 1e-9) / len(splits)
    return min(1.0, 2 * min(le, ge))


# ------------------------------------------------------------------- statistics


def test_exact_known_values() -> None:
    assert mann_whitney_p([1, 2, 3], [4, 5, 6]) == pytest.approx(0.1)
    assert mann_whitney_p([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]) == pytest.approx(2 / 252)
    assert mann_whitney_p([6, 7, 8, 9, 10], [1, 2, 3, 4, 5]) == pytest.approx(2 / 252)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ([1.0, 3.0, 5.0], [2.0, 4.0, 6.0, 7.0]),
        ([0.11, 0.15, 0.12, 0.19], [0.14, 0.2, 0.22, 0.18, 0.3]),
        ([5.0, 1.0, 9.0, 3.0], [2.0, 8.0, 4.0]),
    ],
)
def test_no_ties_matches_enumeration(a: list[float], b: list[float]) -> None:
    assert mann_whitney_p(a, b) == pytest.approx(exact_p(a, b))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ([1.0, 2.0, 2.0, 3.0], [3.0, 4.0, 4.0, 5.0, 6.0]),
        ([10.0, 10.0, 10.0], [12.0, 12.0, 12.0, 12.0, 12.0, 12.0]),
        ([1.0, 1.0, 2.0, 2.0, 3.0], [2.0, 3.0, 3.0, 4.0, 4.0]),
    ],
)
def test_small_ties_are_exact(a: list[float], b: list[float]) -> None:
    assert mann_whitney_p(a, b) == pytest.approx(exact_p(a, b))


def test_small_ties_known_value() -> None:
    # one repeated value per side, 3 vs 6: only the observed split is as extreme
    assert mann_whitney_p([10.0] * 3, [12.0] * 6) == pytest.approx(2 / 84)


def test_large_ties_use_tie_corrected_normal() -> None:
    a = [1.0, 1.0, 2.0, 2.0, 2.0, 3.0, 3.0, 4.0, 5.0, 5.0]
    b = [3.0, 3.0, 4.0, 4.0, 5.0, 5.0, 6.0, 6.0, 6.0, 7.0]
    # scipy.stats.mannwhitneyu(a, b, method="asymptotic", use_continuity=True).pvalue
    assert mann_whitney_p(a, b) == pytest.approx(0.008268026437262288, rel=1e-9)


def test_identical_samples() -> None:
    assert mann_whitney_p([2.0, 2.0, 2.0], [2.0, 2.0, 2.0, 2.0]) == 1.0
    assert mann_whitney_p([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == pytest.approx(1.0)


def test_bad_samples() -> None:
    with pytest.raises(ValueError):
        mann_whitney_p([], [1.0])
    with pytest.raises(ValueError):
        mann_whitney_p([1.0, math.nan], [1.0])


def test_min_attainable_p() -> None:
    assert min_mann_whitney_p(3, 3) == pytest.approx(0.1)
    assert min_mann_whitney_p(4, 4) == pytest.approx(2 / 70)
    assert min_mann_whitney_p(5, 5) == pytest.approx(2 / 252)
    assert min_mann_whitney_p(3, 6) == pytest.approx(2 / 84)


# --------------------------------------------------------------------- verdicts


def ms(name: str, samples: Sequence[float], unit: str = "s", direction: str = "lower", **kw):
    return MetricSamples(name, unit, direction, tuple(samples), **kw)  # type: ignore[arg-type]


BASE = [1.00, 1.01, 1.02, 1.03, 1.04, 1.05]  # seconds; 6 vs 6: smallest p = 2/924


def scaled(xs: Sequence[float], f: float) -> list[float]:
    return [x * f for x in xs]


def one(base: MetricSamples, cur: MetricSamples, **kw):
    c = compare({base.name: base}, {cur.name: cur}, **kw)
    assert len(c.rows) == 1
    return c.rows[0]


def test_regression() -> None:
    r = one(ms("m", BASE), ms("m", scaled(BASE, 1.2)))
    assert r.verdict == "regression"
    assert r.confidence == "normal"
    assert r.p_value == pytest.approx(2 / 924)
    assert r.change == pytest.approx(0.2)
    assert r.baseline is not None and r.baseline.median == pytest.approx(1.025)
    assert "significant" in r.reason


def test_improvement() -> None:
    r = one(ms("m", BASE), ms("m", scaled(BASE, 0.8)))
    assert r.verdict == "improvement"
    assert r.change == pytest.approx(-0.2)


def test_higher_is_better_direction() -> None:
    base = [100.0, 101.0, 102.0, 103.0, 104.0, 105.0]
    down = one(
        ms("t", base, "tokens/s", "higher"), ms("t", scaled(base, 0.8), "tokens/s", "higher")
    )
    up = one(ms("t", base, "tokens/s", "higher"), ms("t", scaled(base, 1.2), "tokens/s", "higher"))
    assert (down.verdict, up.verdict) == ("regression", "improvement")


def test_unchanged_within_threshold() -> None:
    r = one(ms("m", BASE), ms("m", scaled(BASE, 1.05)))
    assert r.verdict == "unchanged"
    assert "threshold" in r.reason
    # significant but small: the threshold alone keeps it unchanged
    assert r.p_value is not None and r.p_value < 0.05


def test_noisy_when_not_significant() -> None:
    base = [1.0, 1.1, 1.2, 1.3, 1.4, 2.0]
    cur = [1.0, 1.3, 1.4, 1.5, 1.6, 2.1]  # median +16%, heavy overlap
    r = one(ms("m", base), ms("m", cur))
    assert r.verdict == "noisy"
    assert r.p_value is not None and r.p_value >= 0.01
    assert r.confidence == "normal"


def test_floor_suppresses_tiny_changes() -> None:
    base = [0.001, 0.00101, 0.00102, 0.00103, 0.00104, 0.00105]  # ~1 ms
    cur = scaled(base, 1.5)  # +50%, significant, but only 0.5 ms
    r = one(ms("m", base), ms("m", cur))
    assert r.verdict == "unchanged"
    assert "floor" in r.reason
    assert r.floor == DEFAULT_FLOORS["s"]
    assert one(ms("m", base), ms("m", cur), floor={"s": 0.0001}).verdict == "regression"


def test_bytes_floor() -> None:
    base = [100 * MB + i for i in range(6)]
    assert one(ms("b", base, "bytes"), ms("b", scaled(base, 1.05), "bytes"), threshold=0.01)
    r = one(ms("b", base, "bytes"), ms("b", [x + 7 * MB for x in base], "bytes"), threshold=0.01)
    assert r.verdict == "unchanged"  # +7% but 7 MB < 8 MB floor
    assert r.reason == "median +7.0% but the change 7.00 MB is under the floor 8 MB"
    r = one(ms("b", base, "bytes"), ms("b", [x + 9 * MB for x in base], "bytes"), threshold=0.01)
    assert r.verdict == "regression"


def test_per_metric_thresholds() -> None:
    cur = scaled(BASE, 1.15)
    assert one(ms("a/load.x_s", BASE), ms("a/load.x_s", cur)).verdict == "regression"
    r = one(ms("a/load.x_s", BASE), ms("a/load.x_s", cur), thresholds={"*/load.*": 0.2})
    assert (r.verdict, r.threshold) == ("unchanged", 0.2)
    carried = ms("a/load.x_s", cur, threshold=0.2)
    assert one(ms("a/load.x_s", BASE), carried).verdict == "unchanged"
    # the user's explicit pattern wins over the threshold carried by the metric
    r = one(ms("a/load.x_s", BASE), carried, thresholds={"a/*": 0.1})
    assert r.verdict == "regression"
    # the last matching pattern wins
    assert threshold_for("a/b", 0.1, {"*": 0.3, "a/*": 0.05}) == 0.05
    assert threshold_for("a/b", 0.1, {"a/*": 0.05, "*": 0.3}) == 0.3
    assert threshold_for("z", 0.1, {"a/*": 0.05}) == 0.1


def test_new_and_missing_are_kept() -> None:
    c = compare(
        {"both": ms("both", BASE), "gone": ms("gone", BASE)},
        {"both": ms("both", BASE), "added": ms("added", [1.0])},
    )
    verdicts = {r.metric: r.verdict for r in c.rows}
    assert verdicts == {"both": "unchanged", "gone": "missing", "added": "new"}
    gone = next(r for r in c.rows if r.metric == "gone")
    assert gone.current is None and gone.baseline is not None and gone.change is None
    added = next(r for r in c.rows if r.metric == "added")
    assert added.baseline is None and added.current is not None


def test_low_confidence_few_samples() -> None:
    r = one(ms("m", [1.0]), ms("m", [1.5, 1.6]))
    assert (r.verdict, r.confidence, r.p_value) == ("regression", "low", None)
    assert "fewer than 3" in r.reason
    r = one(ms("m", [1.0, 1.0]), ms("m", [1.02, 1.03]))
    assert (r.verdict, r.confidence) == ("unchanged", "low")


def test_low_confidence_when_alpha_unreachable() -> None:
    # 3 vs 3: the smallest attainable p is 0.1, so alpha 0.01 can never be met
    r = one(ms("m", [1.0, 1.01, 1.02]), ms("m", [1.5, 1.51, 1.52]))
    assert (r.verdict, r.confidence) == ("regression", "low")
    assert r.p_value == pytest.approx(0.1)
    assert "cannot go below 0.1" in r.reason
    c = compare({"m": ms("m", [1.0, 1.01, 1.02])}, {"m": ms("m", [1.5, 1.51, 1.52])})
    assert summary_line(c) == "1 regression (1 low confidence)"
    # same data with a reachable alpha: a normal, significant verdict
    r = one(ms("m", [1.0, 1.01, 1.02]), ms("m", [1.5, 1.51, 1.52]), alpha=0.2)
    assert (r.verdict, r.confidence) == ("regression", "normal")


def test_zero_baseline_median() -> None:
    r = one(ms("b", [0.0] * 6, "bytes"), ms("b", [64.0 * MIB] * 6, "bytes"))
    assert r.change == math.inf
    assert r.verdict == "regression"


def test_bad_inputs() -> None:
    with pytest.raises(UserError, match="no metric in common"):
        compare({"a": ms("a", BASE)}, {"b": ms("b", BASE)})
    with pytest.raises(UserError, match="bytes"):
        compare({"a": ms("a", BASE)}, {"a": ms("a", BASE, "bytes")})
    with pytest.raises(UserError, match="alpha"):
        compare({"a": ms("a", BASE)}, {"a": ms("a", BASE)}, alpha=0)


def test_machine_differences() -> None:
    a = {"cpu_model": "X", "torch": "2.11", "gpu_name": None}
    b = {"cpu_model": "X", "torch": "2.13", "python": "3.11"}
    assert machine_differences(a, b) == {"torch": ("2.11", "2.13")}
    c = compare({"m": ms("m", BASE)}, {"m": ms("m", BASE)}, machine_baseline=a, machine_current=b)
    assert c.machine_differences == {"torch": ("2.11", "2.13")}
    assert any("gpu_name" in n and "python" in n for n in c.notes)


def test_regressions_property_and_counts() -> None:
    c = compare(
        {"r": ms("r", BASE), "i": ms("i", BASE), "u": ms("u", BASE), "g": ms("g", BASE)},
        {"r": ms("r", scaled(BASE, 1.3)), "i": ms("i", scaled(BASE, 0.7)), "u": ms("u", BASE)},
    )
    assert [r.metric for r in c.regressions] == ["r"]
    assert c.counts() == {"regression": 1, "missing": 1, "improvement": 1, "unchanged": 1}


# ------------------------------------------------------------------------ render


def test_markdown() -> None:
    c = compare(
        {
            "z/load.weight_read_s": ms("z/load.weight_read_s", BASE),
            "a/load.peak_rss_bytes": ms("a/load.peak_rss_bytes", [300 * MB] * 3, "bytes"),
            "a|pipe": ms("a|pipe", [0.0123] * 6),
        },
        {
            "z/load.weight_read_s": ms("z/load.weight_read_s", scaled(BASE, 1.2)),
            "a/load.peak_rss_bytes": ms("a/load.peak_rss_bytes", [300 * MB] * 3, "bytes"),
            "a|pipe": ms("a|pipe", [0.0123] * 6),
        },
        machine_baseline={"torch": "2.11"},
        machine_current={"torch": "2.13"},
        notes=("baseline: something noted",),
    )
    text = render_comparison_markdown(c)
    lines = text.splitlines()
    assert lines[0] == "1 regression, 2 unchanged" == summary_line(c)
    table = [ln for ln in lines if ln.startswith("|")]
    assert [c.strip() for c in table[0].split("|")[1:-1]] == [
        "metric",
        "baseline",
        "current",
        "change",
        "p",
        "verdict",
    ]
    align = [c.strip() for c in table[1].split("|")[1:-1]]
    assert align[0].startswith(":") and not align[0].endswith(":")
    assert all(a.endswith(":") and not a.startswith(":") for a in align[1:5])
    assert align[5].startswith(":")
    # regression first
    assert "z/load.weight_read_s" in table[2] and "**regression**" in table[2]
    cells = [x.strip() for x in table[2].split("|")[1:-1]]
    assert cells[1] == "1.02 ± 0.02 s (n=6)"
    assert cells[2] == "1.23 ± 0.02 s (n=6)"
    assert cells[3] == "+20.0%"
    assert cells[4] == "0.0022"
    body = "\n".join(table)
    assert "300 ± 0 MB (n=3)" in body
    assert "12.3 ± 0.0 ms (n=6)" in body
    assert "a\\|pipe" in body  # a pipe in a name must not split the cell
    assert all(
        len(row.split("|")) == len(table[0].split("|")) for row in table if "pipe" not in row
    )
    assert "torch: '2.11' → '2.13'" in text
    assert "Low confidence for 1 metric(s)" in text and "cannot go below 0.1" in text
    assert "baseline: something noted" in text


# ------------------------------------------------------------------ CLI parsing


def test_parse_fraction() -> None:
    assert parse_fraction("10%") == pytest.approx(0.1)
    assert parse_fraction("0.1") == pytest.approx(0.1)
    assert parse_fraction("150%") == pytest.approx(1.5)
    assert parse_fraction("0") == 0.0
    for bad in ("10", "1", "-5%", "abc", "nan"):
        with pytest.raises(UserError):
            parse_fraction(bad)


def test_parse_floors() -> None:
    floors = parse_floors(["s=0.005,bytes=8MiB", "tokens/s=1", "s=2ms"])
    assert floors == {"s": pytest.approx(0.002), "bytes": 8 * MIB, "tokens/s": 1.0}
    assert parse_floors(["bytes=1GB"]) == {"bytes": 1e9}
    assert parse_floors(["s=500us"]) == {"s": pytest.approx(0.0005)}
    for bad in (["s"], ["bytes=8XB"], ["s=fast"], ["=1"]):
        with pytest.raises(UserError):
            parse_floors(bad)


def test_parse_metric_thresholds() -> None:
    got = parse_metric_thresholds(["*/load.*=20%", "a=b/*=0.05", "*/load.*=30%"])
    assert got == {"a=b/*": pytest.approx(0.05), "*/load.*": pytest.approx(0.3)}
    assert list(got) == ["a=b/*", "*/load.*"]  # re-given pattern moves last: it wins
    with pytest.raises(UserError):
        parse_metric_thresholds(["no-equals"])
