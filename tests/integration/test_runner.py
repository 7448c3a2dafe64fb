"""The subprocess protocol: fresh processes, verified cache states, failures per repetition."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from profiler.caches.page import COLD_MAX_FRACTION, WARM_MIN_FRACTION
from profiler.records.job import DecodeSpec
from profiler.run.repetitions import profile
from profiler.run.request import ProfileRequest
from tests.support.tiny import make_tiny_model

NO_DECODE = DecodeSpec(enabled=False)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("m") / "tiny", arch="llama", dtype="float32")


def test_fresh_processes_interleaved_cold_warm_verified(tiny):
    runs = profile(
        ProfileRequest(
            spec=str(tiny), repeat=1, page_states=("cold", "warm"), native=True, decode=NO_DECODE
        )
    )
    assert [r.cache.page for r in runs] == ["cold", "warm"]
    assert runs[0].run_id != runs[1].run_id
    for r in runs:
        assert r.status == "ok" and r.cache.process == "fresh"
        names = [s.name for s in r.stages]
        assert names[:3] == ["python_start", "import", "cuda_init"]
        assert "torch" in r.stage("import").counters  # each child paid its own import
        assert r.stage("cuda_init").status == "skipped"
        assert r.stage("hub_download").status == "skipped"
        frac = r.cache.page_resident_fraction_before
        assert frac is not None
        if r.cache.page == "warm":
            assert r.cache.page_verified and frac >= WARM_MIN_FRACTION
        else:
            # Whatever this filesystem did with the eviction, the label is what was
            # measured: cold only when at most COLD_MAX_FRACTION stayed resident.
            assert r.cache.page_verified == (frac <= COLD_MAX_FRACTION)
            assert r.cache.label == ("cold" if r.cache.page_verified else "not-cold")
        # The measurement is said in the run's notes (it was computed and dropped).
        said = "" if r.cache.page_verified else "not "
        assert any(n.startswith(f"{said}{r.cache.page}: {frac * 100:.1f}% of ") for n in r.notes), (
            r.notes
        )
        assert r.native is not None and r.native.total_s > 0
        assert [s.name for s in r.native.stages] == [
            "tokenizer",
            "from_pretrained",
            "to_device",
            "eval",
        ]
        # the staged view read every byte of the checkpoint
        assert r.stage("weight_read").bytes == r.model.weight_bytes


def test_killed_and_crashed_repetitions_are_reported_and_the_others_count(tiny, monkeypatch):
    monkeypatch.setenv("LLMPROF_INJECT_FAULT", "kill@0,raise@1")
    runs = profile(ProfileRequest(spec=str(tiny), repeat=3, native=False, decode=NO_DECODE))
    assert [r.status for r in runs] == ["failed", "failed", "ok"]
    killed, crashed = runs[0], runs[1]
    assert killed.exit_code == -9 and "SIGKILL" in killed.error
    assert "out of memory" in killed.error
    assert crashed.exit_code == 1 and "injected failure" in crashed.error
    assert [r.repetition for r in runs] == [0, 1, 2]


def test_a_hanging_repetition_times_out(tiny, monkeypatch):
    monkeypatch.setenv("LLMPROF_INJECT_FAULT", "hang@0")
    runs = profile(
        ProfileRequest(spec=str(tiny), repeat=1, native=False, decode=NO_DECODE, timeout_s=3)
    )
    assert runs[0].status == "failed" and "timed out after 3 s" in runs[0].error


def test_in_process_repetitions_share_imports(tiny):
    runs = profile(
        ProfileRequest(spec=str(tiny), repeat=2, native=False, decode=NO_DECODE, in_process=True)
    )
    assert all(r.cache.process == "in-process" for r in runs)
    assert runs[1].stage("import").duration_s < 0.05  # already imported: nothing to pay
    assert "python_start" not in [s.name for s in runs[0].stages]


def _cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "profiler", *args], capture_output=True, text=True, env=env
    )


def test_load_cli_prints_table_and_writes_json(tiny, tmp_path):
    out = tmp_path / "runs.json"
    p = _cli(
        "load",
        str(tiny),
        "--json",
        str(out),
        "--new-tokens",
        "4",
        "--warm-calls",
        "1",
        "--ceilings",
        "off",
    )
    assert p.returncode == 0, p.stderr
    assert "weight_read" in p.stdout and "Traceback" not in p.stderr
    doc = json.loads(out.read_text())
    assert doc["kind"] == "llmprof.runs" and len(doc["runs"]) == 1
    run = doc["runs"][0]
    assert run["model"]["weight_bytes"] == (tiny / "model.safetensors").stat().st_size
    assert run["native"]["total_s"] > 0 and run["decode"]


BAD_INPUTS = {
    "unknown dtype": (["--dtype", "float8"], "unknown dtype"),
    "cuda without gpu": (["--device", "cuda"], "no CUDA GPU"),
    "bad device": (["--device", "tpu"], "unknown device"),
    "zero batch": (["--batch", "0"], "at least 1"),
    "negative tokens": (["--new-tokens", "-3"], "use 2 or more"),
    "one token": (["--new-tokens", "1"], "use 2 or more"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_options_give_one_line_and_exit_2(tiny, tmp_path, case):
    if case == "cuda without gpu":
        import torch

        if torch.cuda.is_available():
            pytest.skip("a GPU is present")
    extra, message = BAD_INPUTS[case]
    out = tmp_path / "o.json"
    p = _cli("load", str(tiny), "--json", str(out), "--ceilings", "off", *extra)
    assert p.returncode == 2
    lines = [x for x in p.stderr.splitlines() if x.startswith("llmprof: ") and message in x]
    assert lines, p.stderr
    assert "Traceback" not in p.stderr and not out.exists()


def test_bad_model_folders(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    p = _cli("load", str(empty), "--ceilings", "off")
    assert p.returncode == 2 and "has no model weights" in p.stderr and "Traceback" not in p.stderr

    for name, damage in (
        ("truncated", lambda b: b[:-100]),
        ("badheader", lambda b: b"\xff" * 8 + b[8:]),
    ):
        folder = make_tiny_model(tmp_path / name, arch="llama", dtype="float32")
        f = folder / "model.safetensors"
        f.write_bytes(damage(f.read_bytes()))
        out = tmp_path / f"{name}.json"
        p = _cli("load", str(folder), "--json", str(out), "--ceilings", "off")
        assert p.returncode == 2, p.stderr
        assert "safetensors" in p.stderr and "Traceback" not in p.stderr
        assert not out.exists()

    p = _cli("load", str(tmp_path / "does" / "not" / "exist"), "--ceilings", "off")
    assert p.returncode == 2 and "Traceback" not in p.stderr
