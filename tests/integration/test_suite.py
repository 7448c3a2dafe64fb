"""Suite files: parsing (``profiler.run.suite.load_suite``) and ``llmprof suite`` end to end.

The parsing tests write small TOML files and check what they expand to; the CLI
test runs a one-repetition suite on a tiny local model in subprocesses, as CI
does, and reads the results back the way ``llmprof compare`` will.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from profiler.errors import UserError
from profiler.run.suite import filter_requests, load_suite, result_name

ROOT = Path(__file__).resolve().parents[2]


def write_suite(folder: Path, text: str, name: str = "s.toml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


# ----------------------------------------------------------------------- parsing


def test_dtype_and_device_lists_expand_to_every_pair_in_order(tmp_path: Path) -> None:
    path = write_suite(
        tmp_path,
        """
[suite]
name = "matrix"
repeat = 4

[[profile]]
model = "synthetic:tiny"
dtype = ["float32", "bfloat16"]
device = ["cpu", "cuda:1"]
cache = ["cold", "warm"]
batch = [1, 8]
new_tokens = 7
""",
    )
    suite = load_suite(path)
    assert suite.name == "matrix"
    assert suite.path == path
    pairs = [(r.dtype, r.device) for r in suite.requests]
    assert pairs == [
        ("float32", "cpu"),
        ("float32", "cuda:1"),
        ("bfloat16", "cpu"),
        ("bfloat16", "cuda:1"),
    ]
    for r in suite.requests:
        # Everything but dtype and device is shared by the expanded requests.
        assert r.spec == "synthetic:tiny"
        assert r.repeat == 4
        assert r.page_states == ("cold", "warm")
        assert r.decode.batch_sizes == (1, 8)
        assert r.decode.new_tokens == 7
        assert r.suite == "matrix"


def test_defaults_fill_what_a_profile_leaves_out(tmp_path: Path) -> None:
    # No [suite] table: the name is the file's stem and repeat defaults to 3.
    path = write_suite(tmp_path, '[[profile]]\nmodel = "m"\n', name="nightly.toml")
    (req,) = load_suite(path).requests
    assert load_suite(path).name == "nightly"
    assert req.suite == "nightly"
    assert (req.dtype, req.device, req.repeat) == ("auto", "cpu", 3)
    assert req.page_states == ("uncontrolled",)
    assert req.hub_state == "user"
    assert req.native is True and req.native_device_map is False
    assert req.in_process is False
    assert req.timeout_s is None
    assert req.fmt == "safetensors"
    assert req.decode.enabled is True
    assert req.decode.batch_sizes == (1,)
    assert req.decode.new_tokens == 32
    assert req.decode.temperature == 0.0
    assert req.decode.warm_calls == 3


def test_profile_values_override_suite_defaults(tmp_path: Path) -> None:
    path = write_suite(
        tmp_path,
        """
[suite]
repeat = 5
[[profile]]
model = "a"
[[profile]]
model = "b"
repeat = 2
decode = false
native = false
timeout = 30
""",
    )
    a, b = load_suite(path).requests
    assert a.repeat == 5
    assert (b.repeat, b.decode.enabled, b.native, b.timeout_s) == (2, False, False, 30)


def test_unknown_key_is_a_user_error_naming_file_profile_and_key(tmp_path: Path) -> None:
    path = write_suite(
        tmp_path, '[[profile]]\nmodel = "a"\n[[profile]]\nmodel = "b"\nbatch_size = 4\n'
    )
    with pytest.raises(UserError) as e:
        load_suite(path)
    msg = str(e.value)
    assert str(path) in msg
    assert "profile 2" in msg
    assert "batch_size" in msg
    assert "batch" in msg.split("known:")[1]  # the fix: the keys that do exist
    assert "\n" not in msg


def test_missing_model_is_a_user_error_naming_the_file(tmp_path: Path) -> None:
    path = write_suite(tmp_path, '[[profile]]\ndtype = "float32"\n')
    with pytest.raises(UserError, match="missing 'model'") as e:
        load_suite(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[suite]\nname = "x"\n', "no [[profile]] entries"),
        ("[[profile]\nmodel = 1\n", "not valid TOML"),
        ('[[profile]]\nmodel = "a"\ndtype = []\n', "'dtype' is an empty list"),
    ],
)
def test_bad_files_are_user_errors_naming_the_file(tmp_path: Path, text: str, needle: str) -> None:
    path = write_suite(tmp_path, text)
    with pytest.raises(UserError) as e:
        load_suite(path)
    assert needle in str(e.value)
    assert str(path) in str(e.value)


def test_missing_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot read suite file"):
        load_suite(tmp_path / "absent.toml")


def test_result_names_are_unique_and_safe_for_a_file_system(tmp_path: Path) -> None:
    path = write_suite(
        tmp_path,
        """
