"""Renderers: the same structural test over every format, and the rules of each table.

Records come from tests/support/fake_runs.py (fixed numbers, so a cell can be
pinned); golden files of real records are tested in tests/unit/test_golden.py.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from profiler.analysis.summaries import summarize_runs
from profiler.errors import UserError
from profiler.records.io import parse_runs
from profiler.records.run import RunRecord
from profiler.render import (
    ConsoleRenderer,
    JsonRenderer,
    MarkdownRenderer,
    Renderer,
    get_renderer,
    render_console,
    render_markdown,
)
from profiler.render.format import MISSING
from profiler.render.plots import planned_images
from profiler.render.tables import Column, informative, key_text, make_table, render_table
from tests.support import fake_runs as fr

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"
REPO = Path(__file__).resolve().parents[2]


def cpu_report_runs() -> list[RunRecord]:
    return [*fr.cpu_cold_warm(), fr.failed_run(), fr.not_cold_run(repetition=5)]


def images_for(runs: list[RunRecord], stem: str = "report") -> dict[str, str]:
    return {k: f"{stem}_files/{v}" for k, v in planned_images(summarize_runs(runs)).items()}


# ------------------------------------------------------------- every renderer


RUN_SETS = {
    "cpu": cpu_report_runs,
    "mixed": fr.mixed_runs,
    "single": lambda: [fr.make_run(decode_batches=(1,))],
}


@pytest.mark.parametrize("name", ["console", "markdown", "json"])
@pytest.mark.parametrize("runs_name", sorted(RUN_SETS))
def test_every_renderer_shows_every_group_and_stage(name: str, runs_name: str) -> None:
    runs = RUN_SETS[runs_name]()
    renderer = get_renderer(name)
    assert isinstance(renderer, Renderer)
    assert renderer.extension.startswith(".")
    text = renderer.render(runs)
    assert text.endswith("\n")
    for run in runs:
        assert run.model.spec in text
        # JSON keeps the raw cache state; readable formats show the group's label.
        assert (run.cache.page if name == "json" else run.cache.label) in text
        for stage in run.stages:
            assert stage.name in text
    if name == "json":
        # The JSON renderer is lossless: parsing it gives back equal records.
        assert parse_runs(json.loads(text)) == runs
    else:
        assert "Traceback" not in text
        for env in {r.environment.cpu_model for r in runs}:
            assert env in text  # footer names the machine


def test_builtin_renderer_classes() -> None:
    assert isinstance(get_renderer("console"), ConsoleRenderer)
    assert isinstance(get_renderer("markdown"), MarkdownRenderer)
    assert isinstance(get_renderer("json"), JsonRenderer)
    assert [get_renderer(n).extension for n in ("console", "markdown", "json")] == [
        ".txt",
        ".md",
        ".json",
    ]


def test_renderer_by_import_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_renderers.py").write_text(
        textwrap.dedent("""
        class Count:
            extension = ".count"
            def render(self, runs):
                return f"{len(runs)} runs\\n"
        class NoRender:
            extension = ".x"
        class NeedsArgs:
            extension = ".x"
            def __init__(self, size):
                self.size = size
            def render(self, runs):
                return ""
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    r = get_renderer("my_renderers:Count")
    assert r.extension == ".count"
    assert r.render(fr.cpu_cold_warm()) == "6 runs\n"
    for bad, words in [
        ("my_renderers:NoRender", "render"),
        ("my_renderers:NeedsArgs", "without arguments"),
        ("my_renderers:Missing", "has no Missing"),
        ("no_such_module_xyz:Thing", "cannot import"),
        ("html", "unknown renderer"),
    ]:
        with pytest.raises(UserError, match=words):
            get_renderer(bad)


