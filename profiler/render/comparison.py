"""A comparison as markdown, for a pull-request comment or a CI log.

First a one-line summary ("2 regressions, 1 improvement, 30 unchanged"), then the
settings, then one table row per metric with what needs attention first, then
notes: machine differences, low-confidence verdicts, what loading noticed.
"""

from __future__ import annotations

from profiler.analysis.compare import VERDICT_ORDER, Comparison, Row
from profiler.render.format import (
    human_quantity,
    human_summary,
    p_value,
    percent_setting,
    signed_percent,
)

HEADERS = ("metric", "baseline", "current", "change", "p", "verdict")
# Text left, numbers right: GitHub renders `|---:|` as right-aligned.
COLALIGN = ("left", "right", "right", "right", "right", "left")


def _plural(n: int, verdict: str) -> str:
    if verdict in ("regression", "improvement") and n != 1:
        return f"{n} {verdict}s"
    return f"{n} {verdict}"


def summary_line(c: Comparison) -> str:
    """``"2 regressions, 1 improvement, 30 unchanged"``; regressions always named.

    Regressions and improvements decided without a significance test say how many
    of them, so a reader knows how much weight the headline carries.
    """
    counts = c.counts()
    counts.setdefault("regression", 0)
    parts = []
    for v in ("regression", *(v for v in counts if v != "regression")):
        text = _plural(counts[v], v)
        low = sum(1 for r in c.rows if r.verdict == v and r.confidence == "low")
        if low and v in ("regression", "improvement"):
            text += f" ({low} low confidence)"
        parts.append(text)
    return ", ".join(parts)


def _verdict_cell(r: Row) -> str:
    text = f"**{r.verdict}**" if r.verdict in ("regression", "missing") else r.verdict
    if r.confidence == "low" and r.verdict not in ("new", "missing"):
        text += " (low confidence)"
    return text


def _cell(text: str) -> str:
    # A "|" inside a cell would end it; markdown tables need it escaped.
    return text.replace("|", "\\|")


def sorted_rows(c: Comparison) -> list[Row]:
    """Rows with what needs attention first (:data:`VERDICT_ORDER`), then by name."""
    rank = {v: i for i, v in enumerate(VERDICT_ORDER)}
    return sorted(c.rows, key=lambda r: (rank.get(r.verdict, len(rank)), r.metric))


def _table(rows: list[Row]) -> str:
    from tabulate import tabulate

    body = [
        [
            _cell(f"`{r.metric}`"),
            human_summary(r.baseline, r.unit, always_n=True),
            human_summary(r.current, r.unit, always_n=True),
            signed_percent(r.change),
            p_value(r.p_value),
            _verdict_cell(r),
        ]
        for r in rows
    ]
    # "pipe" writes the alignment colons (`|---:|`); "github" leaves them out.
    return tabulate(
        body, headers=HEADERS, tablefmt="pipe", colalign=COLALIGN, disable_numparse=True
    )


def _settings(c: Comparison) -> str:
    floors = ", ".join(human_quantity(v, u, trim=True) for u, v in c.floors.items())
    return (
        f"Regression: median worse by more than {percent_setting(c.threshold)} (unless set "
        f"per metric), Mann–Whitney p < {c.alpha:g}, and change above the noise floor "
        f"({floors}). Values are median ± median absolute deviation."
    )


def _notes(c: Comparison) -> list[str]:
    notes: list[str] = []
    if c.machine_differences:
        diffs = "; ".join(
            f"{k}: {a!r} → {b!r}" for k, (a, b) in sorted(c.machine_differences.items())
        )
        notes.append(f"Machines differ (baseline → current): {diffs}.")
    low: dict[str, list[str]] = {}
    for r in c.rows:
        if r.confidence == "low":
            low.setdefault(r.confidence_note or "low confidence", []).append(r.metric)
    for why, names in low.items():
        shown = ", ".join(f"`{_cell(n)}`" for n in names[:3])
        more = f" and {len(names) - 3} more" if len(names) > 3 else ""
        notes.append(f"Low confidence for {len(names)} metric(s) ({shown}{more}): {why}.")
    notes.extend(c.notes)
    return notes


def render_comparison_markdown(c: Comparison) -> str:
    """The whole comparison as markdown; the first line is the summary."""
    parts = [summary_line(c), "", _settings(c), "", _table(sorted_rows(c))]
    notes = _notes(c)
    if notes:
        parts += ["", "Notes:", ""]
        parts += [f"- {n}" for n in notes]
    return "\n".join(parts) + "\n"