[[profile]]
model = "Qwen/Qwen2-0.5B"
dtype = ["float32", "bfloat16", "float16"]
device = ["cpu", "cuda", "cuda:1"]
[[profile]]
model = "synthetic:tiny"
dtype = ["float32", "bfloat16"]
device = ["cpu", "cuda"]
""",
    )
    requests = load_suite(path).requests
    names = [result_name(r) for r in requests]
    assert len(requests) == 9 + 4
    assert len(set(names)) == len(names)
    for n in names:
        assert n.endswith(".json")
        assert "/" not in n and ":" not in n
    assert any(n.startswith("Qwen_Qwen2-0.5B__cuda1__bfloat16__") for n in names)


def test_result_names_differ_for_profiles_differing_in_other_settings(tmp_path: Path) -> None:
    path = write_suite(
        tmp_path,
        '[[profile]]\nmodel = "m"\ncache = "cold"\n[[profile]]\nmodel = "m"\ncache = "warm"\n',
    )
    a, b = load_suite(path).requests
    assert result_name(a) != result_name(b)


def test_filter_requests_keeps_profiles_whose_model_contains_the_text(tmp_path: Path) -> None:
    path = write_suite(
        tmp_path, '[[profile]]\nmodel = "synthetic:tiny"\n[[profile]]\nmodel = "smollm2-135m"\n'
    )
    requests = load_suite(path).requests
    assert [r.spec for r in filter_requests(requests, "tiny")] == ["synthetic:tiny"]
    assert filter_requests(requests, None) == list(requests)
    assert filter_requests(requests, "nothing") == []


def test_shipped_suites_parse() -> None:
    smoke = load_suite(ROOT / "suites" / "smoke.toml")
    assert smoke.name == "smoke"
    (req,) = smoke.requests
    # 5 vs 5 is the smallest size whose Mann-Whitney p can go below alpha 0.01.
    assert req.repeat >= 5
    assert req.device == "cpu"
    gpu = load_suite(ROOT / "suites" / "gpu.toml")
    assert {r.spec for r in gpu.requests} == {"synthetic:qwen2-0.5b", "synthetic:qwen2-7b"}
    for r in gpu.requests:
        assert (r.device, r.dtype, r.repeat) == ("cuda", "bfloat16", 3)
        assert set(r.page_states) == {"cold", "warm"}
        assert r.decode.batch_sizes == (1, 16)


# ---------------------------------------------------------------------------- CLI


def test_cli_suite_writes_results_that_load_back_with_every_stage(tmp_path: Path) -> None:
    from profiler.analysis.metrics import metrics_from_runs, run_prefix
    from profiler.records.io import load_runs
    from tests.support.tiny import make_tiny_model

    model = make_tiny_model(tmp_path / "tiny", arch="llama", dtype="float32")
    suite = write_suite(
        tmp_path,
        f"""
[suite]
name = "cli-test"
[[profile]]
model = "{model}"
dtype = "float32"
device = "cpu"
cache = "warm"
repeat = 1
decode = false
""",
    )
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "profiler.cli", "suite", str(suite), "-o", str(out), "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout == ""  # --quiet: no tables
    (req,) = load_suite(suite).requests
    path = out / result_name(req)
    assert f"wrote {path}" in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == [path.name]  # no temporary leftovers

    runs = load_runs(path)
    assert len(runs) == 1
    (run,) = runs
    assert run.status == "ok", run.error
    assert run.suite == "cli-test"
    assert run.cache.page == "warm"
    assert run.decode == ()
    assert run.native is not None

    ok = [s.name for s in run.stages if s.status == "ok"]
    # The stages every load of a safetensors checkpoint on a CPU goes through.
    for stage in ("tokenizer", "config", "model_init", "weight_read", "attach", "eval"):
        assert stage in ok
    metrics = metrics_from_runs(runs)
    prefix = run_prefix(run)
    assert prefix.endswith("/cpu/float32/warm")
    for s in run.stages:
        if s.status != "ok":
            continue
        m = metrics[f"{prefix}/load.{s.name}_s"]
        assert m.unit == "s" and m.direction == "lower"
        assert m.samples == (pytest.approx(s.duration_s),)
    assert metrics[f"{prefix}/load.staged_total_s"].samples == (pytest.approx(run.staged_total_s),)
    assert metrics[f"{prefix}/load.native_total_s"].samples == (pytest.approx(run.native.total_s),)
    assert not any(".decode." in name or "/decode." in name for name in metrics)


@pytest.mark.parametrize(
    "body,message",
    [
        ('[[profile]]\nmodel = "m"\nrepeat = "five"\n', "bad value"),
        ('[suite]\nrepeats = 5\n[[profile]]\nmodel = "m"\n', "unknown key"),
        ('[[profile]]\nmodel = "m"\ncache = "hot"\n', "cache 'hot'"),
        ('[[profile]]\nmodel = "m"\nbatch = [0]\n', "at least 1"),
    ],
)
def test_bad_suite_values_are_one_line_errors(tmp_path: Path, body: str, message: str) -> None:
    path = write_suite(tmp_path, body)
    with pytest.raises(UserError, match=message) as e:
        load_suite(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)