def test_render_package_imports_neither_torch_nor_matplotlib() -> None:
    code = (
        "import sys, profiler.render, profiler.analysis.summaries, profiler.commands.report, "
        "profiler.render.plots\n"
        "bad = [m for m in ('torch', 'transformers', 'matplotlib') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


# ----------------------------------------------------------- markdown tables


def tables(md: str) -> list[list[str]]:
    """Markdown pipe tables, each as its lines."""
    out: list[list[str]] = []
    current: list[str] = []
    for line in md.splitlines():
        if line.startswith("|"):
            current.append(line)
        elif current:
            out.append(current)
            current = []
    if current:
        out.append(current)
    return out


def cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def test_markdown_tables_are_well_formed_and_aligned() -> None:
    md = render_markdown(fr.mixed_runs())
    found = tables(md)
    assert len(found) >= 8
    for t in found:
        header, sep, *rows = t
        n = len(cells(header))
        assert all(len(cells(r)) == n for r in rows), header
        aligns = cells(sep)
        for i, a in enumerate(aligns):
            column = [cells(r)[i] for r in rows]
            numeric = [c for c in column if re.fullmatch(r"[−+]?[\d,.]+( ± [\d,.]+)?[×]?", c)]
            if numeric and len(numeric) == len([c for c in column if c not in ("", "–")]):
                assert a.endswith(":") and not a.startswith(":"), (header, i)  # right
            if i == 0 and not numeric:
                assert a.startswith(":"), header  # a text row label: left


def test_markdown_sections_in_order() -> None:
    md = render_markdown(cpu_report_runs())
    heads = [line for line in md.splitlines() if line.startswith("## ")]
    assert heads == [
        "## Summary",
        "## Load stages",
        "## Cold vs warm",
        "## Native vs staged",
        "## Decode",
        "## Environment",
        "## Notes and warnings",
    ]
    assert md.splitlines()[0] == f"# llmprof report: {fr.SPEC}"


def test_markdown_summary_headlines() -> None:
    md = render_markdown(fr.cpu_cold_warm())
    summary = md.split("## Load stages")[0]
    assert (
        "**Cold load:** 1.28 ± 0.03 s (n=3) for the load alone; 2.42 s from process "
        "start; native `from_pretrained` 1.10 ± 0.02 s (n=3)"
    ) in summary
    assert "**Warm load:** 402 ± 8 ms (n=3) for the load alone; 1.39 s from" in summary
    assert "**TTFT:** 30.0 ± 0.3 ms (batch 1, 16-token prompt" in summary
    assert "**Tokens/s:** 46.1 tokens/s per sequence at batch 1 (step 21.7 ± 0.2 ms)" in summary
    assert "at batch 4" in summary
    assert "**Machine:** AMD EPYC 7B13 (2 cores, 8.59 GB RAM)" in summary
    assert "**Tool:** llmprof 0.1.0" in summary
    assert "(hub)" in summary


def test_markdown_marks_random_weights() -> None:
    md = render_markdown([fr.synthetic_run()])
    assert "(synthetic, random weights)" in md.split("## Load stages")[0]


def test_cpu_report_has_no_gpu_columns_and_gpu_report_has_them() -> None:
    cpu = render_markdown(fr.cpu_cold_warm())
    gpu = render_markdown(fr.gpu_cold_warm())
    assert "GPU used after" not in cpu and "torch peak" not in cpu
    assert "GPU used after (MB)" in gpu and "torch peak (MB)" in gpu


def test_ceiling_columns_only_when_there_are_ceilings() -> None:
    def strip(run: RunRecord) -> RunRecord:
        stages = tuple(
            dataclasses.replace(s, ceiling_name=None, ceiling_gbps=None) for s in run.stages
        )
        return dataclasses.replace(run, stages=stages)

    without = render_markdown([strip(r) for r in fr.cpu_cold_warm()])
    assert "% of ceiling" not in without
    assert "% of ceiling" in render_markdown(fr.cpu_cold_warm())


def test_spread_only_with_several_repetitions() -> None:
    one = render_markdown([fr.make_run()])
    three = render_markdown(fr.cpu_cold_warm())
    load_one = one.split("\n## Load stages")[1].split("\n## ")[0]
    assert "(n=1)" in load_one
    assert not any("±" in line for line in load_one.splitlines() if line.startswith("|"))
    assert "| weight_read  |    950 ± 19 |" in three
    assert "cache cold (n=3)" in three


def test_decode_table_rows_per_batch_and_text() -> None:
    md = render_markdown(fr.cpu_cold_warm())
    decode = md.split("## Decode")[1].split("## Environment")[0]
    rows = [cells(line) for line in decode.splitlines() if line.startswith("|")]
    header = rows[0]
    for col in (
        "batch",
        "TTFT (ms)",
        "p50 (ms)",
        "p90 (ms)",
        "p99 (ms)",
        "max (ms)",
        "tok/s (seq)",
        "tok/s (batch)",
        "MBU (%)",
        "step (ms)",
        "first step (ms)",
    ):
        assert col in header
    body = [r for r in rows if r[0].isdigit()]
    assert [r[0] for r in body] == ["1", "4", "1", "4"]  # cold and warm groups
    assert "```text\nThe capital of France is Paris. It is\n```" in decode


def test_notes_name_failures_not_cold_skips_and_left_out_files() -> None:
    md = render_markdown(cpu_report_runs(), skipped=[("x/bad.json", "not JSON")])
    notes = md.split("## Notes and warnings")[1]
    assert "repetition 3 failed (exit 137): ... / RuntimeError: killed by the OOM killer" in notes
    assert "42.0% of the weight bytes were resident" in notes
    assert "stage `cuda_init` skipped: device is cpu" in notes
    assert "native view, not attributed: 0.21 s" in notes
    assert "### Files left out" in notes and "- `x/bad.json`: not JSON" in notes
    assert notes.rstrip().endswith("Python 3.12.3*")


def test_mixed_report_has_cross_group_table() -> None:
    md = render_markdown(fr.mixed_runs())
    summary = md.split("## Load stages")[0]
    (table,) = tables(summary)
    header = cells(table[0])
    assert header[:4] == ["model", "device", "cache", "machine"]
    assert "dtype" not in header  # same dtype everywhere: not a column
    assert {"staged total (ms)", "native total (ms)", "TTFT (ms)", "tok/s (seq)"} <= set(header)
    assert len(table) == 2 + 5
    assert cells(table[2])[4] == "3/4"  # cold CPU group: 3 ok of 4


def test_nothing_in_common_is_said() -> None:
    runs = [fr.make_run(), fr.make_run(spec="org/other-model", gpu=True)]
    assert "share no model and no machine" in render_markdown(runs)
    assert "share no model" not in render_markdown(fr.mixed_runs())


def test_pipes_in_cells_are_escaped() -> None:
    table = make_table([Column("a|b", ("x|y",), align="left")])
    md = render_table(table, "pipe")
    assert "a\\|b" in md and "x\\|y" in md
    assert len(cells(md.splitlines()[2])) == 1


def test_no_runs_is_a_user_error() -> None:
    with pytest.raises(UserError):
        render_markdown([])
    assert render_console([]) == "no runs\n"


# ------------------------------------------------------------------ console


def test_console_load_table() -> None:
    text = render_console(cpu_report_runs())
    assert "load stages · cache cold · n=3 ok of 4 · median ± MAD" in text
    assert (
        "not run: cuda_init (device is cpu), h2d_copy (device is cpu: weights stay in host"
    ) in text
    assert "ceilings: weight_read against disk_read (1.20 GB/s)" in text
    header = next(line for line in text.splitlines() if line.startswith("stage "))
    assert "time (ms)" in header and "RSS after: anon / file (MB)" in header
    assert "GPU" not in header
    assert "native is 184 ms (14.3%) faster" in text
    assert "cold vs warm · cold against warm" in text
    assert "repetition 3 failed (exit 137)" in text
    assert "[not-cold] not cold: 1 of 1 runs" in text
    assert "Traceback" not in text


def test_console_decode_tables_and_text() -> None:
    text = render_console([fr.make_run(cache="warm", gpu=True)])
    assert "GPU used after (MB)" in text
    lat = text.split("· latency\n")[1].split("\n\n")[0].splitlines()
    assert lat[0].split()[:2] == ["batch", "prompt"]
    assert [row.split()[0] for row in lat[2:]] == ["1", "4"]
    assert "tok/s (batch)" in text
    assert "  | The capital of France is Paris. It is" in text
    # One group: notes are not tagged with the cache state.
    assert "- one repetition: no spread" in text


def test_console_lines_fit_prose_width() -> None:
    text = render_console(cpu_report_runs())
    notes = text.split("\nnotes\n")[1].split("\n\n")[0].splitlines()
    gaps = [line for line in text.splitlines() if " vs native " in line]
    prose = notes + gaps
    assert len(notes) > 5 and len(gaps) == 3
    assert all(len(line) <= 100 for line in prose)
    assert all(line.startswith(("  - ", "    ")) for line in notes)


# ------------------------------------------------------------------- tables


def test_columns_without_information_are_dropped() -> None:
    t = make_table(
        [
            Column("a", ("1", "2")),
            Column("b", (MISSING, MISSING), show=informative((MISSING,) * 2)),
        ]
    )
    assert t.headers == ("a",)
    assert t.rows == (("1",), ("2",))


def degenerate_runs() -> list[RunRecord]:
    """Records with the parts a renderer must not assume: no memory, no tokens, failures."""
    bare = fr.make_run(cache="uncontrolled", resident_before=0.5, page_verified=None)
    bare = dataclasses.replace(
        bare,
        stages=tuple(dataclasses.replace(s, memory=None) for s in bare.stages),
        native=None,
        decode=(
            dataclasses.replace(
                fr.build_decode(1),
                first_call=None,
                calls=(fr.build_call(0, 0.01, []),),  # one token: no interval
                plain_calls_s=(),
                memory_bandwidth_gbps=None,
                weight_bytes=None,
                text=None,
            ),
        ),
    )
    only_failed = fr.make_run(spec="org/broken-model", status="failed")
    no_stages = dataclasses.replace(fr.make_run(spec="org/decode-only"), stages=(), native=None)
    return [bare, only_failed, no_stages]


@pytest.mark.parametrize("name", ["console", "markdown", "json"])
def test_degenerate_records_render(name: str) -> None:
    text = get_renderer(name).render(degenerate_runs())
    assert "org/broken-model" in text and "org/decode-only" in text
    if name != "json":
        assert "repetition 0 failed (exit 137)" in text  # org/broken-model
        assert "page cache not controlled; 50.0%" in text.replace("\n    ", " ")


def test_degenerate_records_report(tmp_path: Path) -> None:
    from profiler.render import write_report

    written = write_report(degenerate_runs(), tmp_path / "r.md", title="edge cases")
    md = written[0].read_text()
    assert "No completed repetition." in md
    # The one-token decode has no intervals: decode charts come from org/decode-only.
    assert [p.name for p in written[1:]] == [
        "load_stages.png",
        "token_latency_1.png",
        "throughput.png",
    ]


def test_headings_leave_out_an_empty_variant() -> None:
    # A plain profile next to --variants runs has no variant: its heading was
    # "bfloat16 · " with a dangling separator.
    plain = fr.make_run(cache="warm", dtype="bfloat16")
    variant = dataclasses.replace(fr.make_run(cache="warm", dtype="float32"), variant="fast")
    md = render_markdown([plain, variant])
    heads = [line for line in md.splitlines() if line.startswith("### ")]
    assert "### bfloat16" in heads and "### float32 · fast" in heads
    assert not any(h.rstrip().endswith("·") for h in heads)
    assert key_text(summarize_runs([plain])[0].key, ["variant"]) == MISSING


def test_diagnosis_block() -> None:
    from profiler.render.console import render_diagnosis

    assert render_diagnosis(["load: 1.00 s over 2 stages", "decode ok"]) == (
        "Diagnosis\n  - load: 1.00 s over 2 stages\n  - decode ok"
    )
