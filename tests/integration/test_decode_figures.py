"""One decode run written by the product, every reader of it: the console table, the
diagnosis, ``llmprof compare``'s metrics and the markdown report must print the same
step time, tokens/s and MBU (one definition, in profiler.analysis.decode_metrics).

The run is real: ``llmprof decode`` on a tiny random Llama built in the test, in
process, with ``--ceilings off``. Printed figures are rounded, so each one is checked
against the definition to within half a unit of its last printed digit.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from profiler.analysis.decode_metrics import DecodeFigures, decode_figures, group_by_shape  # noqa: E402
from profiler.analysis.diagnosis import diagnose  # noqa: E402
from profiler.analysis.metrics import metrics_from_runs, run_prefix  # noqa: E402
from profiler.cli import main  # noqa: E402
from profiler.records.ceilings import GBPS, Ceiling, Ceilings  # noqa: E402
from profiler.records.io import load_runs  # noqa: E402
from profiler.records.run import RunRecord  # noqa: E402
from profiler.render.markdown import render_markdown  # noqa: E402
from tests.support.tiny import make_tiny_model  # noqa: E402

SCALE = {"s": 1.0, "ms": 1e-3, "µs": 1e-6}


def close(printed: str, true: float, scale: float = 1.0) -> bool:
    """``printed`` (in units of ``scale``) is ``true`` rounded to its printed digits."""
    text = printed.replace(",", "").strip()
    decimals = len(text.split(".")[1]) if "." in text else 0
    return abs(float(text) * scale - true) <= 0.5 * 10**-decimals * scale * (1 + 1e-9)


def table_rows(lines: list[str], sep: str) -> list[dict[str, str]]:
    """Rows of a plain-text (two-space separated) or markdown (|) table as dicts."""

    def cells(line: str) -> list[str]:
        if sep == "|":
            return [c.strip() for c in line.strip().strip("|").split("|")]
        return re.split(r"\s{2,}", line.strip())

    header = cells(lines[0])
    return [dict(zip(header, cells(line), strict=True)) for line in lines[2:]]


def step_column(row: dict[str, str]) -> tuple[str, float]:
    key = next(k for k in row if k.startswith("step ("))
    return row[key].split(" ± ")[0], SCALE[key[len("step (") : -1]]


def check_row(row: dict[str, str], f: DecodeFigures) -> None:
    assert f.step is not None and f.tokens_per_s_seq and f.tokens_per_s_batch and f.mbu
    printed, scale = step_column(row)
    assert close(printed, f.step.median, scale)
    assert close(row["tok/s (seq)"], f.tokens_per_s_seq)
    if "tok/s (batch)" in row:
        assert close(row["tok/s (batch)"], f.tokens_per_s_batch)
    assert close(row["MBU (%)"], f.mbu * 100)


def console_rates(out: str) -> list[dict[str, str]]:
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if "· rates" in line)
    end = next(i for i in range(at + 1, len(lines)) if not lines[i].strip() or ":" in lines[i])
    return table_rows(lines[at + 1 : end], sep="  ")


def markdown_rows(md: str) -> list[dict[str, str]]:
    # The decode section alone: the next "## " heading (step bounds, variants,
    # environment) starts another section with tables of its own.
    section = md.split("\n## Decode")[1].split("\n## ")[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    return table_rows(lines, sep="|")


DIAGNOSIS = re.compile(
    r"decode \(batch (\d+)\): ([\d.,]+) ms per step .*?, ([\d.,]+) tokens/s per sequence"
    r"(?:, ([\d.,]+) for the batch)?; .*MBU ([\d.]+)% of (.*)"
)


@pytest.fixture(scope="module")
def product_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[RunRecord], str]:
    """``llmprof decode`` on a tiny model, batch 1 and 2: its records and its output."""
    import contextlib
    import io

    root = tmp_path_factory.mktemp("figures")
    tiny = make_tiny_model(root / "tiny", arch="llama", dtype="float32")
    out = root / "runs.json"
    argv = ["decode", str(tiny), "--dtype", "float32", "--new-tokens", "12", "--batch", "1,2"]
    argv += ["--warm-calls", "3", "--in-process", "--ceilings", "off", "--json", str(out)]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(argv) == 0
    return load_runs(Path(out)), printed.getvalue()


def test_every_reader_prints_the_same_decode_figures(product_run) -> None:
    runs, console = product_run
    (run,) = runs
    figures = {recs[0].batch_size: decode_figures(recs) for recs in group_by_shape(run.decode)}
    assert sorted(figures) == [1, 2]
    for b, f in figures.items():
        assert f.step and f.mbu and f.bandwidth_from_run
        print(  # the figures this test sees (pytest -s shows them)
            f"batch {b}: step {f.step.median * 1e3:.3f} ms, {f.tokens_per_s_seq:.1f} tokens/s "
            f"per sequence, {f.tokens_per_s_batch:.1f} for the batch, MBU {f.mbu:.2%} of "
            f"{f.bandwidth_gbps:.2f} GB/s measured in the run"
        )

    # 1. the console table `llmprof decode` printed
    rows = console_rates(console)
    assert [int(r["batch"]) for r in rows] == [1, 2]
    for row in rows:
        check_row(row, figures[int(row["batch"])])
    assert "measured in the same run" in console

    # 2. the markdown report
    md = render_markdown(runs)
    for row in markdown_rows(md):
        check_row(row, figures[int(row["batch"])])
    head = re.search(
        r"\*\*Tokens/s:\*\* ([\d.,]+) tokens/s per sequence at batch 1 \(step ([\d.,]+)", md
    )
    assert head is not None
    assert close(head[1], figures[1].tokens_per_s_seq or 0.0)
    assert close(head[2], figures[1].step.median if figures[1].step else 0.0, 1e-3)

    # 3. llmprof compare's metrics: one sample per run, the very same numbers
    m = metrics_from_runs(runs)
    for b, f in figures.items():
        d = f"{run_prefix(run)}/decode.b{b}"
        assert f.step is not None and f.mbu is not None
        assert m[f"{d}.step_s"].samples == (f.step.median,)
        assert m[f"{d}.tokens_per_s_batch"].samples == (f.tokens_per_s_batch,)
        assert m[f"{d}.mbu_pct"].samples == (f.mbu * 100,)

    # 4. the diagnosis, without ceilings and with ceilings whose host_memcpy differs:
    # the bandwidth measured in the run is the denominator either way.
    other = Ceilings(
        fingerprint={},
        measured_at="t",
        items={"host_memcpy": Ceiling("host_memcpy", 0.123, GBPS, (0.123,), "test")},
        device="cpu",
    )
    for ceilings in (None, other):
        lines = [x for x in diagnose(runs, ceilings) if x.startswith("decode (batch")]
        assert len(lines) == 2
        for line in lines:
            hit = DIAGNOSIS.match(line)
            assert hit is not None, line
            f = figures[int(hit[1])]
            assert f.step is not None and f.tokens_per_s_seq and f.mbu
            assert close(hit[2], f.step.median, 1e-3)
            assert close(hit[3], f.tokens_per_s_seq)
            if hit[4]:
                assert close(hit[4], f.tokens_per_s_batch or 0.0)
            assert close(hit[5], f.mbu * 100)
            assert hit[6].startswith("the memory bandwidth measured in the same run")
