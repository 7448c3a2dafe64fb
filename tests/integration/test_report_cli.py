"""`llmprof report` run as a real command: good files, bad files, folders, charts."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from profiler.records.io import save_runs
from tests.support import fake_runs as fr

REPO = Path(__file__).resolve().parents[2]


def llmprof(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "profiler", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    d = tmp_path / "in"
    d.mkdir()
    files = {
        "cpu": d / "cpu.json",
        "gpu": d / "gpu.json",
        "not_llmprof": d / "other_tool.json",
        "broken": d / "broken.json",
        "newer": d / "from_the_future.json",
        "binary": d / "binary.json",
        "empty": d / "empty.json",
    }
    save_runs(files["cpu"], [*fr.cpu_cold_warm(), fr.failed_run()])
    save_runs(files["gpu"], fr.gpu_cold_warm())
    files["not_llmprof"].write_text(json.dumps({"benchmark": "x", "results": [1, 2]}))
    files["broken"].write_text('{"kind": "llmprof.run", "stages": [')
    doc = fr.make_run().to_dict()
    doc["schema_version"] = 99
    files["newer"].write_text(json.dumps(doc))
    files["binary"].write_bytes(b"\xff\xfe\x00garbage")
    files["empty"].write_text(json.dumps({"kind": "llmprof.runs", "schema_version": 1, "runs": []}))
    files["missing"] = d / "never_written.json"
    return files


BAD = ("not_llmprof", "broken", "newer", "binary", "empty", "missing")


def test_bad_files_are_named_and_the_report_is_still_written(
    inputs: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out" / "report.md"
    args = [inputs[k] for k in ("cpu", "gpu", *BAD)]
    r = llmprof("report", *args, "-o", out)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == len(BAD)  # one line per bad file, nothing else
    for key, line in zip(BAD, lines, strict=True):
        assert line.startswith("llmprof: left out ")
        assert str(inputs[key]) in line
    by_key = dict(zip(BAD, lines, strict=True))
    assert "schema version 99" in by_key["newer"] and "upgrade" in by_key["newer"]
    assert "not JSON" in by_key["broken"]
    assert "not an llmprof run record" in by_key["not_llmprof"]
    assert "cannot read" in by_key["binary"]
    assert "holds no runs" in by_key["empty"]
    assert "cannot read" in by_key["missing"]

    md = out.read_text()
    assert md.startswith(f"# llmprof report: {fr.SPEC}")
    left_out = md.split("### Files left out")[1]
    for key in BAD:
        assert f"`{inputs[key]}`" in left_out
    # Charts: every image the report links exists beside it, by relative path.
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert links and all(link.startswith("report_files/") for link in links)
    for link in links:
        png = out.parent / link
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {out}" in r.stdout
    assert not [p for p in out.parent.rglob("*.tmp")]


def test_folder_input_and_all_good_files_exit_zero(inputs: dict[str, Path], tmp_path: Path) -> None:
    good = tmp_path / "good" / "nested"
    good.mkdir(parents=True)
    inputs["cpu"].rename(good / "cpu.json")
    inputs["gpu"].rename(good.parent / "gpu.json")
    out = tmp_path / "r.md"
    r = llmprof("report", good.parent, "-o", out, "--no-plots", "--title", "Two machines")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    md = out.read_text()
    assert md.startswith("# Two machines\n")
    assert "NVIDIA H100 80GB HBM3" in md and "AMD EPYC 7B13" in md
    assert "![" not in md
    assert not (tmp_path / "r_files").exists()
    assert "(13 runs)" in r.stdout


def test_same_run_twice_counts_once(inputs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "r.md"
    copy = tmp_path / "copy_of_cpu.json"
    copy.write_bytes(inputs["cpu"].read_bytes())
    same_file = inputs["cpu"].parent / ".." / "in" / "cpu.json"
    r = llmprof("report", inputs["cpu"], same_file, copy, "-o", out, "--no-plots")
    assert r.returncode == 0, r.stderr
    assert "(7 runs)" in r.stdout  # 3 cold + 3 warm + 1 failed, once each


def test_no_good_file_writes_nothing(inputs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "r.md"
    r = llmprof("report", inputs["broken"], inputs["newer"], "-o", out)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 3
    assert lines[-1].startswith("llmprof: no usable llmprof runs in 2 input(s)")
    assert not out.exists()
    assert not (tmp_path / "r_files").exists()


def test_empty_folder_is_named(tmp_path: Path) -> None:
    empty = tmp_path / "nothing_here"
    empty.mkdir()
    r = llmprof("report", empty, "-o", tmp_path / "r.md")
    assert r.returncode == 2
    assert f"llmprof: left out {empty}: folder holds no .json files" in r.stderr
    assert "Traceback" not in r.stderr


def test_output_that_is_a_folder_is_refused(inputs: dict[str, Path], tmp_path: Path) -> None:
    r = llmprof("report", inputs["cpu"], "-o", tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0
    assert "is a folder" in r.stderr and "report.md" in r.stderr


def test_runs_with_nothing_in_common_warn(tmp_path: Path) -> None:
    f = tmp_path / "two.json"
    save_runs(
        f,
        [
            fr.make_run(decode_batches=()),
            fr.make_run(spec="org/another-model", gpu=True, decode_batches=()),
        ],
    )
    out = tmp_path / "r.md"
    r = llmprof("report", f, "-o", out, "--no-plots")
    assert r.returncode == 0
    assert r.stderr.strip() == (
        "llmprof: warning: the runs share no model and no machine; "
        "the report lists them side by side"
    )
    assert "share no model and no machine" in out.read_text()


def test_report_of_a_recorded_run_is_the_golden_file(tmp_path: Path) -> None:
    # The command end to end on records llmprof wrote (tests/data/runs), against the
    # golden file tests/unit/test_golden.py renders from the same records.
    out = tmp_path / "report.md"
    r = llmprof("report", REPO / "tests/data/runs/load_cpu.json", "-o", out)
    assert r.returncode == 0, r.stderr
    assert out.read_text() == (REPO / "tests/data/golden/report_cpu.md").read_text()
    charts = sorted(p.name for p in (tmp_path / "report_files").iterdir())
    assert charts == ["load_stages.png", "throughput.png", "token_latency_1.png"]
