"""The load tracer on real loads of tiny models: every tensor is seen, the model is
the one from_pretrained gives untraced, missing hook points degrade gracefully, and
the Chrome trace it renders passes the validator. Lazy imports are timed where they
happen (profiler/measure/imports.py), checked in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from profiler.analysis.timeline import attribute
from profiler.render.chrome_trace import chrome_trace, validate
from tests.support.tiny import make_tiny_model

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sharded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(
        tmp_path_factory.mktemp("m") / "llama", dtype="bfloat16", max_shard_size="100KB"
    )


def _traced_load(folder: Path, dtype: str = "float32"):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from profiler.measure.counters import CounterSampler
    from profiler.measure.load_trace import LoadTracer

    with LoadTracer(sampler=CounterSampler(0.002)) as tr:
        AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype))
    return tr.result(), model


def test_every_tensor_is_read_cast_and_attached_by_name(sharded: Path) -> None:
    from safetensors import safe_open

    keys = set()
    for f in sharded.glob("*.safetensors"):
        with safe_open(f, "pt") as h:
            keys |= set(h.keys())
    trace, _ = _traced_load(sharded, "float32")
    assert trace.missing_hooks == ()
    reads = {s.name for s in trace.spans if s.category == "read"}
    casts = [s for s in trace.spans if s.category == "cast"]
    assert reads == keys
    # bf16 on disk, float32 asked for: every floating tensor is cast, 2 → 4 bytes.
    assert {s.name for s in casts} == keys
    assert all(s.args["source_dtype"] == "bfloat16" for s in casts)
    assert all(s.args["target_dtype"] == "float32" for s in casts)
    read_bytes = {s.name: s.args["bytes"] for s in trace.spans if s.category == "read"}
    assert all(s.args["bytes"] == 2 * read_bytes[s.name] for s in casts)
    attached = {s.name for s in trace.spans if s.category == "attach"}
    assert keys <= attached
    opens = [s.name for s in trace.spans if s.category == "open"]
    assert sorted(opens) == sorted(f.name for f in sharded.glob("*.safetensors"))
    assert {s.category for s in trace.spans} >= {"init", "tokenizer", "config", "finalize"}


def test_no_cast_spans_when_the_dtype_matches(sharded: Path) -> None:
    trace, _ = _traced_load(sharded, "bfloat16")
    assert not [s for s in trace.spans if s.category == "cast"]


def test_traced_model_equals_untraced_and_hooks_are_removed(sharded: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM
    from transformers import core_model_loading as cml

    before = cml._materialize_copy
    _, traced = _traced_load(sharded, "float32")
    assert cml._materialize_copy is before
    plain = AutoModelForCausalLM.from_pretrained(sharded, dtype=torch.float32)
    a, b = traced.state_dict(), plain.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


def test_a_missing_hook_point_is_listed_and_the_load_completes(sharded, monkeypatch):
    from profiler.measure import hooks

    def absent(tr):
        from transformers import modeling_utils

        return modeling_utils.no_such_function_in_this_version  # AttributeError

    monkeypatch.setattr(hooks, "HOOK_POINTS", (*hooks.HOOK_POINTS, ("gone.hook", absent)))
    trace, model = _traced_load(sharded, "float32")
    assert trace.missing_hooks == ("gone.hook",)
    assert model is not None and any(s.category == "read" for s in trace.spans)


def test_another_materialize_signature_falls_back_to_whole_spans(sharded, monkeypatch):
    from transformers import core_model_loading as cml

    original = cml._materialize_copy

    def other_version(tensor, *rest, **kwargs):  # same work, another signature
        return original(tensor, *rest, **kwargs)

    monkeypatch.setattr(cml, "_materialize_copy", other_version)
    trace, _ = _traced_load(sharded, "float32")
    assert {s.category for s in trace.spans} & {"read", "cast"} == set()
    assert any(s.category == "materialize" and s.name for s in trace.spans)
    assert any("another signature" in n for n in trace.notes)


def test_phases_reconcile_with_the_traced_interval(sharded: Path) -> None:
    trace, _ = _traced_load(sharded, "float32")
    a = attribute(trace.spans, trace.start_ns, trace.end_ns)
    assert sum(p.seconds for p in a.phases) == pytest.approx(a.wall_s, rel=0.02)
    assert a.attributed_s > 0


def test_chrome_trace_of_a_real_load_is_valid(sharded: Path, tmp_path: Path) -> None:
    trace, _ = _traced_load(sharded, "float32")
    doc = chrome_trace(trace)
    assert validate(doc) == []
    # Round trip through JSON: what --trace writes is what a viewer reads.
    path = tmp_path / "t.json"
    path.write_text(json.dumps(doc))
    assert validate(json.loads(path.read_text())) == []
    names = {e["args"]["name"] for e in doc["traceEvents"] if e["name"] == "thread_name"}
    assert any(n.startswith("ThreadPoolExecutor") for n in names)
    counters = {e["name"] for e in doc["traceEvents"] if e["ph"] == "C"}
    assert {"RSS anonymous (MiB)", "RSS file-backed (MiB)"} <= counters


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        ({}, "traceEvents"),
        ({"traceEvents": [{"ph": "X", "name": "a", "ts": 0, "pid": 1, "tid": 1}]}, "dur"),
        ({"traceEvents": [{"ph": "X", "name": "a", "ts": -1, "dur": 1, "pid": 1, "tid": 1}]}, "ts"),
        ({"traceEvents": [{"ph": "B", "name": "a", "ts": 0, "pid": 1}]}, "phase"),
        (
            {"traceEvents": [{"ph": "C", "name": "c", "ts": 0, "pid": 1, "args": {"x": "1"}}]},
            "counter",
        ),
        (
            {"traceEvents": [{"ph": "M", "name": "colour", "pid": 1, "args": {"name": "x"}}]},
            "metadata",
        ),
        ({"traceEvents": [{"ph": "X", "name": "", "ts": 0, "dur": 1, "pid": 1, "tid": 1}]}, "name"),
    ],
)
def test_validator_rejects_what_viewers_cannot_read(doc, problem):
    problems = validate(doc)
    assert problems and problem in problems[0]


def test_lazy_imports_are_timed_where_they_happen(tmp_path: Path) -> None:
    pkg = tmp_path / "slowpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import time\ntime.sleep(0.05)\nfrom slowpkg import inner\n")
    (pkg / "inner.py").write_text("import time\ntime.sleep(0.1)\n")
    code = textwrap.dedent(
        f"""
        import json, sys, time
        sys.path[:0] = [{str(REPO)!r}, {str(tmp_path)!r}]
        from profiler.measure.imports import ImportTracker
        from profiler.analysis.timeline import import_time
        t = ImportTracker(); t.install()
        start = time.monotonic_ns()
        import slowpkg
        import slowpkg  # already imported: costs nothing, records nothing
        end = time.monotonic_ns()
        t.uninstall()
        spans = {{s.name: s for s in t.spans if s.name.startswith("slowpkg")}}
        it = import_time(t.spans, start, end)
        print(json.dumps({{
            "names": sorted(spans),
            "outer_self": spans["slowpkg"].args["self_ns"] / 1e9,
            "inner_self": spans["slowpkg.inner"].args["self_ns"] / 1e9,
            "inner_depth": spans["slowpkg.inner"].args["depth"],
            "import_s": it.seconds, "wall_s": (end - start) / 1e9, "modules": it.modules,
            "still_installed": any(type(f).__name__ == "_TimingFinder" for f in sys.meta_path),
        }}))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    got = json.loads(out.stdout)
    assert got["names"] == ["slowpkg", "slowpkg.inner"]
    assert got["inner_depth"] == 1
    assert got["inner_self"] >= 0.1
    assert 0.05 <= got["outer_self"] < 0.1  # its nested import is not its own time
    assert got["import_s"] <= got["wall_s"] and got["import_s"] >= 0.15
    assert got["still_installed"] is False
