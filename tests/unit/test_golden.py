"""Golden outputs of real records: what llmprof prints and writes for runs it recorded.

tests/data/runs/*.json were written by ``llmprof load`` itself (see
tests/support/golden.py and tests/data/README.md); rendering them is deterministic,
so every output is pinned byte for byte. After an intended change of an output:

    LLMPROF_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/test_golden.py

and read the diff before committing it.
"""

from __future__ import annotations

import os

import pytest

from profiler.analysis.summaries import summarize_runs
from profiler.records.run import RunRecord
from profiler.render.console import render_console
from profiler.render.markdown import render_markdown
from profiler.render.plots import planned_images
from profiler.render.variants import render_variants
from profiler.run.session import diagnose_groups
from tests.support.golden import GOLDEN, recorded


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("LLMPROF_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return
    assert path.exists(), f"no golden file {path}: run with LLMPROF_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{name} changed: LLMPROF_UPDATE_GOLDEN=1 to accept"


def images_for(runs: list[RunRecord], stem: str = "report") -> dict[str, str]:
    return {k: f"{stem}_files/{v}" for k, v in planned_images(summarize_runs(runs)).items()}


@pytest.fixture(scope="module")
def load_cpu() -> list[RunRecord]:
    return recorded("load_cpu")


@pytest.fixture(scope="module")
def variants_cpu() -> list[RunRecord]:
    return recorded("variants_cpu")


def test_the_records_are_what_the_product_wrote(load_cpu: list[RunRecord]) -> None:
    # What the goldens rely on, so a re-recording that lost it is caught here.
    assert [(r.cache.page, r.repetition, r.status) for r in load_cpu] == [
        ("cold", 0, "ok"),
        ("warm", 0, "ok"),
        ("cold", 1, "ok"),
        ("warm", 1, "ok"),
        ("cold", 2, "failed"),
        ("warm", 2, "failed"),
    ]
    ok = [r for r in load_cpu if r.status == "ok"]
    assert all(r.native is not None and r.decode for r in ok)
    assert {d.batch_size for r in ok for d in r.decode} == {1, 2}
    assert any(s.ceiling_name for r in ok for s in r.stages)
    assert all(r.model.path.startswith("$LLMPROF_CACHE/") for r in load_cpu)


def test_markdown_report(load_cpu: list[RunRecord]) -> None:
    # What `llmprof report tests/data/runs/load_cpu.json -o report.md` writes
    # (tests/integration/test_report_cli.py runs that command against this file).
    check_golden("report_cpu.md", render_markdown(load_cpu, images=images_for(load_cpu)))


def test_markdown_report_of_variants_and_repetitions(
    load_cpu: list[RunRecord], variants_cpu: list[RunRecord]
) -> None:
    runs = [*load_cpu, *variants_cpu]
    text = render_markdown(runs, title="Ways of loading synthetic:tiny", images=images_for(runs))
    check_golden("report_mixed.md", text)


def test_console(load_cpu: list[RunRecord]) -> None:
    check_golden("console_cpu.txt", render_console(load_cpu))


def test_diagnosis_from_attached_ceilings(load_cpu: list[RunRecord]) -> None:
    check_golden("diagnosis_cpu.txt", "\n".join(diagnose_groups(load_cpu, None)) + "\n")


def test_variants_ranking(variants_cpu: list[RunRecord]) -> None:
    check_golden("variants_cpu.txt", render_variants(variants_cpu) + "\n")
