"""`llmprof decode --variants`: agreement (with the rounding-tie rule), pay-back
arithmetic, ranking, the first call explained and the rendered table, on records
with known numbers."""

from __future__ import annotations

import dataclasses

import pytest

from profiler.analysis.decode_metrics import decode_figures
from profiler.analysis.decode_variants import (
    agreement,
    logit_resolution,
    pay_back_calls,
    rank_decode_variants,
)
from profiler.analysis.first_call import explain_first_call
from profiler.decode.variant_plan import parse_variant_list, plan_decode_variants
from profiler.records.decode_variant import DecodeVariantFacts
from profiler.records.run import RunRecord
from profiler.render.decode_variants import render_decode_variants, rows_json
from tests.support import fake_runs as fr


def facts(name: str, tokens: tuple[int, ...], **kw: object) -> DecodeVariantFacts:
    return DecodeVariantFacts(name=name, tokens=tokens, **kw)  # type: ignore[arg-type]


REF = facts(
    "generate",
    (5, 6, 7, 8),
    top1_logits=(12.0, 20.0, 20.0, 3.0),
    top2_gaps=(1.0, 0.05, 0.3, 0.01),
    logits_dtype="bfloat16",
)


def test_logit_resolution_is_one_ulp_of_the_dtype() -> None:
    assert logit_resolution(20.0, "bfloat16") == 0.125  # 2**(4 - 7)
    assert logit_resolution(1.0, "float16") == 2.0**-10
    assert logit_resolution(-3.0, "float32") == 2.0**-22
    assert logit_resolution(3.0, "int8") is None


def test_same_tokens_match() -> None:
    assert agreement(REF, facts("static", (5, 6, 7, 8)), sampled=False).status == "match"


def test_difference_within_resolution_is_a_tie() -> None:
    a = agreement(REF, facts("static", (5, 9, 1, 1)), sampled=False)
    assert (a.status, a.position, a.ref_gap, a.resolution) == ("tie", 1, 0.05, 0.125)


def test_difference_above_resolution_differs() -> None:
    a = agreement(REF, facts("static", (5, 6, 9, 9)), sampled=False)
    assert (a.status, a.position, a.ref_gap) == ("differs", 2, 0.3)


def test_sampled_outputs_are_not_compared() -> None:
    assert agreement(REF, facts("x", (1,)), sampled=True).status == "sampled"


@pytest.mark.parametrize(
    ("one_off", "ref_one_off", "warm", "ref_warm", "calls"),
    [
        (10.0, 1.0, 0.5, 2.0, 6),  # 9 s extra, 1.5 s saved per call: ceil(6.0) = 6
        (10.0, 1.0, 0.5, 2.3, 5),  # 9 / 1.8 = 5.0
        (0.5, 1.0, 0.5, 2.0, 0),  # no extra one-off cost
        (10.0, 1.0, 2.5, 2.0, None),  # slower warm: never pays back
    ],
)
def test_pay_back(
    one_off: float, ref_one_off: float, warm: float, ref_warm: float, calls: int | None
) -> None:
    assert pay_back_calls(one_off, ref_one_off, warm, ref_warm) == calls


def variant_run(name: str, speed: float, tokens: tuple[int, ...], **kw: object) -> RunRecord:
    """A run whose decode is the fixture's, with steps ``speed`` times faster."""
    run = fr.make_run(cache="warm", decode_batches=(1,))
    rec = run.decode[0]

    def scaled(call):  # type: ignore[no-untyped-def]
        t = call.token_times_ns
        times = tuple(t[0] + int((x - t[0]) / speed) for x in t)
        return dataclasses.replace(call, token_times_ns=times, end_ns=times[-1] + 1000)

    rec = dataclasses.replace(
        rec, first_call=scaled(rec.first_call), calls=tuple(scaled(c) for c in rec.calls)
    )
    f = dataclasses.replace(REF, name=name, tokens=tokens, **kw)  # type: ignore[arg-type]
    return dataclasses.replace(run, decode=(rec,), variant=name, decode_variant=f)


