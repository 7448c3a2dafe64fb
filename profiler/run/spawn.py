"""Running one job in a fresh interpreter (or in this process) and reading its result.

The child is ``python -m profiler.run.child JOB OUT``; its stderr is relayed and its
last lines kept, so a crash, a kill or a timeout becomes :class:`ChildFailed` with
the exit status and the last error lines; exit code 2 (bad input) becomes a
UserError for the whole command.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from profiler.errors import UserError
from profiler.records.job import LoadJob


class ChildFailed(Exception):
    """A child that did not finish: its exit code (None when killed on timeout) and
    its last stderr lines."""

    def __init__(self, exit_code: int | None, tail: str) -> None:
        super().__init__(tail)
        self.exit_code = exit_code
        self.tail = tail


def _describe_exit(code: int) -> str:
    if code < 0:
        sig = signal.Signals(-code).name
        hint = " (out of memory? the kernel's OOM killer sends SIGKILL)" if sig == "SIGKILL" else ""
        return f"killed by {sig}{hint}"
    return f"exited with code {code}"


def end_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    """Signal a whole process group (a child and anything it started); gone is fine."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_child(proc: subprocess.Popen[bytes], grace_s: float = 2.0) -> None:
    """End a child started with ``start_new_session=True`` and its whole group:
    SIGTERM, ``grace_s`` to exit, then SIGKILL; reaped before returning."""
    if grace_s > 0 and proc.poll() is None:
        end_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    # Killed even when the child itself is gone: what it started may still run.
    end_group(proc.pid, signal.SIGKILL)
    proc.wait()


def run_child(
    job: LoadJob, env_extra: dict[str, str], timeout_s: float | None, relay: bool = True
) -> dict:
    """Run one job in a fresh interpreter; return its result document."""
    with tempfile.TemporaryDirectory(prefix="llmprof-job-") as tmp:
        job_path, out_path = Path(tmp, "job.json"), Path(tmp, "out.json")
        env = {
            **os.environ,
            **env_extra,
            "PYTHONUNBUFFERED": "1",
            "TRANSFORMERS_VERBOSITY": "error",
            "TOKENIZERS_PARALLELISM": "false",
        }
        spawn_ns = time.monotonic_ns()
        job = dataclasses.replace(job, spawn_ns=spawn_ns)
        job_path.write_text(json.dumps(job.to_dict()))
        proc = subprocess.Popen(
            [sys.executable, "-m", "profiler.run.child", str(job_path), str(out_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
        tail: collections.deque[str] = collections.deque(maxlen=20)

        def pump() -> None:
            assert proc.stderr is not None
            for raw in iter(proc.stderr.readline, b""):
                line = raw.decode(errors="replace")
                tail.append(line.rstrip("\n").split("\r")[-1])
                # libkineto announces every torch.profiler session on stderr ("USDT:
                # ... profiler_start"): noise, not a message for the user.
                if relay and not line.startswith(("llmprof: ", "USDT:")):
                    sys.stderr.write(line)
                    sys.stderr.flush()

        t = threading.Thread(target=pump, daemon=True)
        t.start()
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            stop_child(proc, grace_s=0)
            t.join(timeout=5)
            raise ChildFailed(
                None, f"timed out after {timeout_s:g} s and was killed\n" + "\n".join(tail)
            ) from None
        except BaseException:
            # Ctrl-C, SIGTERM or any error here: the child (in its own session, so a
            # terminal's Ctrl-C never reached it) must not outlive us.
            stop_child(proc)
            t.join(timeout=5)
            raise
        t.join(timeout=5)
        if code == 2:
            msg = next((x for x in reversed(tail) if x.startswith("llmprof: ")), None)
            raise UserError(msg[len("llmprof: ") :] if msg else "child reported bad input")
        if code != 0 or not out_path.is_file():
            raise ChildFailed(code, _describe_exit(code) + "\n" + "\n".join(tail))
        return json.loads(out_path.read_text())


def run_in_process(job: LoadJob) -> dict:
    """Run one job in this process (the warm-process case), failing like a child."""
    from profiler.run.child import run_job

    try:
        return run_job(job, in_process=True)
    except UserError:
        raise
    except Exception as e:  # one repetition failed; the others still count
        raise ChildFailed(1, f"{type(e).__name__}: {e}") from e
