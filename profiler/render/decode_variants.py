"""The decode variants as one ranked table and the first call explained: console,
markdown report and JSON all take them from here (``llmprof decode --variants``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from profiler.analysis.decode_variants import (
    REFERENCE,
    Agreement,
    VariantRow,
    rank_decode_variants,
)
from profiler.analysis.first_call import FirstCallExplained, explain_first_call
from profiler.records.run import RunRecord
from profiler.render.format import MISSING, human_bytes, human_seconds, num, percent
from profiler.render.tables import Column, make_table, render_table

TITLE = "Ways of decoding, ranked by tokens/s (warm calls; one-off = first call − warm call)"


def _agreement_cell(r: VariantRow) -> str:
    if r.reason is not None:
        return f"not run: {r.reason}"
    return "(the reference)" if r.name == REFERENCE else agreement_text(r.agreement)


def agreement_text(a: Agreement) -> str:
    if a.status in ("match", "sampled", "unknown"):
        return {"match": "same", "sampled": "sampled: not compared", "unknown": MISSING}[a.status]
    gap = f"top-2 gap {num(a.ref_gap, 3)}" if a.ref_gap is not None else "gap unknown"
    res = f" ≤ {num(a.resolution, 3)} resolution" if a.status == "tie" else ""
    word = "rounding tie" if a.status == "tie" else "differs"
    return f"{word} at token {a.position} ({gap}{res})"


def _pay_text(r: VariantRow) -> str:
    if r.reason is not None or not r.pay_back_known:
        return MISSING
    if r.pay_back is None:
        return "never"
    if r.pay_back == 0:
        return "at once"
    return f"{r.pay_back} call" + ("s" if r.pay_back > 1 else "")


def _ms(x: float | None) -> str:
    return num(x * 1e3) if x is not None else MISSING


def _compiled_text(r: VariantRow) -> str:
    if r.reason is not None or r.compiled is None:
        return MISSING
    return "yes" if r.compiled else "no"


def _table_cells(rows: Sequence[VariantRow]) -> list[Column]:
    place = 0
    ranks = []
    for r in rows:
        place += r.reason is None
        ranks.append(str(place) if r.reason is None else MISSING)
    ran = [r.reason is None for r in rows]
    return [
        Column("#", tuple(ranks)),
        Column("variant", tuple(r.name for r in rows), align="left"),
        Column(
            "tok/s",
            tuple(num(r.tokens_per_s) if ok else MISSING for r, ok in zip(rows, ran, strict=True)),
        ),
        Column("p50 (ms)", tuple(_ms(r.p50_s) for r in rows)),
        Column("p99 (ms)", tuple(_ms(r.p99_s) for r in rows)),
        Column("MBU (%)", tuple(percent(r.mbu) if r.mbu is not None else MISSING for r in rows)),
        Column(
            "one-off",
            tuple(human_seconds(r.one_off_s) if r.one_off_s is not None else MISSING for r in rows),
        ),
        Column("pays back", tuple(_pay_text(r) for r in rows)),
        Column("compiled", tuple(_compiled_text(r) for r in rows)),
        Column(
            "output vs generate",
            tuple(_agreement_cell(r) for r in rows),
            align="left",
        ),
    ]


def variants_table_text(rows: Sequence[VariantRow], fmt: str = "simple") -> str:
    return render_table(make_table(_table_cells(rows)), fmt)


def first_call_line(e: FirstCallExplained) -> str:
    """One variant's first call explained, in one line."""
    sign = "+" if e.excess_s >= 0 else ""
    parts = [
        f"{e.variant}: first call {human_seconds(e.first_s)} vs warm "
        f"{human_seconds(e.warm_s)} ({sign}{human_seconds(e.excess_s)})"
    ]
    if e.compile_s is not None:
        parts.append(f"compilation {human_seconds(e.compile_s)}")
    if e.per_length_s is not None and e.per_length_s <= 0:
        # The probe's first call at a new length was no slower than its second: the
        # difference is noise (attn:eager showed -418 ms on the H200), not a saving.
        parts.append(
            f"a new prompt length ({e.new_length_prompt} tokens) costs nothing measurable "
            f"again ({human_seconds(e.per_length_s)}, within noise)"
        )
    elif e.per_length_s is not None:
        again = (
            f" (of it compiling {human_seconds(e.new_length_compile_s)})"
            if e.new_length_compile_s
            else ""
        )
        parts.append(
            f"a new prompt length ({e.new_length_prompt} tokens) pays "
            f"{human_seconds(e.per_length_s)} again{again}"
        )
    parts.append(f"other {human_seconds(e.other_s)}")
    if e.memory_growth_bytes is not None:
        seg = f", {e.segments_first} new segments" if e.segments_first is not None else ""
        parts.append(f"{e.memory_source} +{human_bytes(e.memory_growth_bytes)}{seg}")
    if e.excess_s <= 0:
        verdict = "No first-call excess: the first call was not slower than a warm one here"
    else:
        verdict = (
            "A warm-up call at start-up removes it at these lengths, "
            f"{human_seconds(max(e.warmup_removes_s, 0.0))} of it at other lengths"
        )
    return "; ".join(parts) + f". {verdict}"


