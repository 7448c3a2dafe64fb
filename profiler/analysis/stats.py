"""Statistics on raw samples: pure functions, samples in, dataclasses out."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation between closest ranks.

    Same definition as numpy's default ("linear"), so figures match what users get
    from numpy on the raw samples in the JSON.
    """
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {q}")
    xs = sorted(samples)
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    frac = pos - lo
    return xs[lo] + (xs[hi] - xs[lo]) * frac


def median(samples: Sequence[float]) -> float:
    return percentile(samples, 50.0)


def mad(samples: Sequence[float]) -> float:
    """Median absolute deviation from the median (unscaled)."""
    m = median(samples)
    return median([abs(x - m) for x in samples])


@dataclass(frozen=True)
class Summary:
    """Summary of one metric's samples. ``spread`` is the MAD: robust to one outlier."""

    n: int
    median: float
    spread: float
    mean: float
    stdev: float
    min: float
    max: float
    p90: float
    p99: float


def summarize(samples: Sequence[float]) -> Summary:
    if not samples:
        raise ValueError("summary of no samples")
    n = len(samples)
    mean = sum(samples) / n
    var = sum((x - mean) ** 2 for x in samples) / (n - 1) if n > 1 else 0.0
    return Summary(
        n=n,
        median=median(samples),
        spread=mad(samples),
        mean=mean,
        stdev=math.sqrt(var),
        min=min(samples),
        max=max(samples),
        p90=percentile(samples, 90),
        p99=percentile(samples, 99),
    )


# Largest number of ways to split tied samples that mann_whitney_p enumerates exactly;
# 5000 splits take about 0.1 s. Beyond it (both samples > ~7 values) the normal
# approximation is close enough and enumeration would cost seconds per metric.
EXACT_TIES_MAX_SPLITS = 5000


def mann_whitney_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of the Mann–Whitney U test: do ``a`` and ``b`` differ?

    Rank-based, so it assumes no distribution (timings are skewed, not normal) and
    one outlier cannot dominate. Computed by ``scipy.stats.mannwhitneyu``:

    - no ties: ``method="auto"``, i.e. the exact distribution of U when one sample
      has at most 8 values, else the normal approximation;
    - ties, and at most ``EXACT_TIES_MAX_SPLITS`` ways to split the pooled values:
      an exact permutation test (``PermutationMethod`` enumerating every split).
      Why not "auto" here: with ties, "auto" switches to the tie-corrected normal
      approximation, which for tiny samples is far too optimistic (3 vs 6 samples,
      each side one repeated value: 0.004 where the exact answer is 2/84 = 0.024),
      and byte counts tie often; a CI gate would then flag noise. Enumerating
      every split is exact and deterministic (no random resampling);
    - ties and larger samples: the normal approximation with tie and continuity
      correction ("auto"), as R's ``wilcox.test`` does.

    Returns 1.0 when every value of both samples is the same (scipy gives nan:
    zero variance), since such samples show no difference at all.
    """
    if not a or not b:
        raise ValueError("Mann-Whitney test needs at least one sample on each side")
    xs = [float(x) for x in a]
    ys = [float(y) for y in b]
    if not all(math.isfinite(v) for v in (*xs, *ys)):
        raise ValueError("Mann-Whitney test of non-finite samples")
    if len(set(xs) | set(ys)) == 1:
        return 1.0
    from scipy.stats import PermutationMethod, mannwhitneyu  # slow import: only when used

    ties = len(set(xs + ys)) < len(xs) + len(ys)
    method: object = "auto"
    if ties and math.comb(len(xs) + len(ys), len(xs)) <= EXACT_TIES_MAX_SPLITS:
        method = PermutationMethod(n_resamples=math.inf)
    result = mannwhitneyu(xs, ys, alternative="two-sided", method=method, use_continuity=True)
    p = float(result.pvalue)
    return 1.0 if math.isnan(p) else min(1.0, max(0.0, p))


@functools.lru_cache(maxsize=256)
def min_mann_whitney_p(n: int, m: int) -> float:
    """The smallest p :func:`mann_whitney_p` can return for samples of n and m values.

    Reached when the samples do not overlap at all. Both extremes are tried: all
    values distinct and each side one repeated value (for large samples the
    tie-corrected approximation can give a smaller p than distinct values). If
    this is not below alpha, no data of these sizes can ever be called significant:
    with 3 vs 3 the smallest p is 2 / C(6, 3) = 0.1, far above alpha = 0.01.
    """
    if n < 1 or m < 1:
        raise ValueError("sample sizes must be at least 1")
    distinct = mann_whitney_p([float(i) for i in range(n)], [float(n + i) for i in range(m)])
    tied = mann_whitney_p([0.0] * n, [1.0] * m)
    return min(distinct, tied)
