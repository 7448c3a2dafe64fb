"""Interrupts clean up: SIGINT/SIGTERM stop the child's process group, remove the
temporary folders, write nothing partial, print one line, exit 130/143."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.adversarial.conftest import CliRun, assert_clean, kill_marked, processes_with, start_cli


def _start_and_wait(
    tiny_model: Path, case_tmp: Path, out: Path, *extra: str
) -> tuple[subprocess.Popen[str], str]:
    args = [
        "load",
        str(tiny_model),
        "--no-native",
        "--ceilings",
        "off",
        "--repeat",
        "5",
        "--new-tokens",
        "200",
        "--warm-calls",
        "20",
        "--json",
        str(out),
        *extra,
    ]
    proc, marker = start_cli(args, case_tmp)
    deadline = time.monotonic() + 60
    # Wait until the child exists: then the signal lands in the middle of a real run.
    while time.monotonic() < deadline:
        if len(processes_with(marker)) >= 2:
            break
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    time.sleep(0.5)
    return proc, marker


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_during_run(
    tiny_model: Path, case_tmp: Path, tmp_path: Path, sig: int, code: int
) -> None:
    out = tmp_path / "out.json"
    proc, marker = _start_and_wait(tiny_model, case_tmp, out)
    try:
        assert proc.poll() is None, proc.communicate()[1]
        os.kill(proc.pid, sig)
        stdout, stderr = proc.communicate(timeout=30)
        run = CliRun(proc.returncode, stdout, stderr, marker, case_tmp)
        assert run.code == code, run.stderr
        assert run.lines[-1].startswith("llmprof: interrupted") or "terminated" in run.lines[-1], (
            run.stderr
        )
        assert_clean(run, outputs=[out])
    finally:
        kill_marked(marker)


def test_sigint_to_whole_group(tiny_model: Path, case_tmp: Path, tmp_path: Path) -> None:
    # Ctrl-C on a terminal signals the foreground process group, not only llmprof.
    out = tmp_path / "out.json"
    proc, marker = _start_and_wait(tiny_model, case_tmp, out)
    try:
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
        run = CliRun(proc.returncode, stdout, stderr, marker, case_tmp)
        assert run.code == 130, run.stderr
        assert "Traceback" not in run.stderr
        assert_clean(run, outputs=[out])
    finally:
        kill_marked(marker)


def test_timed_out_child_group_ended(tiny_model: Path, case_tmp: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    args = [
        "load",
        str(tiny_model),
        "--no-native",
        "--ceilings",
        "off",
        "--timeout",
        "0.5",
        "--json",
        str(out),
    ]
    proc, marker = start_cli(args, case_tmp)
    try:
        stdout, stderr = proc.communicate(timeout=120)
        run = CliRun(proc.returncode, stdout, stderr, marker, case_tmp)
        assert run.code == 1, run.stderr  # a fault of the run: a failed repetition
        assert "timed out" in run.stderr
        assert "Traceback" not in run.stderr
        assert processes_with(marker) == []
        assert [p.name for p in case_tmp.iterdir() if p.name.startswith("llmprof-")] == []
    finally:
        kill_marked(marker)
