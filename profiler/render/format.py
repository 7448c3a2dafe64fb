"""How llmprof writes a number: the one formatter every table, sentence and report uses.

Digits: about three significant digits (:func:`decimals_for`), thousands separated
(``1,234``); a spread takes the decimals of the median it goes with, so
``12.3 ± 0.4`` reads as one figure.

Bytes are decimal (SI) units, labelled as such: kB = 10³, MB = 10⁶, GB = 10⁹,
TB = 10¹² bytes. Every rate llmprof measures is GB/s of 10⁹ bytes (stage rates,
ceilings, memory-bandwidth use), so a byte count written in the same units divided
by a time gives the GB/s figure printed beside it; disk tools and the hub count
sizes the same way.

Two kinds of output:

- table cells are bare numbers in the unit their column header names
  (:func:`quantity`, :func:`med_spread`, :func:`percent`, ...); :func:`time_unit`
  and :func:`bytes_unit` pick that unit from the largest value in the column;
- prose carries its own unit (:func:`human_seconds`, :func:`human_bytes`,
  :func:`human_quantity`, :func:`human_summary`, :func:`percent_text`).

"Not measured" is :data:`MISSING`, never 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from profiler.analysis.metrics import UNIT_BYTES, UNIT_SECONDS, UNIT_TOKENS_PER_S
from profiler.analysis.stats import Summary

MISSING = "–"  # en dash: "not measured" (distinct from a measured 0)
PLUS_MINUS = "±"
MINUS = "−"  # a real minus sign, as wide as the plus it lines up with


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
NANOSECONDS = Unit("ns", 1e-9)
BYTES = Unit("B", 1.0)
KB = Unit("kB", 1e3)
MB = Unit("MB", 1e6)
GB = Unit("GB", 1e9)
TB = Unit("TB", 1e12)

_PROSE_TIME: tuple[Unit, ...] = (SECONDS, MILLISECONDS, MICROSECONDS, NANOSECONDS)
_PROSE_BYTES: tuple[Unit, ...] = (TB, GB, MB, KB, BYTES)


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


def _finite(values: Iterable[float | None]) -> list[float]:
    return [abs(v) for v in values if v is not None and math.isfinite(v)]


def time_unit(seconds: Iterable[float | None]) -> Unit:
    """Column unit: ms when the largest value is under 10 s (load stages, tokens), s above."""
    top = max(_finite(seconds), default=0.0)
    if top >= 10.0:
        return SECONDS
    if top == 0.0 or top >= 1e-3:
        return MILLISECONDS
    return MICROSECONDS


def bytes_unit(values: Iterable[float | None]) -> Unit:
    """Column unit: GB when the largest value reaches 10 GB, MB otherwise (kB for tiny data)."""
    top = max(_finite(values), default=0.0)
    if top >= 10 * GB.scale:
        return GB
    if top == 0.0 or top >= MB.scale / 10:
        return MB
    return KB


def quantity(value: float | None, unit: Unit) -> str:
    """One value converted to ``unit``, without the unit name (it is in the header)."""
    return MISSING if value is None else num(unit(value))


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


def percent(fraction: float | None, decimals: int = 1) -> str:
    """A fraction of 1 as a bare percentage (the header or the text says "%")."""
    if fraction is None or not math.isfinite(fraction):
        return MISSING
    return f"{fraction * 100:.{decimals}f}"


def percent_text(fraction: float) -> str:
    """A share for prose: ``31%``, or ``0.5%`` below one percent."""
    return f"{fraction:.0%}" if fraction >= 0.01 else f"{fraction:.1%}"


def signed_percent(fraction: float | None) -> str:
    """A relative change with its sign: ``+12.3%``, ``−4.0%``, ``+∞``."""
    if fraction is None or math.isnan(fraction):
        return MISSING
    sign = "+" if fraction >= 0 else MINUS
    if math.isinf(fraction):
        return f"{sign}∞"
    return f"{sign}{percent(abs(fraction))}%"


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
    return f"+{text}" if v >= 0 else f"{MINUS}{text}"


def count(n: int | None) -> str:
    """A count of things such as parameters: ``135 M``, ``7.62 B``, ``512``."""
    if n is None:
        return MISSING
    for scale, label in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{num(n / scale)} {label}"
    return str(n)


def prose_unit(value: float, unit: str) -> Unit:
    """The unit a single value of ``unit`` ("s", "bytes", or any other) is written in.

    Seconds: s from 1 s up, then ms, µs, ns. Bytes: the largest decimal unit not
    above the value. Other units stay as they are (``tokens/s`` as ``tok/s``).
    """
    v = abs(value)
    if unit == UNIT_SECONDS:
        scales = _PROSE_TIME
    elif unit == UNIT_BYTES:
        scales = _PROSE_BYTES
    else:
        return Unit("tok/s" if unit == UNIT_TOKENS_PER_S else unit, 1.0)
    if v == 0:
        return scales[0]
    return next((u for u in scales if v >= u.scale), scales[-1])


def _trimmed(text: str) -> str:
    return text.rstrip("0").rstrip(".") if "." in text else text


def human_quantity(value: float | None, unit: str, *, trim: bool = False) -> str:
    """``value`` of ``unit`` with a human unit: ``0.0123, "s"`` gives ``12.3 ms``.

    ``trim`` drops trailing zeros (``5 ms`` not ``5.00 ms``), for settings rather
    than measurements.
    """
    if value is None:
        return MISSING
    u = prose_unit(value, unit)
    text = num(u(value))
    return f"{_trimmed(text) if trim else text} {u.name}"


def human_seconds(seconds: float | None) -> str:
    """A duration with its own unit, for prose (``1.23 s``, ``45.6 ms``)."""
    return human_quantity(seconds, UNIT_SECONDS)


def human_bytes(n: float | None) -> str:
    """A byte count with its own decimal unit, for prose (``1.50 GB``, ``512 B``)."""
    return human_quantity(n, UNIT_BYTES)


def human_summary(
    summary: Summary | None, unit: str = UNIT_SECONDS, *, always_n: bool = False
) -> str:
    """A summary for prose, in the unit of its median: ``1.23 ± 0.04 s (n=3)``.

    One sample has no spread and, unless ``always_n``, no ``(n=1)`` either.
    """
    if summary is None:
        return MISSING
    u = prose_unit(summary.median if summary.median else summary.spread, unit)
    text = f"{med_spread(summary, u)} {u.name}"
    return f"{text} (n={summary.n})" if summary.n > 1 or always_n else text


def percent_setting(fraction: float) -> str:
    """A threshold the user set, as they would type it: ``10%``, ``2.5%``."""
    return f"{fraction * 100:g}%"


def p_value(p: float | None) -> str:
    """A test's p-value: three decimals, or two significant digits below 0.01."""
    if p is None:
        return MISSING
    return f"{p:.2g}" if p < 0.01 else f"{p:.3f}"
