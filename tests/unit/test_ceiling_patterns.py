"""Ceilings as best-of patterns, re-probed when a stage beats them, never above 100%
without a note; the scratch file sized from the model and refused without room."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from profiler.errors import UserError
from profiler.machine.bounds import attach_ceilings
from profiler.machine.disk import host_cache_note
from profiler.machine.patterns import ReadSpec, best_of, pattern_from_trials
from profiler.machine.reprobe import (
    OVER_NOTE,
    beaten,
    explain_over,
    reprobe_ceilings,
    stage_read_spec,
)
from profiler.machine.scratch import (
    FREE_MARGIN,
    MAX_SCRATCH,
    MIN_SCRATCH,
    check_free,
    live_scratch,
    model_bytes,
    scratch_file,
    scratch_size,
)
from profiler.records.ceilings import GBPS, Ceiling, Ceilings, Pattern
from profiler.render.ceilings import ceilings_report
from tests.support.ceiling_runs import beating_run, ceilings_of, pat, stage_of
from tests.support.fake_runs import make_run

MIB = 1 << 20
ROOT = Path(__file__).resolve().parents[2]


def test_best_of_takes_the_highest_median_and_keeps_every_pattern() -> None:
    pats = [pat("direct 4t", 1.3, 1.4, 1.5), pat("buffered 16t", 1.9, 2.0, 1.8), pat("1t", 1.0)]
    c = best_of("disk_read", GBPS, pats, size_bytes=64 * MIB)
    assert c.value == pytest.approx(1.9)
    assert c.winner == "buffered 16t"
    assert c.trials == (1.9, 2.0, 1.8)
    assert [p.label for p in c.patterns] == ["direct 4t", "buffered 16t", "1t"]
    assert "winner: buffered 16t" in c.method


def test_best_of_skips_memory_reads_unless_nothing_else() -> None:
    hot = pat("buffered 1t", 9.0, notes=("eviction failed: 80% of the file stayed in memory",))
    c = best_of("disk_read", GBPS, [hot, pat("direct 4t", 1.5)])
    assert c.winner == "direct 4t" and c.value == 1.5
    only = best_of("disk_read", GBPS, [hot])
    assert only.value == 9.0
    assert any("memory reads" in n for n in only.notes)


def test_best_of_without_a_measured_pattern_is_an_error() -> None:
    empty = pattern_from_trials("direct", [], mode="direct")
    with pytest.raises(ValueError):
        best_of("disk_read", GBPS, [empty])


def test_patterns_survive_json_and_version_1_files_still_read() -> None:
    c = best_of("disk_read", GBPS, [pat("a", 1.0), pat("b", 2.0)])
    cs = Ceilings(fingerprint={"cpu": "x"}, measured_at="now", items={"disk_read": c})
    back = Ceilings.from_dict(json.loads(json.dumps(cs.to_dict())))
    assert back == cs and back.items["disk_read"].winner == "b"
    v1 = cs.to_dict()
    v1["schema_version"] = 1
    for item in v1["items"].values():
        del item["patterns"], item["winner"]
    old = Ceilings.from_dict(v1)
    assert old.items["disk_read"].patterns == () and old.items["disk_read"].value == 2.0


def test_a_cached_version_1_file_is_measured_again(tmp_path: Path) -> None:
    from profiler.machine.cache import read_cached

    c = best_of("disk_read", GBPS, [pat("a", 1.0)])
    cs = Ceilings(fingerprint={"cpu": "x"}, measured_at="now", items={"disk_read": c})
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cs.to_dict()))
    assert read_cached(path, {"cpu": "x"}) == cs
    path.write_text(json.dumps({**cs.to_dict(), "schema_version": 1}))
    assert read_cached(path, {"cpu": "x"}) is None  # one way only: no upper bound


def test_a_beaten_ceiling_is_reprobed_with_the_stages_pattern() -> None:
    ceilings = ceilings_of(disk=1.7, page=60.0)
    run = attach_ceilings(beating_run(2.0), ceilings)
    assert stage_of(run, "weight_read").ceiling_fraction == pytest.approx(2.0 / 1.7)
    assert beaten([run]) == {"disk_read": [ReadSpec(False, 16, 16 * MIB)]}
    asked: list[tuple[str, ReadSpec]] = []

    def measure(name: str, spec: ReadSpec) -> Pattern:
        asked.append((name, spec))
        return pattern_from_trials(spec.label, [2.1, 2.05], mode=spec.mode)

    new, changed = reprobe_ceilings([run], ceilings, measure)
    assert changed and asked == [("disk_read", ReadSpec(False, 16, 16 * MIB))]
    disk = new.items["disk_read"]
    assert disk.value == pytest.approx(2.075) and disk.winner == "buffered 16t × 16 MiB"
    assert [p.origin for p in disk.patterns] == ["probe", "reprobe"]
    assert new.items["page_cache_read"] == ceilings.items["page_cache_read"]
    again = explain_over(attach_ceilings(run, new), new)
    st = stage_of(again, "weight_read")
    assert st.ceiling_fraction is not None and st.ceiling_fraction <= 1.0
    assert not any(OVER_NOTE in n for n in st.notes)


def test_a_reprobe_that_measures_lower_keeps_the_higher_figure_and_notes_why() -> None:
    ceilings = ceilings_of(disk=1.7, page=60.0)
    run = attach_ceilings(beating_run(2.0), ceilings)
    new, _ = reprobe_ceilings(
        [run], ceilings, lambda _n, s: pattern_from_trials(s.label, [1.2], mode="buffered")
    )
    assert new.items["disk_read"].value == 1.7
    out = explain_over(attach_ceilings(run, new), new)
    notes = [n for n in stage_of(out, "weight_read").notes if OVER_NOTE in n]
    assert len(notes) == 1 and "re-probing with its own pattern" in notes[0]
    assert notes[0].startswith("118% of disk_read")


def test_over_100_percent_from_cached_bytes_says_so() -> None:
    ceilings = ceilings_of(disk=1.7, page=60.0)
    run = beating_run(2.0)
    st = stage_of(run, "weight_read")
    assert st.bytes
    half = replace(st, disk_read_bytes=st.bytes // 2)
    run = replace(run, stages=tuple(half if s.name == "weight_read" else s for s in run.stages))
    out = explain_over(attach_ceilings(run, ceilings), ceilings)
    note = [n for n in stage_of(out, "weight_read").notes if OVER_NOTE in n][0]
    assert "only 50% of its bytes came from the disk" in note


def test_nothing_beaten_nothing_reprobed() -> None:
    ceilings = ceilings_of(disk=5.0, page=60.0)
    run = attach_ceilings(beating_run(2.0), ceilings)

    def measure(name: str, spec: ReadSpec) -> Pattern:
        raise AssertionError("no re-probe expected")

    assert reprobe_ceilings([run], ceilings, measure) == (ceilings, False)
    assert explain_over(run, ceilings) == run


def test_stage_read_spec_defaults() -> None:
    st = stage_of(make_run(), "weight_read")
    spec = stage_read_spec(replace(st, counters={"threads": 4, "files": 3}))
    assert spec == ReadSpec(False, 4, 64 * MIB, files=3)
    assert stage_read_spec(replace(st, counters={"threads": "x"})).threads == 1


def test_host_cache_note_on_a_cached_virtual_disk() -> None:
    disk = Ceiling("disk_read", 7.0, GBPS)
    page = Ceiling("page_cache_read_1t", 8.0, GBPS)
    note = host_cache_note(disk, page, vm=True)
    assert note is not None and "the host caches this virtual disk" in note and "88%" in note
    assert host_cache_note(replace(disk, value=1.3), page, vm=True) is None
    assert "below the page cache" in (host_cache_note(disk, page, vm=False) or "")


def test_host_cache_note_compares_like_with_like() -> None:
    # A busy box: one slow warm trial (median 1.17) must not make a 0.97 GB/s cold
    # read look cached; the best warm trial (1.97) is the comparison.
    one = pattern_from_trials("buffered 1t × 16 MiB", [0.97], mode="buffered", threads=1)
    many = pattern_from_trials("buffered 4t × 64 MiB", [0.99], mode="buffered", threads=4)
    disk = best_of("disk_read", GBPS, [one, many])
    page = Ceiling("page_cache_read_1t", 1.17, GBPS, trials=(0.54, 1.28, 1.17, 0.92, 1.97))
    assert host_cache_note(disk, page, vm=True) is None
    cached = best_of("disk_read", GBPS, [replace(one, value=1.8), many])
    assert "91%" in (host_cache_note(cached, page, vm=True) or "")


def test_scratch_size_follows_the_model() -> None:
    assert scratch_size(3_000_000, quick=False) == MIN_SCRATCH
    assert scratch_size(15_200_000_000, quick=False) == MAX_SCRATCH
    assert scratch_size(300 * MIB + 5, quick=False) == 304 * MIB  # whole 16 MiB blocks
    assert scratch_size(None, quick=False) == MAX_SCRATCH
    assert scratch_size(15_200_000_000, quick=True) == 256 * MIB


def test_model_bytes_counts_weight_files_only(tmp_path: Path) -> None:
    assert model_bytes(tmp_path) is None
    (tmp_path / "model.safetensors").write_bytes(b"x" * 1000)
    (tmp_path / "config.json").write_bytes(b"y" * 50)
    assert model_bytes(tmp_path) == 1000


def test_free_space_is_checked_before_writing(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="free space or pass a smaller --size"):
        check_free(tmp_path, 64 * MIB, 64 * MIB + FREE_MARGIN - 1)
    check_free(tmp_path, 64 * MIB, 64 * MIB + FREE_MARGIN)
    with pytest.raises(UserError):
        with scratch_file(tmp_path, 64 * MIB, free=10 * MIB):
            raise AssertionError("must refuse before yielding")
    assert list(tmp_path.iterdir()) == []


def test_scratch_removed_on_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        with scratch_file(tmp_path, 64 * MIB, free=1 << 40) as p:
            p.write_bytes(b"x")
            assert p in live_scratch()
            raise RuntimeError("probe failed")
    assert list(tmp_path.iterdir()) == [] and live_scratch() == ()


def test_scratch_removed_on_sigterm(tmp_path: Path) -> None:
    code = (
        "import os, signal, sys; from pathlib import Path\n"
        "from profiler.machine.scratch import scratch_file\n"
        f"with scratch_file(Path({str(tmp_path)!r}), 1 << 26, free=1 << 40) as p:\n"
        "    p.write_bytes(b'x'); print('ready', flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    print('not reached', flush=True)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert p.returncode == -signal.SIGTERM, p.stderr
    assert p.stdout.strip() == "ready"
    assert list(tmp_path.iterdir()) == []


def test_ceilings_report_lists_every_pattern_and_the_winner() -> None:
    c = best_of("disk_read", GBPS, [pat("O_DIRECT 4t × 16 MiB", 1.4), pat("buffered 16t", 1.9)])
    cs = Ceilings(fingerprint={}, measured_at="now", items={"disk_read": c})
    text = ceilings_report(cs)
    lines = [ln for ln in text.splitlines() if ln.startswith("disk_read ")]
    assert len(lines) == 3  # the ceiling row, then each pattern
    assert "O_DIRECT 4t × 16 MiB" in lines[1] and "best" not in lines[1]
    assert "buffered 16t" in lines[2] and lines[2].rstrip().endswith("best")
