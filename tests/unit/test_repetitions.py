"""The runner's bookkeeping around each child: cache notes, failed repetitions.

The child is replaced by a fake answering as the real one does (its own machine
fingerprint, the dtype it resolved), so what the parent adds is seen alone.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from profiler.analysis.grouping import group_runs
from profiler.records.job import DecodeSpec, LoadJob
from profiler.records.run import NativeView, RunRecord
from profiler.records.stage import StageRecord
from profiler.run import repetitions
from profiler.run.request import ProfileRequest
from profiler.run.spawn import ChildFailed
from tests.support import fake_runs as fr
from tests.support.tiny import write_stub_model

CHILD_ENV = fr.cpu_environment()  # what a child fingerprints, with torch imported


def fake_child(fail_repetition: int | None = None) -> Callable[..., dict]:
    def run_child(job: LoadJob, env: dict[str, str], timeout_s: float | None) -> dict:
        if job.repetition == fail_repetition and job.view == "staged":
            raise ChildFailed(-9, "killed by SIGKILL (out of memory?)")
        stage = StageRecord("tokenizer", "ok", 0, 10_000_000)
        if job.view.startswith("native"):
            native = NativeView(stages=(dataclasses.replace(stage, name="from_pretrained"),))
            return {"native": native.to_dict(), "environment": CHILD_ENV.to_dict()}
        run = RunRecord(
            model=job.model,
            device=job.device,
            dtype_requested=job.dtype,
            dtype_resolved="bfloat16",  # "auto" resolved from the config
            cache=job.cache,
            environment=CHILD_ENV,
            repetition=job.repetition,
            stages=(stage,),
        )
        return {"run": run.to_dict()}

    return run_child


@pytest.fixture
def runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[RunRecord]:
    folder = write_stub_model(tmp_path / "m")
    monkeypatch.setattr(repetitions, "run_child", fake_child(fail_repetition=1))
    req = ProfileRequest(
        spec=str(folder), repeat=2, page_states=("cold", "warm"), decode=DecodeSpec(enabled=False)
    )
    return repetitions.profile(req)


NOTE = re.compile(r"^(not )?(cold|warm): \d+\.\d% of [\d.,]+ [kMG]?B resident before the run$")


def test_the_page_cache_measurement_is_kept_in_the_notes(runs: list[RunRecord]) -> None:
    assert [(r.repetition, r.cache.page, r.status) for r in runs] == [
        (0, "cold", "ok"),
        (0, "warm", "ok"),
        (1, "cold", "failed"),
        (1, "warm", "failed"),
    ]
    for r in runs:
        notes = [n for n in r.notes if NOTE.match(n)]
        assert len(notes) == 1, r.notes
        (note,) = notes
        said = "not " if r.cache.page_verified is False else ""
        assert note.startswith(f"{said}{r.cache.page}: ")
        fraction = r.cache.page_resident_fraction_before
        assert fraction is not None and f"{fraction * 100:.1f}% of" in note


def test_a_failed_repetition_counts_in_its_group(runs: list[RunRecord]) -> None:
    failed = [r for r in runs if r.status != "ok"]
    assert {(r.exit_code, r.dtype_resolved, r.environment) for r in failed} == {
        (-9, "bfloat16", CHILD_ENV)
    }
    groups = group_runs(runs)
    assert [(g.key.cache, len(g.runs)) for g in groups] == [("cold", 2), ("warm", 2)]


def test_without_any_success_a_failed_repetition_keeps_the_parents_view(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = write_stub_model(tmp_path / "m")
    monkeypatch.setattr(repetitions, "run_child", fake_child(fail_repetition=0))
    (run,) = repetitions.profile(
        ProfileRequest(spec=str(folder), native=False, decode=DecodeSpec(enabled=False))
    )
    assert run.status == "failed" and run.dtype_resolved == ""
    assert run.environment != CHILD_ENV  # fingerprinted in this process