def test_ranking_uses_the_one_mbu_and_lists_what_did_not_run() -> None:
    ref = variant_run("generate", 1.0, REF.tokens)
    fast = variant_run("static", 2.0, (5, 6, 9, 9), compiled=False)
    skipped = dataclasses.replace(
        fr.make_run(status="failed"),
        variant="graph-loop",
        decode_variant=DecodeVariantFacts(name="graph-loop", skip_reason="needs CUDA"),
    )
    rows = rank_decode_variants([ref, skipped, fast])
    assert [r.name for r in rows] == ["static", "generate", "graph-loop"]
    assert rows[0].mbu == decode_figures(list(fast.decode)).mbu
    assert rows[0].mbu == pytest.approx(2 * rows[1].mbu, rel=1e-3)
    assert rows[0].agreement.status == "differs"
    assert rows[2].reason == "needs CUDA"
    text = render_decode_variants([ref, skipped, fast])
    assert "not run: needs CUDA" in text
    assert "(the reference)" in text and not rows[1].pay_back_known
    assert "differs at token 2 (top-2 gap 0.3" in text
    doc = rows_json([ref, skipped, fast])
    assert doc[0]["variant"] == "static" and doc[0]["agreement"]["position"] == 2


def test_first_call_split_adds_up() -> None:
    run = variant_run(
        "static-compile",
        1.0,
        REF.tokens,
        compile_first_s=0.05,
        new_length_first_s=0.5,
        new_length_warm_s=0.48,
        memory_source="cuda reserved",
        memory_before=100,
        memory_after_first=1100,
        segments_first=3,
        new_length_prompt=24,
    )
    e = explain_first_call(run)
    assert e is not None
    rec = run.decode[0]
    assert e.excess_s == pytest.approx(
        rec.first_call.wall_s - sorted(c.wall_s for c in rec.calls)[1]
    )
    assert e.per_length_s == pytest.approx(0.02)
    assert e.other_s + e.compile_s + e.per_length_s == pytest.approx(e.excess_s)
    assert e.warmup_removes_s == pytest.approx(e.excess_s - 0.02)
    assert e.memory_growth_bytes == 1000
    assert "a new prompt length (24 tokens) pays" in render_decode_variants([run])


def test_recompile_per_length_is_not_counted_twice() -> None:
    """A static-shape variant recompiles at every new length: the per-length probe's
    compile is the same work as the first call's compile (on the H200, static-compile's
    rest came out at -35.6 s when both were subtracted)."""
    run = variant_run(
        "static-compile",
        1.0,
        REF.tokens,
        compile_first_s=0.030,
        new_length_first_s=0.0405,
        new_length_warm_s=0.0,
        compile_new_length_s=0.0403,
    )
    e = explain_first_call(run)
    assert e is not None
    assert e.other_s == pytest.approx(e.excess_s - 0.030 - 0.0002)
    assert e.other_s >= 0.0


def test_default_list_and_plan_on_cpu() -> None:
    names = parse_variant_list(None)
    assert names[0] == "generate" and "attn:eager" in names and "graph-loop" in names
    plan = {v.name: v.skip_reason for v in plan_decode_variants(names, "cpu")}
    assert plan["graph-loop"] and plan["static-compile"] and plan["attn:flash_attention_2"]
    assert plan["static"] is None and plan["seed-loop"] is None and plan["attn:eager"] is None


def test_record_round_trip_keeps_the_facts() -> None:
    run = variant_run("static", 2.0, (5, 6, 9, 9), compiled=True, segments_first=4)
    back = RunRecord.from_dict(run.to_dict())
    assert back.decode_variant == run.decode_variant
    old = run.to_dict()
    del old["decode_variant"]
    assert RunRecord.from_dict(old).decode_variant is None


def test_report_and_console_show_the_same_table() -> None:
    from profiler.render.markdown import render_markdown

    runs = [variant_run("generate", 1.0, REF.tokens), variant_run("static", 2.0, REF.tokens)]
    report = render_markdown(runs)
    assert "## Decode variants" in report
    table = render_decode_variants(runs, "pipe")
    assert table in report
    assert render_markdown([fr.make_run()]).count("## Decode variants") == 0


def test_a_new_length_faster_than_its_repeat_is_noise_not_a_saving() -> None:
    run = variant_run(
        "attn:eager",
        1.0,
        REF.tokens,
        new_length_first_s=0.50,
        new_length_warm_s=0.92,
        new_length_prompt=40,
    )
    text = render_decode_variants([run])
    assert "costs nothing measurable again" in text and "pays -" not in text
