"""``llmprof compare BASELINE CURRENT``: the regression gate used by CI.

Exit status: 0 no regression, 1 at least one regression, 2 bad input. The
markdown report goes to stdout (and to ``-o FILE``, written atomically) in every
case where the inputs could be read, so CI can post it whatever the verdict.
"""

from __future__ import annotations

import argparse
import re
import sys

from profiler.errors import UserError

HELP = "compare two results (llmprof or pytest-benchmark JSON) and flag regressions"

_SIZE = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}
_TIME = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_NUMBER = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([^\s0-9.]*)\s*$")


def parse_fraction(text: str, what: str = "threshold") -> float:
    """``"10%"`` or ``"0.1"`` as 0.1.

    A bare number of 1 or more is refused: ``--threshold 10`` almost surely means
    10%, not 1000%; write ``10%`` (or ``1000%`` if that is really meant).
    """
    raw = text.strip()
    pct = raw.endswith("%")
    try:
        value = float(raw[:-1] if pct else raw)
    except ValueError:
        raise UserError(f"{what} {text!r} is not a number: write e.g. 10% or 0.1") from None
    if value != value or value < 0 or value == float("inf"):
        raise UserError(f"{what} {text!r} must be a non-negative number: write e.g. 10%")
    if pct:
        return value / 100.0
    if value >= 1:
        raise UserError(
            f"{what} {text!r} would be {value * 100:g}%: write {value:g}% or a fraction such as 0.1"
        )
    return value


def parse_quantity(text: str, unit: str) -> float:
    """A floor value: plain number in the unit, or with a suffix (5ms, 8MB)."""
    m = _NUMBER.match(text)
    if not m:
        raise UserError(f"floor {unit}={text!r} is not a number: write e.g. s=0.005 or bytes=8MB")
    value, suffix = float(m.group(1)), m.group(2).lower()
    if not suffix:
        return value
    table = _SIZE if unit == "bytes" else _TIME if unit == "s" else {}
    if suffix not in table:
        known = ", ".join(table) or "none for this unit"
        raise UserError(f"floor {unit}={text!r}: unknown suffix {suffix!r} (known: {known})")
    return value * table[suffix]


def parse_floors(values: list[str] | None) -> dict[str, float]:
    """``["s=0.005,bytes=8MB", "tokens/s=1"]`` as ``{"s": 0.005, ...}``."""
    out: dict[str, float] = {}
    for group in values or []:
        for item in group.split(","):
            if not item.strip():
                continue
            unit, sep, value = item.partition("=")
            unit = unit.strip()
            if not sep or not unit:
                raise UserError(f"floor {item!r} is not UNIT=VALUE: write e.g. s=0.005,bytes=8MB")
            out[unit] = parse_quantity(value, unit)
    return out


def parse_metric_thresholds(values: list[str] | None) -> dict[str, float]:
    """``["*/load.*=20%", ...]`` as ``{glob: fraction}``, in the order given."""
    out: dict[str, float] = {}
    for item in values or []:
        pattern, sep, value = item.rpartition("=")
        if not sep or not pattern:
            raise UserError(
                f"--metric-threshold {item!r} is not NAME_GLOB=PCT: write e.g. '*/decode.*=20%'"
            )
        out.pop(pattern, None)  # re-inserted last: a later flag wins (see threshold_for)
        out[pattern] = parse_fraction(value, f"--metric-threshold {pattern}")
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "A regression: the median moved past the threshold in the bad direction, the "
        "Mann-Whitney U test says the samples differ (p < alpha), and the change is "
        "above the noise floor. Exit status: 0 no regression, 1 regression, 2 bad input."
    )
    parser.add_argument("baseline", metavar="BASELINE", help="results file or folder (before)")
    parser.add_argument("current", metavar="CURRENT", help="results file or folder (after)")
    parser.add_argument(
        "--threshold",
        default="10%",
        help="relative change of the median that counts, e.g. 10%% or 0.1 (default 10%%)",
    )
    parser.add_argument(
        "--alpha",
        default="0.01",
        help="significance level of the Mann-Whitney U test (default 0.01)",
    )
    parser.add_argument(
        "--floor",
        action="append",
        metavar="UNIT=VALUE,...",
        help="absolute noise floor per unit, e.g. s=0.005,bytes=8MB,tokens/s=0.5 "
        "(defaults: s=5ms, bytes=8MB, tokens/s=0.5)",
    )
    parser.add_argument(
        "--metric-threshold",
        action="append",
        metavar="NAME_GLOB=PCT",
        help="threshold for metrics matching a glob, e.g. '*/load.peak_rss_bytes=5%%'; "
        "repeatable, the last match wins",
    )
    parser.add_argument(
        "--strict-machine",
        action="store_true",
        help="refuse (exit 2) when the two results come from different machines",
    )
    parser.add_argument("-o", "--output", metavar="FILE", help="also write the markdown here")


def _alpha(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"alpha {text!r} is not a number: write e.g. 0.01") from None
    if not 0 < value < 1:
        raise UserError(f"alpha {text!r} is not between 0 and 1: write e.g. 0.01")
    return value


def run(args: argparse.Namespace) -> int:
    from profiler.analysis.benchmark_files import load_metrics
    from profiler.analysis.compare import compare, machine_differences
    from profiler.records.io import write_atomic
    from profiler.render.comparison import render_comparison_markdown

    threshold = parse_fraction(args.threshold)
    alpha = _alpha(args.alpha)
    floors = parse_floors(args.floor)
    thresholds = parse_metric_thresholds(args.metric_threshold)
    if args.output:
        from profiler.files import check_output
        from profiler.records.io import expand_paths

        inputs = expand_paths([args.baseline, args.current])
        # The markdown may go to a device (a terminal, /dev/null): written into it.
        check_output(args.output, option="-o", inputs=inputs, devices=True, example="compare.md")

    base = load_metrics(args.baseline)
    cur = load_metrics(args.current)
    for side, loaded, path in (("baseline", base, args.baseline), ("current", cur, args.current)):
        if not loaded.metrics:
            raise UserError(
                f"{path}: no {side} metrics, all {loaded.failed_runs} runs failed: "
                "fix the failing runs first"
            )
        if args.strict_machine and loaded.machine_conflicts:
            raise UserError(
                f"{path}: its results come from different machines "
                f"({', '.join(loaded.machine_conflicts)}): split them, or drop --strict-machine"
            )
    # Checked before comparing: refusing must not cost the statistics first.
    differences = machine_differences(base.machine, cur.machine)
    if args.strict_machine and differences:
        diffs = ", ".join(f"{k} ({a!r} vs {b!r})" for k, (a, b) in sorted(differences.items()))
        raise UserError(
            f"machines differ: {diffs}: compare results from one machine, or drop --strict-machine"
        )
    notes = [f"baseline: {n}" for n in base.notes] + [f"current: {n}" for n in cur.notes]
    result = compare(
        base.metrics,
        cur.metrics,
        threshold=threshold,
        alpha=alpha,
        floor=floors,
        thresholds=thresholds,
        machine_baseline=base.machine,
        machine_current=cur.machine,
        notes=notes,
    )
    text = render_comparison_markdown(result)
    if args.output:
        write_atomic(args.output, text.encode())
    sys.stdout.write(text)
    sys.stdout.flush()
    return 1 if result.regressions else 0
