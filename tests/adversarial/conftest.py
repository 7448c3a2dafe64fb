"""Helpers of the adversarial suite: run the real CLI as a hostile user would, and
check that it failed (or succeeded) cleanly.

Every case runs ``python -m profiler`` in a subprocess with its own ``TMPDIR`` and a
marker in its environment, so the checks can see what a run left behind: a file at
the output path, a ``llmprof-*`` temporary folder, or a process (the CLI's child or
anything it started) still alive.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMP_PREFIX = "llmprof-"


@dataclass
class CliRun:
    """One finished CLI run and what it needs to be judged."""

    code: int
    stdout: str
    stderr: str
    marker: str
    tmpdir: Path

    @property
    def lines(self) -> list[str]:
        return [x for x in self.stderr.splitlines() if x.strip()]


def processes_with(marker: str) -> list[int]:
    """Pids of live processes whose environment holds ``marker`` (the CLI's descendants
    inherit it, whatever process group or session they moved to)."""
    found = []
    needle = f"LLMPROF_ADVERSARIAL={marker}".encode()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            env = (d / "environ").read_bytes()
            state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in env.split(b"\0") and state != "Z":
            found.append(int(d.name))
    return found


def stray_temp(tmpdir: Path) -> list[str]:
    """llmprof's temporary folders and files left in ``tmpdir``."""
    return sorted(p.name for p in tmpdir.iterdir() if p.name.startswith(TEMP_PREFIX))


def cli_env(tmpdir: Path, marker: str) -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "TMPDIR": str(tmpdir),
        "LLMPROF_ADVERSARIAL": marker,
        "HF_HUB_OFFLINE": "1",
        # The ceilings cache (and any other per-user cache) stays inside the case.
        "XDG_CACHE_HOME": str(tmpdir / "xdg-cache"),
        "LLMPROF_CACHE": str(tmpdir / "cache-home"),
    }
    return env


def start_cli(
    args: Sequence[str], tmpdir: Path, cwd: Path | None = None
) -> tuple[subprocess.Popen[str], str]:
    marker = uuid.uuid4().hex
    proc = subprocess.Popen(
        [sys.executable, "-m", "profiler", *map(str, args)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(tmpdir, marker),
        cwd=str(cwd or REPO_ROOT),
        start_new_session=True,
    )
    return proc, marker


def kill_marked(marker: str) -> None:
    """End every process a case left behind (so one failing case cannot leak)."""
    for pid in processes_with(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


@pytest.fixture
def case_tmp(tmp_path: Path) -> Path:
    """The TMPDIR of the CLI under test (separate from the files a case builds)."""
    d = tmp_path / "clitmp"
    d.mkdir()
    return d


@pytest.fixture
def cli(case_tmp: Path) -> Iterator[Callable[..., CliRun]]:
    """``cli(*args, timeout=60)`` runs llmprof and returns a :class:`CliRun`."""
    markers: list[str] = []

    def run(*args: Any, timeout: float = 120, cwd: Path | None = None) -> CliRun:
        proc, marker = start_cli([str(a) for a in args], case_tmp, cwd)
        markers.append(marker)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            pytest.fail(f"llmprof {' '.join(map(str, args))} hung for {timeout} s:\n{err}")
        return CliRun(proc.returncode, out, err, marker, case_tmp)

    yield run
    for m in markers:
        kill_marked(m)


def assert_clean(run: CliRun, *, outputs: Sequence[Path] = ()) -> None:
    """No traceback, no file at any output path, no stray temp, no process left."""
    assert "Traceback" not in run.stderr, run.stderr
    for out in outputs:
        assert not os.path.lexists(out), f"{out} was written: {run.stderr}"
    assert stray_temp(run.tmpdir) == [], run.stderr
    deadline = time.monotonic() + 5
    while processes_with(run.marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_with(run.marker) == [], "a process of the run is still alive"


def assert_refused(
    run: CliRun, *, code: int = 2, outputs: Sequence[Path] = (), says: str | None = None
) -> str:
    """Exit ``code`` with exactly one stderr line (returned), and nothing left behind."""
    assert run.code == code, f"exit {run.code}, wanted {code}:\n{run.stderr}"
    assert len(run.lines) == 1, f"wanted one stderr line, got:\n{run.stderr}"
    assert_clean(run, outputs=outputs)
    line = run.lines[0]
    assert line.startswith("llmprof: "), line
    if says is not None:
        assert says.lower() in line.lower(), line
    return line


# --- small models built on the fly ---------------------------------------------

TINY_CONFIG: dict[str, Any] = {
    "model_type": "llama",
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "vocab_size": 32,
    "max_position_embeddings": 64,
    "torch_dtype": "float32",
}


def write_safetensors(
    path: Path, header: Any, data: bytes, *, raw_header: bytes | None = None
) -> Path:
    """A safetensors file with exactly this header (any JSON, even a wrong one)."""
    blob = raw_header if raw_header is not None else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data)
    return path


def stub_model(
    folder: Path, config: Any = None, header: Any = None, data: bytes = bytes(8)
) -> Path:
    """A model folder with a config and one small safetensors file (no tokenizer)."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg = TINY_CONFIG if config is None else config
    (folder / "config.json").write_text(cfg if isinstance(cfg, str) else json.dumps(cfg))
    if header is None:
        header = {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
    write_safetensors(folder / "model.safetensors", header, data)
    return folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real tiny llama (random weights, real tokenizer), built once per session."""
    from tests.support.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("adv") / "tiny", dtype="float32", vocab_size=64)


@pytest.fixture(scope="session")
def records_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid llmprof results file (fixed numbers), to be broken by cases."""
    from profiler.records.io import save_runs
    from tests.support.fake_runs import cpu_cold_warm

    path = tmp_path_factory.mktemp("adv-rec") / "runs.json"
    save_runs(path, cpu_cold_warm(3))
    return path
