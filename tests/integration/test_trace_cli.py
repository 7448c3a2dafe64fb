"""`llmprof load --trace` as a real command, and the child's import tracking: a bad
trace path is refused before any work; a traced run writes a file the validator
accepts, leads its table with the native phases and shows imports apart; hooks wait
for the load to import transformers' loading modules instead of importing them."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from profiler.render.chrome_trace import validate
from tests.support.tiny import make_tiny_model

REPO = Path(__file__).resolve().parents[2]


def llmprof(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "profiler", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("where", ["file_as_folder", "folder"])
def test_unwritable_trace_path_is_one_line_and_exit_2(tmp_path: Path, where: str) -> None:
    blocker = tmp_path / "plain_file"
    blocker.write_text("x")
    path = blocker / "t.json" if where == "file_as_folder" else tmp_path
    # A model that does not exist: the trace path must be refused before it is looked at.
    got = llmprof("load", tmp_path / "no_such_model", "--trace", path, timeout=60)
    assert got.returncode == 2
    lines = got.stderr.strip().splitlines()
    assert len(lines) == 1 and "--trace" in lines[0] and "Traceback" not in got.stderr


def test_trace_needs_the_native_view(tmp_path: Path) -> None:
    got = llmprof("load", "x", "--no-native", "--trace", tmp_path / "t.json", timeout=60)
    assert got.returncode == 2 and "--no-native" in got.stderr


def test_traced_load_writes_a_valid_file_and_leads_with_native_phases(tmp_path: Path) -> None:
    model = make_tiny_model(tmp_path / "llama", dtype="bfloat16", max_shard_size="100KB")
    trace, record = tmp_path / "out" / "trace.json", tmp_path / "run.json"
    got = llmprof(
        "load", model, "--no-decode", "--ceilings", "off", "--trace", trace, "--json", record
    )
    assert got.returncode == 0, got.stderr
    doc = json.loads(trace.read_text())
    assert validate(doc) == []
    cats = {e.get("cat") for e in doc["traceEvents"] if e["ph"] == "X"}
    assert {"read", "attach", "init", "import", "stage"} <= cats
    out = got.stdout
    assert out.index("native from_pretrained, traced") < out.index("load stages")
    assert "lazy imports apart (native): tokenizer" in out
    assert "import stage by package: torch" in out
    run = json.loads(record.read_text())["runs"][0]
    stages = {s["name"]: s for s in run["stages"]}
    # A fresh process imports torch in the import stage: nearly all of it is imports.
    imp = stages["import"]
    assert imp["import_modules"] > 100 and imp["import_s"] > 0.9 * imp["duration_s"]
    assert "torch" in imp["import_packages"]
    # The native trace's phases cover the native calls' total (the 2% reconciliation).
    from profiler.analysis.native_trace import native_attribution
    from profiler.records.run import NativeView

    view = NativeView.from_dict(run["native"])
    a = native_attribution(view)
    assert a is not None and view.trace is not None and view.trace.missing_hooks == ()
    assert sum(p.seconds for p in a.phases) == pytest.approx(view.total_s, rel=0.02)


def test_hooks_wait_for_the_load_to_import_their_modules() -> None:
    code = textwrap.dedent(
        f"""
        import json, sys
        sys.path.insert(0, {str(REPO)!r})
        from profiler.measure.imports import ImportTracker
        from profiler.measure.load_trace import LoadTracer
        tracker = ImportTracker(); tracker.install()
        import transformers
        with LoadTracer(imports=tracker) as tr:
            before = "transformers.modeling_utils" in sys.modules
            pending = len(tr.pending)
            from transformers import modeling_utils
            installed = list(tr.hooks)
        from transformers import modeling_utils as mu
        print(json.dumps({{"before": before, "pending": pending, "installed": installed,
                          "restored": mu.safe_open.__name__ != "wrapper",
                          "missing": tr.missing}}))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["before"] is False and got["pending"] >= 6
    assert "modeling_utils.safe_open" in got["installed"]
    assert "core_model_loading._materialize_copy" in got["installed"]
    assert got["restored"] is True
    # The tokenizer modules were never imported inside the block: listed, not crashed.
    assert "tokenization_utils_tokenizers.TokenizerFast" in got["missing"]