def first_call_lines(runs: Sequence[RunRecord]) -> list[str]:
    return [first_call_line(e) for r in runs if (e := explain_first_call(r)) is not None]


def render_decode_variants(runs: Sequence[RunRecord], fmt: str = "simple") -> str:
    """The ranked table and the first-call lines; ``fmt`` "simple" or "pipe"."""
    rows = rank_decode_variants(runs)
    if not rows:
        return "no decode variant ran"
    bullet = "- " if fmt == "pipe" else "  "
    lines = first_call_lines(runs)
    out = [TITLE, "", variants_table_text(rows, fmt)]
    if lines:
        out += ["", "First call vs warm, explained:", *(bullet + x for x in lines)]
    notes = [
        f"{r.decode_variant.name}: {n}"
        for r in runs
        if r.decode_variant
        for n in r.decode_variant.notes
    ]
    if notes:
        out += ["", "Notes:", *(bullet + x for x in notes)]
    return "\n".join(out)


def markdown_section(runs: Sequence[RunRecord]) -> list[str]:
    """The report's section (empty when no run is a decode variant)."""
    mine = [r for r in runs if r.decode_variant is not None]
    if not mine:
        return []
    return ["## Decode variants", "", render_decode_variants(mine, "pipe"), ""]


def rows_json(runs: Sequence[RunRecord]) -> list[dict[str, Any]]:
    """The ranked table as JSON-able rows (same figures as the console)."""
    out = []
    for r in rank_decode_variants(runs):
        a = r.agreement
        out.append(
            {
                "variant": r.name,
                "description": r.description,
                "not_run_reason": r.reason,
                "tokens_per_s": r.tokens_per_s,
                "step_s": r.step_s,
                "p50_s": r.p50_s,
                "p99_s": r.p99_s,
                "mbu": r.mbu,
                "first_call_s": r.first_s,
                "warm_call_s": r.warm_s,
                "one_off_s": r.one_off_s,
                "pays_back_calls": r.pay_back if r.pay_back_known else None,
                "compiled": r.compiled,
                "agreement": {
                    "status": a.status,
                    "position": a.position,
                    "ref_top2_gap": a.ref_gap,
                    "resolution": a.resolution,
                },
                "table_cell": agreement_text(a) if r.reason is None else None,
            }
        )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m profiler.render.decode_variants RUNS.json``: the ranked rows as JSON."""
    import sys

    from profiler.records.io import load_runs

    args = list(sys.argv[1:] if argv is None else argv)
    runs = load_runs(args[0])
    print(
        json.dumps(
            {
                "kind": "llmprof.decode_variants",
                "rows": rows_json(runs),
                "first_call": first_call_lines(runs),
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
