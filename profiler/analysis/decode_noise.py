"""Is a decode measurement noisy? Bimodal steps, or a spread large against the median.

Pure functions over decode records. The verdicts, with their rules:

Spread
    The per-call step times (one sample per warm call, as
    :func:`~profiler.analysis.decode_metrics.decode_figures` takes them) have a MAD
    above :data:`SPREAD_LIMIT` of their median, or the token intervals have a p90
    above :data:`TAIL_LIMIT` times their median: the figure moves from call to call
    or from token to token more than a comparison between runs could resolve.
Bimodal
    The token intervals split into two groups at a gap: sorted, the largest ratio
    between neighbours, among splits that leave at least :data:`MIN_GROUP` of the
    intervals on each side, is at least :data:`GAP_RATIO`. Two kinds of step (for
    example steps that waited for a core and steps that did not), not one noisy kind.

Likely cause, where measured: slow intervals concentrated in some calls (whole
calls slowed: the machine was busy then), the load average above the cores the
decode used, or slow steps growing with the position (the KV cache).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from profiler.analysis.decode_metrics import call_step_s
from profiler.analysis.stats import mad, median, percentile
from profiler.records.decode import DecodeRecord

SPREAD_LIMIT = 0.10  # MAD of per-call step times over their median
TAIL_LIMIT = 2.0  # p90 of the intervals over their median
GAP_RATIO = 1.5  # neighbour ratio that splits the intervals into two groups
MIN_GROUP = 0.10  # each group holds at least this fraction of the intervals
MIN_INTERVALS = 10  # fewer intervals: no bimodality verdict


@dataclass(frozen=True)
class Bimodal:
    """Two groups of token intervals split at a gap."""

    low_median_s: float
    high_median_s: float
    high_fraction: float  # share of intervals in the slow group


@dataclass(frozen=True)
class DecodeNoise:
    """The noise verdict of one shape's warm calls; ``noisy`` when any rule fired."""

    call_spread: float | None  # MAD / median of per-call step times
    tail_ratio: float | None  # p90 / median of the intervals
    bimodal: Bimodal | None
    causes: tuple[str, ...]

    @property
    def noisy(self) -> bool:
        big_spread = self.call_spread is not None and self.call_spread > SPREAD_LIMIT
        long_tail = self.tail_ratio is not None and self.tail_ratio > TAIL_LIMIT
        return big_spread or long_tail or self.bimodal is not None


def find_bimodal(intervals: Sequence[float]) -> Bimodal | None:
    """The split of ``intervals`` at their widest gap, or None (module docstring)."""
    xs = sorted(x for x in intervals if x > 0)
    n = len(xs)
    if n < MIN_INTERVALS:
        return None
    lo = max(1, int(n * MIN_GROUP + 0.999))
    best_k, best = 0, 0.0
    for k in range(lo, n - lo + 1):
        ratio = xs[k] / xs[k - 1]
        if ratio > best:
            best_k, best = k, ratio
    if best < GAP_RATIO:
        return None
    return Bimodal(median(xs[:best_k]), median(xs[best_k:]), (n - best_k) / n)


def _causes(
    records: Sequence[DecodeRecord], slow_above: float, cores: int | None
) -> tuple[str, ...]:
    out: list[str] = []
    per_call = [
        sum(1 for x in c.intervals_s if x > slow_above) / max(1, len(c.intervals_s))
        for d in records
        for c in d.calls
    ]
    if len(per_call) >= 2 and max(per_call) - min(per_call) >= 0.5:
        out.append(
            f"slow steps concentrate in some calls ({min(per_call):.0%} to "
            f"{max(per_call):.0%} of a call's steps): whole calls were slowed, as when "
            "another process takes the cores"
        )
    loads = [d.load_average_1m for d in records if d.load_average_1m is not None]
    if loads and cores and median(loads) > cores:
        out.append(
            f"load average {median(loads):.1f} on {cores} cores during decode: other "
            "processes competed for the CPU"
        )
    return tuple(out)


def decode_noise(records: Sequence[DecodeRecord], cores: int | None = None) -> DecodeNoise | None:
    """The noise verdict of the warm calls of ``records`` (one shape); None without
    intervals. ``cores`` (the machine's) lets a load average name a cause."""
    calls = [c for d in records for c in d.calls]
    intervals = [x for c in calls for x in c.intervals_s]
    if not intervals:
        return None
    steps = [s for s in (call_step_s(c) for c in calls) if s]
    med = median(intervals)
    spread = mad(steps) / median(steps) if len(steps) >= 2 and median(steps) > 0 else None
    tail = percentile(intervals, 90) / med if med > 0 else None
    bi = find_bimodal(intervals)
    slow_above = (bi.low_median_s * GAP_RATIO) if bi else med * TAIL_LIMIT
    return DecodeNoise(spread, tail, bi, _causes(records, slow_above, cores))
