"""The decode variants ranked, and each first call explained: pure functions.

Speed figures (tokens/s, per-token p50/p99, MBU) come from
:func:`profiler.analysis.decode_metrics.decode_figures`, the one definition; this
module adds only what compares variants:

One-off cost
    The first call's wall time minus the median warm call's: compilation, CUDA
    graph recording, kernel loading and plan selection, allocator growth.
Calls to pay for itself
    Against plain ``generate()``: the one-off cost a variant pays beyond the
    reference's own, over what each warm call saves,
    ``ceil((one_off - ref_one_off) / (ref_warm - warm))``; 0 when it costs no more
    up front, None ("never") when its warm call is not faster.
Output agreement (greedy)
    The variant's new tokens against the reference's. At the first position where
    they differ the prefixes are equal, so the reference's logits there are those
    of the same context: when its top-1 minus top-2 gap is within one unit in the
    last place of the logits' dtype at the top-1 value, the two choices are a
    rounding tie (different kernels may order them either way), not a bug.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from profiler.analysis.decode_metrics import decode_figures
from profiler.analysis.stats import median
from profiler.records.decode_variant import DecodeVariantFacts
from profiler.records.run import RunRecord

# Explicit mantissa bits of the dtypes logits come in.
MANTISSA_BITS = {"bfloat16": 7, "float16": 10, "float32": 23, "float64": 52}

REFERENCE = "generate"


def logit_resolution(value: float, dtype: str | None) -> float | None:
    """One unit in the last place of ``dtype`` at ``value`` (None for an unknown dtype)."""
    bits = MANTISSA_BITS.get(dtype or "")
    if bits is None:
        return None
    mag = abs(value)
    if mag == 0 or not math.isfinite(mag):
        return 0.0
    return 2.0 ** (math.floor(math.log2(mag)) - bits)


@dataclass(frozen=True)
class Agreement:
    """``status``: match, tie (differs where the reference's top-2 gap is within the
    dtype's resolution), differs, sampled (not compared) or unknown."""

    status: str
    position: int | None = None  # first differing new-token position (0-based)
    ref_gap: float | None = None
    resolution: float | None = None


def agreement(ref: DecodeVariantFacts, other: DecodeVariantFacts, *, sampled: bool) -> Agreement:
    """The variant's greedy output against the reference's (module docstring)."""
    if sampled:
        return Agreement("sampled")
    if not ref.tokens or not other.tokens:
        return Agreement("unknown")
    pos = next(
        (i for i, (a, b) in enumerate(zip(ref.tokens, other.tokens, strict=False)) if a != b),
        None,
    )
    if pos is None:
        if len(ref.tokens) == len(other.tokens):
            return Agreement("match")
        pos = min(len(ref.tokens), len(other.tokens))
    gap = ref.top2_gaps[pos] if pos < len(ref.top2_gaps) else None
    top1 = ref.top1_logits[pos] if pos < len(ref.top1_logits) else None
    res = logit_resolution(top1, ref.logits_dtype) if top1 is not None else None
    tie = gap is not None and res is not None and gap <= res
    return Agreement("tie" if tie else "differs", pos, gap, res)


def pay_back_calls(
    one_off_s: float, ref_one_off_s: float, warm_s: float, ref_warm_s: float
) -> int | None:
    """Calls until the extra one-off cost is saved back (module docstring)."""
    extra = one_off_s - ref_one_off_s
    if extra <= 0:
        return 0
    saving = ref_warm_s - warm_s
    if saving <= 0:
        return None
    # 1e-9: a quotient that is a whole number up to float rounding is not one more call
    return math.ceil(extra / saving - 1e-9)


@dataclass(frozen=True)
class VariantRow:
    """One line of the ranking; figures are None for a variant that did not run."""

    name: str
    description: str
    reason: str | None  # why it did not run (or failed)
    tokens_per_s: float | None = None
    step_s: float | None = None
    p50_s: float | None = None
    p99_s: float | None = None
    mbu: float | None = None
    first_s: float | None = None
    warm_s: float | None = None
    one_off_s: float | None = None
    pay_back: int | None = None
    pay_back_known: bool = False  # False: no reference to compare with
    agreement: Agreement = Agreement("unknown")
    compiled: bool | None = None


def _facts(run: RunRecord) -> DecodeVariantFacts:
    return run.decode_variant or DecodeVariantFacts(name=run.variant or "?")


def _row(run: RunRecord) -> VariantRow:
    facts = _facts(run)
    if run.status != "ok" or not run.decode:
        reason = facts.skip_reason or (run.error or "failed").strip().splitlines()[-1]
        return VariantRow(facts.name, facts.description, reason[:300])
    rec = run.decode[0]
    fig = decode_figures([rec])
    warm = median([c.wall_s for c in rec.calls]) if rec.calls else None
    first = rec.first_call.wall_s if rec.first_call else None
    return VariantRow(
        facts.name,
        facts.description,
        None,
        tokens_per_s=fig.tokens_per_s_batch,
        step_s=fig.step.median if fig.step else None,
        p50_s=fig.interval.median if fig.interval else None,
        p99_s=fig.interval.p99 if fig.interval else None,
        mbu=fig.mbu,
        first_s=first,
        warm_s=warm,
        one_off_s=first - warm if first is not None and warm is not None else None,
        compiled=facts.compiled,
    )


def _compare(row: VariantRow, ref: VariantRow | None, agree: Agreement) -> VariantRow:
    from dataclasses import replace

    pay, known = None, False
    if ref is not None and None not in (row.one_off_s, ref.one_off_s, row.warm_s, ref.warm_s):
        pay = pay_back_calls(
            row.one_off_s or 0.0, ref.one_off_s or 0.0, row.warm_s or 0.0, ref.warm_s or 0.0
        )
        known = True
    return replace(row, pay_back=pay, pay_back_known=known, agreement=agree)


def rank_decode_variants(runs: Sequence[RunRecord]) -> list[VariantRow]:
    """Rows of the variants that ran, fastest (tokens/s) first, then those that did not."""
    by_name = {_facts(r).name: r for r in runs}
    ref_run = by_name.get(REFERENCE)
    ref_row = _row(ref_run) if ref_run is not None else None
    if ref_row is not None and ref_row.reason is not None:
        ref_row = None
    ref_facts = _facts(ref_run) if ref_run is not None else None
    rows = []
    for run in runs:
        row = _row(run)
        if row.reason is not None or row.name == REFERENCE:
            rows.append(row)  # the reference is not compared with itself
            continue
        sampled = bool(run.decode and run.decode[0].temperature > 0)
        agree = (
            agreement(ref_facts, _facts(run), sampled=sampled)
            if ref_facts is not None and ref_row is not None
            else Agreement("unknown")
        )
        rows.append(_compare(row, ref_row, agree))
    ran = sorted((r for r in rows if r.reason is None), key=lambda r: -(r.tokens_per_s or 0.0))
    return ran + [r for r in rows if r.reason is not None]
