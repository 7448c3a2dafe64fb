"""Sentences about a decode's hook overhead, shared by the decode loop's notes and the
findings of a report, so both judge it by the same rule
(:func:`profiler.analysis.decode_metrics.hook_overhead`)."""

from __future__ import annotations

from profiler.analysis.decode_metrics import HookOverhead


def hook_overhead_line(h: HookOverhead) -> str:
    """One sentence on what the per-token hook cost, judged by the rule of
    :func:`profiler.analysis.decode_metrics.hook_overhead`."""
    medians = (
        f"median {_secs(h.hooked_median_s)} hooked vs {_secs(h.plain_median_s)} plain over "
        f"{h.n_hooked} + {h.n_plain} interleaved calls"
    )
    if h.within_noise is None:
        return (
            f"hook overhead: {h.fraction:+.1%} wall ({medians}); one call of a kind, so no "
            "spread to tell the hook from noise: use more warm calls"
        )
    if h.within_noise:
        return (
            f"hook overhead: {h.fraction:+.1%} wall ({medians}), within noise: one kind's "
            "median lies inside the range of the other kind's calls"
        )
    lo, hi = h.plain_range_s
    slower = "slower" if h.fraction > 0 else "faster"
    why = (
        "beyond the plain calls' spread"
        if h.fraction > 0
        else "the hook only adds work, so the machine's load changed between calls"
    )
    return (
        f"hook overhead: the hooked calls were {slower} by {abs(h.fraction):.1%} ({medians}; "
        f"plain calls {_secs(lo)} to {_secs(hi)}): {why}"
    )


def _secs(seconds: float) -> str:
    return f"{seconds:.3g} s" if seconds >= 1 else f"{seconds * 1e3:.3g} ms"
