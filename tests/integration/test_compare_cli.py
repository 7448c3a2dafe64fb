"""``llmprof compare`` as CI runs it: a subprocess, real files, exit codes 0/1/2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from profiler.records.io import save_runs
from profiler.records.run import CacheState, Environment, ModelInfo, RunRecord
from profiler.records.stage import StageRecord

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "tiny/cpu/float32/warm"


def environment(torch: str = "2.13.0") -> Environment:
    return Environment(
        python="3.11.7",
        platform="Linux",
        cpu_model="Test CPU",
        cpu_count=2,
        ram_bytes=8 << 30,
        torch=torch,
        transformers="5.23.0",
        hostname="ci-runner",
    )


def runs(weight_read_s: list[float], torch: str = "2.13.0") -> list[RunRecord]:
    """One run per value: an import stage of fixed 0.3 s and a weight_read stage."""
    out = []
    for i, wr in enumerate(weight_read_s):
        t0 = 10_000_000_000
        t1 = t0 + 300_000_000
        stages = (
            StageRecord("import", "ok", t0, t1),
            StageRecord("weight_read", "ok", t1, t1 + round(wr * 1e9)),
        )
        out.append(
            RunRecord(
                model=ModelInfo(spec="tiny", source_kind="synthetic", path="/tmp/tiny"),
                device="cpu",
                dtype_requested="float32",
                dtype_resolved="float32",
                cache=CacheState(page="warm"),
                environment=environment(torch),
                repetition=i,
                stages=stages,
                run_id=f"run-{torch}",
            )
        )
    return out


BASE = [0.50, 0.51, 0.52, 0.53, 0.54, 0.55]


def llmprof(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "profiler", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    paths = {
        "base": tmp_path / "base.json",
        "same": tmp_path / "same.json",
        "slow": tmp_path / "slow.json",
        "other_machine": tmp_path / "other.json",
    }
    save_runs(paths["base"], runs(BASE))
    save_runs(paths["same"], runs([x + 0.001 for x in BASE]))
    save_runs(paths["slow"], runs([x * 1.3 for x in BASE]))
    save_runs(paths["other_machine"], runs(BASE, torch="2.11.0"))
    return paths


def test_no_regression_exit_0(files: dict[str, Path]) -> None:
    r = llmprof("compare", files["base"], files["same"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "0 regressions, 3 unchanged"
    assert f"`{PREFIX}/load.weight_read_s`" in r.stdout
    assert r.stderr == ""


def test_regression_exit_1_and_output_file(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "report" / "compare.md"
    r = llmprof("compare", files["base"], files["slow"], "-o", out)
    assert r.returncode == 1, r.stderr
    lines = r.stdout.splitlines()
    # weight_read +30% and the staged total (0.3 + wr) moved ~+19%: both regressions
    assert lines[0] == "2 regressions, 1 unchanged"
    first_row = next(ln for ln in lines if ln.startswith("| `"))
    assert "**regression**" in first_row
    assert out.read_text() == r.stdout


def test_threshold_flags(files: dict[str, Path]) -> None:
    # weight_read moved +30% and the staged total +19%: higher thresholds let them pass
    r = llmprof(
        "compare",
        files["base"],
        files["slow"],
        "--metric-threshold",
        "*/load.weight_read_s=40%",
        "--metric-threshold",
        "*staged_total_s=0.25",
    )
    assert r.returncode == 0, r.stdout
    # a floor above the change (0.158 s on 0.525 s) makes it noise
    r = llmprof("compare", files["base"], files["slow"], "--floor", "s=200ms")
    assert r.returncode == 0, r.stdout


def test_machines(files: dict[str, Path]) -> None:
    r = llmprof("compare", files["base"], files["other_machine"])
    assert r.returncode == 0
    assert "torch: '2.13.0' → '2.11.0'" in r.stdout
    r = llmprof("compare", files["base"], files["other_machine"], "--strict-machine")
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr.count("\n") == 1 and "torch" in r.stderr
    assert "Traceback" not in r.stderr


def test_pytest_benchmark_files(tmp_path: Path) -> None:
    def doc(data: list[float]) -> dict:
        return {
            "machine_info": {"python_version": "3.11.7", "cpu": {"brand_raw": "Test CPU"}},
            "benchmarks": [
                {
                    "name": "test_x",
                    "fullname": "bench/test_a.py::test_x",
                    "stats": {"median": sorted(data)[len(data) // 2], "data": data},
                    "extra_info": {},
                }
            ],
        }

    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(doc(BASE)))
    b.write_text(json.dumps(doc([x * 1.5 for x in BASE])))
    r = llmprof("compare", a, b)
    assert r.returncode == 1, r.stderr
    assert "`bench/test_a.py::test_x`" in r.stdout


@pytest.mark.parametrize(
    ("content", "args"),
    [
        ("{broken", ()),
        ('{"something": "else"}', ()),
        (None, ()),  # the file does not exist
        ("ok", ("--threshold", "10")),  # 1000%? refused
        ("ok", ("--alpha", "2")),
        ("ok", ("--floor", "bytes=8XB")),
    ],
)
def test_bad_input_exit_2_one_line(
    files: dict[str, Path], tmp_path: Path, content: str | None, args: tuple[str, ...]
) -> None:
    bad = tmp_path / "bad.json"
    if content == "ok":
        bad = files["same"]
    elif content is not None:
        bad.write_text(content)
    r = llmprof("compare", files["base"], bad, *args)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith("llmprof: ")
    assert r.stderr.count("\n") == 1
    assert r.stdout == ""
    if content not in ("ok",):
        assert "bad.json" in r.stderr


def test_no_common_metric_exit_2(files: dict[str, Path], tmp_path: Path) -> None:
    other = tmp_path / "other.json"
    data = {
        "machine_info": {},
        "benchmarks": [{"name": "x", "fullname": "t.py::x", "stats": {"median": 1.0}}],
    }
    other.write_text(json.dumps(data))
    r = llmprof("compare", files["base"], other)
    assert r.returncode == 2
    assert "no metric in common" in r.stderr
    assert "Traceback" not in r.stderr
