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
