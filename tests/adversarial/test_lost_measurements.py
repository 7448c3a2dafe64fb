"""Measurements are never lost: a failed save falls back to another file (printed),
a failed ceilings probe keeps the profile, and a report is written whole or not at all."""

from __future__ import annotations

import argparse
import errno
from pathlib import Path

import pytest

from profiler.errors import UserError
from tests.adversarial.conftest import assert_refused
from tests.support.fake_runs import cpu_cold_warm


def _args(json_path: Path | None, report: Path | None = None) -> argparse.Namespace:
    return argparse.Namespace(json=str(json_path) if json_path else None, report=report, model="m")


def _fail_save(*a: object, **k: object) -> None:
    raise UserError("cannot write out.json: No space left on device: choose a writable path")


def test_save_failure_keeps_tables_and_falls_back(monkeypatch, tmp_path: Path, capsys) -> None:
    from profiler.commands import _shared
    from profiler.records import io
    from profiler.run.session import Session

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(io, "save_runs", _fail_save)
    runs = cpu_cold_warm(2)
    code = _shared.show(_args(tmp_path / "out.json"), Session(tuple(runs)))
    out, err = capsys.readouterr()
    assert "weight_read" in out, "the tables were not printed"
    assert code == 2
    fallback = [line for line in err.splitlines() if "saved" in line and ".json" in line]
    assert fallback, err
    path = Path(fallback[-1].split(" to ")[-1].split()[0].rstrip(":"))
    from profiler.records.io import load_runs

    assert len(load_runs(path)) == len(runs)


def test_ceilings_probe_failure_keeps_profile(monkeypatch) -> None:
    from profiler.machine import cache
    from profiler.run import session

    def no_space(*a: object, **k: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache, "lookup", no_space)
    logged: list[str] = []
    runs = cpu_cold_warm(2)
    result = session.judge(runs, "auto", "cpu", logged.append)
    assert len(result.runs) == len(runs)
    assert any("No space left" in m and "without" in m for m in logged), logged


def test_ceilings_probe_user_error_keeps_profile(monkeypatch) -> None:
    from profiler.machine import cache
    from profiler.run import session

    def refuse(*a: object, **k: object) -> None:
        raise UserError(
            "not enough free space for the probe: 4.0 GiB + 0.25 GiB: "
            "free space or pass a smaller --size"
        )

    monkeypatch.setattr(cache, "lookup", refuse)
    logged: list[str] = []
    result = session.judge(cpu_cold_warm(1), "quick", "cpu", logged.append)
    assert len(result.runs) == 2
    assert not any("--size" in m for m in logged), "load has no --size option"


def test_report_charts_folder_blocked(cli, tmp_path: Path, records_file: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "r.md"
    (tmp_path / "r_files").write_text("in the way")
    assert_refused(cli("report", records_file, "-o", out), outputs=[out])
    assert (tmp_path / "r_files").read_text() == "in the way"


def test_report_written_whole(monkeypatch, tmp_path: Path) -> None:
    from profiler.render import report_files

    pytest.importorskip("matplotlib")
    out = tmp_path / "r.md"
    real = report_files.write_report

    def boom(*a: object, **k: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    import profiler.render.plots as plots

    monkeypatch.setattr(plots, "latency_figure", boom)  # drawn after the load chart
    with pytest.raises((UserError, OSError)):
        real(cpu_cold_warm(2), out, title="t", skipped=[])
    assert not out.exists()
    assert not (tmp_path / "r_files").exists() or list((tmp_path / "r_files").iterdir()) == []


def test_output_folder_vanishes_during_run(
    tiny_model: Path, case_tmp: Path, tmp_path: Path
) -> None:
    """The --json folder is replaced by a file while the run goes on: the save fails
    at the end, yet the tables are printed and the records land in a fallback file."""
    import os
    import time

    from profiler.records.io import load_runs
    from tests.adversarial.conftest import CliRun, assert_clean, processes_with, start_cli

    outdir = tmp_path / "results"
    outdir.mkdir()
    out = outdir / "run.json"
    args = ["load", str(tiny_model), "--no-native", "--no-decode", "--ceilings", "off"]
    proc, marker = start_cli([*args, "--json", str(out)], case_tmp)
    deadline = time.monotonic() + 60
    while len(processes_with(marker)) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.rmdir(outdir)
    outdir.write_text("now a file")
    stdout, stderr = proc.communicate(timeout=120)
    run = CliRun(proc.returncode, stdout, stderr, marker, case_tmp)
    assert run.code == 2, run.stderr
    assert "weight_read" in run.stdout, "the tables were not printed"
    line = next(x for x in run.lines if "instead" in x)
    fallback = Path(line.split(" saved to ")[1].split(" instead")[0])
    assert fallback.is_file() and len(load_runs(fallback)) == 1
    assert_clean(run)
