"""The one number formatter: digits, decimal byte units, prose and table cells."""

from __future__ import annotations

import math

from profiler.analysis.stats import summarize
from profiler.render.format import (
    GB,
    KB,
    MB,
    MICROSECONDS,
    MILLISECONDS,
    MISSING,
    SECONDS,
    bytes_unit,
    count,
    human_bytes,
    human_quantity,
    human_seconds,
    human_summary,
    med_spread,
    num,
    p_value,
    percent,
    percent_setting,
    percent_text,
    ratio,
    signed,
    signed_percent,
    time_unit,
)


def test_three_significant_digits_with_thousands_separators() -> None:
    assert num(1234.5) == "1,234"  # 0 decimals from 100 up (round half to even)
    assert num(12.345) == "12.3"
    assert num(1.2345) == "1.23"
    assert num(0.12345) == "0.123"
    assert num(0.012345) == "0.0123"
    assert num(0.0) == "0.0"
    assert num(None) == MISSING
    assert num(math.nan) == MISSING


def test_bytes_are_decimal_units() -> None:
    # 10^9 bytes are one GB: the unit GB/s rates are measured in.
    assert human_bytes(1e9) == "1.00 GB"
    assert human_bytes(1.5 * 1024**3) == "1.61 GB"
    assert human_bytes(2_837_952) == "2.84 MB"
    assert human_bytes(999) == "999 B"
    assert human_bytes(1000) == "1.00 kB"
    assert human_bytes(15.23e12) == "15.2 TB"
    assert human_bytes(None) == MISSING
    assert bytes_unit([2_837_952]) == MB
    assert bytes_unit([20e9]) == GB
    assert bytes_unit([9.99e9]) == MB
    assert bytes_unit([50_000]) == KB


def test_column_time_units() -> None:
    assert time_unit([0.5, 2.0]) == MILLISECONDS
    assert time_unit([12.0]) == SECONDS
    assert time_unit([2e-4]) == MICROSECONDS
    assert time_unit([]) == MILLISECONDS


def test_prose_quantities_carry_their_unit() -> None:
    assert human_seconds(0.0456) == "45.6 ms"
    assert human_seconds(2.5) == "2.50 s"
    assert human_seconds(4.2e-6) == "4.20 µs"
    assert human_quantity(0.0123, "s") == "12.3 ms"
    assert human_quantity(8e6, "bytes") == "8.00 MB"
    assert human_quantity(0.5, "tokens/s") == "0.500 tok/s"
    # settings rather than measurements: no trailing zeros
    assert human_quantity(0.005, "s", trim=True) == "5 ms"
    assert human_quantity(8e6, "bytes", trim=True) == "8 MB"
    assert human_quantity(0.5, "tokens/s", trim=True) == "0.5 tok/s"


def test_summaries() -> None:
    s3 = summarize([0.98, 1.00, 1.03])
    assert med_spread(s3, MILLISECONDS) == "1,000 ± 20"
    assert med_spread(summarize([0.0123, 0.0125, 0.0120])) == "0.0123 ± 0.0002"
    assert med_spread(summarize([2.0])) == "2.00"
    assert med_spread(None) == MISSING
    assert human_summary(s3) == "1.00 ± 0.02 s (n=3)"
    assert human_summary(summarize([0.21, 0.2, 0.22]), "s") == "210 ± 10 ms (n=3)"
    assert human_summary(summarize([2.0])) == "2.00 s"
    assert human_summary(summarize([2.0]), always_n=True) == "2.00 s (n=1)"
    assert human_summary(summarize([3e9, 3e9, 3.2e9]), "bytes") == "3.00 ± 0.00 GB (n=3)"


def test_percentages_ratios_and_signs() -> None:
    assert percent(0.1234) == "12.3"
    assert percent(None) == MISSING
    assert percent_text(0.31) == "31%"
    assert percent_text(0.005) == "0.5%"
    assert percent_setting(0.1) == "10%"
    assert percent_setting(0.025) == "2.5%"
    assert signed_percent(0.123) == "+12.3%"
    assert signed_percent(-0.04) == "−4.0%"
    assert signed_percent(math.inf) == "+∞"
    assert signed_percent(None) == MISSING
    assert ratio(8.636) == "8.6×"
    assert ratio(None) == MISSING
    assert signed(-0.25, MILLISECONDS) == "−250"
    assert signed(0.0123, MILLISECONDS) == "+12.3"


def test_counts_and_p_values() -> None:
    assert count(134_515_008) == "135 M"
    assert count(7_615_616_512) == "7.62 B"
    assert count(1_417_856) == "1.42 M"
    assert count(512) == "512"
    assert count(None) == MISSING
    assert p_value(0.0042) == "0.0042"
    assert p_value(0.032) == "0.032"
    assert p_value(None) == MISSING
