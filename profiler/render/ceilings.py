"""What ``llmprof ceilings`` shows: this machine's measured limits as one table."""

from __future__ import annotations

from profiler.records.ceilings import Ceilings
from profiler.render.format import num

HEADERS = ("name", "value", "unit", "trials", "method", "notes")


def ceilings_table(ceilings: Ceilings) -> str:
    """The ceilings as a table: name, value, unit, each trial, how it was measured, notes.

    A ceiling that could not be measured shows the missing mark as its value.
    """
    from tabulate import tabulate

    rows = [
        [
            c.name,
            num(c.value),
            c.unit,
            " ".join(num(t) for t in c.trials),
            c.method,
            "; ".join(c.notes),
        ]
        for c in ceilings.items.values()
    ]
    return tabulate(
        rows,
        headers=HEADERS,
        colalign=("left", "right", "left", "right", "left", "left"),
        disable_numparse=True,
        maxcolwidths=[None, None, None, 24, 60, 44],
    )


PATTERN_HEADERS = ("ceiling", "pattern", "GB/s", "trials", "", "notes")


def patterns_table(ceilings: Ceilings) -> str:
    """Every access pattern each ceiling tried, the winner marked ``best``: a ceiling
    is the best of them, and a reader can see what the runner-up ways reach."""
    from tabulate import tabulate

    rows = [
        [
            c.name,
            p.label + (" (re-probe)" if p.origin == "reprobe" else ""),
            num(p.value),
            " ".join(num(t) for t in p.trials),
            "best" if p.label == c.winner else "",
            "; ".join(p.notes),
        ]
        for c in ceilings.items.values()
        for p in c.patterns
    ]
    if not rows:
        return ""
    return tabulate(
        rows,
        headers=PATTERN_HEADERS,
        colalign=("left", "left", "right", "right", "left", "left"),
        disable_numparse=True,
        maxcolwidths=[None, None, None, 30, None, 50],
    )


def ceilings_report(ceilings: Ceilings) -> str:
    """The ceilings table, then the patterns each ceiling tried (when any)."""
    pats = patterns_table(ceilings)
    table = ceilings_table(ceilings)
    return f"{table}\n\npatterns tried (the ceiling is the best):\n{pats}" if pats else table
