"""TODO: docstring."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from profiler.analysis.metrics import UNIT_BYTES, UNIT_SECONDS, UNIT_TOKENS_PER_S
from profiler.analysis.stats import Summary

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


MISSING = "–"  # en dash: "not measured" (distinct from a measured 0)


PLUS_MINUS = "±"


@dataclass(frozen=True)
class Unit:
    """A display unit: its name for headers and how many base units make one of it."""

    name: str
    scale: float  # base units (seconds or bytes) per display unit

    def __call__(self, value: float) -> float:
        return value / self.scale


SECONDS = Unit("s", 1.0)


MILLISECONDS = Unit("ms", 1e-3)


MICROSECONDS = Unit("µs", 1e-6)


MIB = Unit("MiB", 1024.0**2)


GIB = Unit("GiB", 1024.0**3)


KIB = Unit("KiB", 1024.0)


def _finite(values: Iterable[float | None]) -> list[float]:
    return [abs(v) for v in values if v is not None and math.isfinite(v)]


def time_unit(seconds: Iterable[float | None]) -> Unit:
    """ms when the largest value is under 10 s (load stages, tokens), s above."""
    vals = _finite(seconds)
    top = max(vals, default=0.0)
    if top >= 10.0:
        return SECONDS
    if top == 0.0 or top >= 1e-3:
        return MILLISECONDS
    return MICROSECONDS


def bytes_unit(values: Iterable[float | None]) -> Unit:
    """GiB when the largest value reaches 10 GiB, MiB otherwise (KiB for tiny data)."""
    vals = _finite(values)
    top = max(vals, default=0.0)
    if top >= 10 * GIB.scale:
        return GIB
    if top == 0.0 or top >= MIB.scale / 10:
        return MIB
    return KIB


def decimals_for(value: float) -> int:
    """Decimals giving about three significant digits (none from 100 up)."""
    a = abs(value)
    if a >= 100:
        return 0
    if a >= 10 or a == 0:
        return 1
    if a >= 1:
        return 2
    if a >= 0.1:
        return 3
    return 4


def num(value: float | None, decimals: int | None = None) -> str:
    """A bare number with about three significant digits, or the missing mark."""
    if value is None or not math.isfinite(value):
        return MISSING
    d = decimals_for(value) if decimals is None else decimals
    return f"{value:,.{d}f}"


def med_spread(summary: Summary | None, unit: Unit | None = None) -> str:
    """``median ± spread`` in ``unit`` (spread only when there are several samples)."""
    if summary is None:
        return MISSING
    conv = unit or Unit("", 1.0)
    m = conv(summary.median)
    d = decimals_for(m)
    if summary.n <= 1:
        return num(m, d)
    return f"{num(m, d)} {PLUS_MINUS} {num(conv(summary.spread), d)}"


def quantity(value: float | None, unit: Unit) -> str:
    """One value converted to ``unit``, without the unit name (it is in the header)."""
    return MISSING if value is None else num(unit(value))


def percent(fraction: float | None, decimals: int = 1) -> str:
    """A fraction of 1 as a percentage number (header says "%")."""
    if fraction is None or not math.isfinite(fraction):
        return MISSING
    return f"{fraction * 100:.{decimals}f}"


def human_seconds(seconds: float | None) -> str:
    """A duration with its own unit, for prose ("1.23 s", "45.6 ms")."""
    if seconds is None:
        return MISSING
    u = SECONDS if abs(seconds) >= 1.0 else time_unit([seconds])
    return f"{num(u(seconds))} {u.name}"


def human_summary_seconds(summary: Summary | None) -> str:
    """A duration summary for prose: ``1.23 ± 0.04 s (n=3)``."""
    if summary is None:
        return MISSING
    u = SECONDS if abs(summary.median) >= 1.0 else time_unit([summary.median])
    text = f"{med_spread(summary, u)} {u.name}"
    return f"{text} (n={summary.n})" if summary.n > 1 else text


def human_bytes(n: float | None) -> str:
    """A byte count with its own binary unit, for prose ("1.50 GiB")."""
    if n is None:
        return MISSING
    if abs(n) >= GIB.scale:
        return f"{num(GIB(n))} GiB"
    if abs(n) >= MIB.scale / 10:
        return f"{num(MIB(n))} MiB"
    return f"{num(KIB(n))} KiB"


def ratio(value: float | None) -> str:
    """A ratio such as cold/warm: ``3.2×``."""
    if value is None or not math.isfinite(value):
        return MISSING
    return f"{num(value, 1 if value < 100 else 0)}×"


def signed(value: float | None, unit: Unit) -> str:
    """A difference with an explicit sign, in ``unit``."""
    if value is None:
        return MISSING
    v = unit(value)
    text = num(abs(v))
    return f"+{text}" if v >= 0 else f"−{text}"
