"""Bad input for several-device loads: one line on stderr naming the problem and the
fix, exit status 2, no traceback, and no work done (no model built, no file written)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from profiler.errors import UserError
from profiler.run.ranks import check_tp_request, torchrun_env
from profiler.run.request import ProfileRequest

REPO = Path(__file__).resolve().parents[2]


def _llmprof(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    e = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    e["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), e.get("PYTHONPATH", "")) if p)
    e.update(env)
    return subprocess.run(
        [sys.executable, "-m", "profiler", *args],
        env=e,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


CASES = [
    (["--device-map", "{oops"], "not valid JSON"),
    (["--device-map", '{"": "tpu"}'], "unknown device 'tpu'"),
    (["--device-map", '{"model": 7}'], "name GPU 7"),
    (["--device-map", "no-such-map.json"], "existing JSON file"),
    (["--device-map", "[0, 1]"], "existing JSON file"),
    (["--device-map", "auto", "--max-memory", "0=70XB"], "not a size"),
    (["--device-map", "auto", "--max-memory", "70GiB"], "DEVICE=SIZE"),
    (["--device-map", "auto", "--max-memory", "disk=1GB"], "disk has no memory budget"),
    (["--max-memory", "cpu=1GB"], "needs --device-map MAP"),
    (["--device-map", "auto", "--repeat", "3"], "profiles one load"),
    (["--tp"], "needs torchrun"),
    (["--tp", "--device-map", "auto"], "drop --variants, --device-map"),
]


@pytest.mark.parametrize(("args", "says"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_several_device_input_is_one_line_exit_2(
    args: list[str], says: str, tmp_path: Path
) -> None:
    out = tmp_path / "r.json"
    proc = _llmprof(["load", "synthetic:no-such-preset-built", *args, "--json", str(out)])
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in proc.stderr
    assert not out.exists()


def test_tp_refuses_several_cache_states_and_repeats_under_torchrun(tmp_path: Path) -> None:
    torchrun = {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}
    proc = _llmprof(["load", "synthetic:tiny", "--tp", "--page", "cold,warm"], **torchrun)
    assert proc.returncode == 2 and "once with --page cold" in proc.stderr
    proc = _llmprof(["load", "synthetic:tiny", "--tp", "--repeat", "2"], **torchrun)
    assert proc.returncode == 2 and "one repetition per torchrun" in proc.stderr


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"RANK": "x", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}, "whole numbers"),
        ({"RANK": "2", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}, "out of range"),
        ({"RANK": "0", "WORLD_SIZE": "0", "LOCAL_RANK": "0"}, "out of range"),
    ],
)
def test_broken_torchrun_variables_are_refused(env: dict[str, str], says: str) -> None:
    with pytest.raises(UserError, match=says):
        torchrun_env(env)


def test_partial_torchrun_variables_mean_no_torchrun() -> None:
    assert torchrun_env({"RANK": "0"}) is None
    with pytest.raises(UserError, match="needs torchrun"):
        check_tp_request(ProfileRequest(spec="x"), None)
    env = torchrun_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
    assert env is not None and env.device("cuda") == "cuda:1" and env.device("cpu") == "cpu"
