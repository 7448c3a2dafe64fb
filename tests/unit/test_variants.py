"""`llmprof load --variants`: which ways of loading are planned, how each is recorded,
how they are ranked and shown. Children are replaced by a fake that answers as the
real child does, so a GPU request can be exercised on a CPU machine."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from profiler.analysis.grouping import group_runs, machine_id
from profiler.analysis.ranking import rank_variants
from profiler.analysis.summaries import summarize_runs
from profiler.records.job import DecodeSpec, LoadJob
from profiler.records.run import CacheState, NativeView, RunRecord
from profiler.records.stage import StageRecord
from profiler.render.variants import render_variants
from profiler.run import variants as variants_mod
from profiler.run.request import ProfileRequest
from profiler.run.spawn import ChildFailed
from profiler.run.variants import plan_variants, profile_variants
from tests.support import fake_runs as fr
from tests.support.tiny import write_stub_model

GPU_ENV = fr.gpu_environment()
# Load totals (seconds) the fake child reports, by (view, pinned).
TOTALS = {
    ("native", False): 3.0,
    ("native-device-map", False): 2.4,
    ("staged", False): 4.0,
    ("fast", False): 1.5,
}


def request(folder: Path, device: str = "cpu", dtype: str = "bfloat16") -> ProfileRequest:
    return ProfileRequest(
        spec=str(folder),
        dtype=dtype,
        device=device,
        page_states=("warm",),
        decode=DecodeSpec(enabled=False),
    )


# ------------------------------------------------------------------- planning


def test_cpu_plan_with_a_cast_to_measure(tmp_path: Path) -> None:
    folder = write_stub_model(tmp_path / "m", "F32")
    plan = plan_variants(request(folder, "cpu", "bfloat16"), folder, "float32")
    assert [(v.name, v.view, v.dtype) for v in plan] == [
        ("from_pretrained + .to()", "native", "bfloat16"),
        ("from_pretrained at storage dtype (float32)", "native", "float32"),
        ("llmprof staged", "staged", "bfloat16"),
        ("llmprof fast path", "fast", "bfloat16"),
    ]
    assert not any(v.pinned for v in plan)  # pinned memory only helps a GPU copy


def test_cuda_plan_adds_device_map_and_pinned_staging(tmp_path: Path) -> None:
    folder = write_stub_model(tmp_path / "m")
    plan = plan_variants(request(folder, "cuda:0", "bfloat16"), folder, "bfloat16")
    assert [(v.name, v.view, v.pinned) for v in plan] == [
        ("from_pretrained + .to()", "native", False),
        ("from_pretrained(device_map)", "native-device-map", False),
        ("llmprof staged", "staged", False),
        ("llmprof staged, pinned", "staged", True),
        ("llmprof fast path", "fast", False),
    ]


@pytest.mark.parametrize(("requested", "stored"), [("auto", "float32"), ("float32", "float32")])
def test_no_storage_dtype_variant_without_a_cast(
    tmp_path: Path, requested: str, stored: str
) -> None:
    folder = write_stub_model(tmp_path / "m", "F32")
    names = [v.name for v in plan_variants(request(folder, "cpu", requested), folder, stored)]
    assert not any("storage dtype" in n for n in names)


def test_bin_twin_beside_the_folder_is_a_variant(tmp_path: Path) -> None:
    folder = write_stub_model(tmp_path / "m", bin_twin=True)
    plan = plan_variants(request(folder), folder, "bfloat16")
    (twin,) = [v for v in plan if v.folder is not None]
    assert twin.name == "from_pretrained, pytorch_model.bin"
    assert twin.folder == tmp_path / "m-bin" and twin.view == "native"


def test_bin_inside_the_folder_is_not_a_variant(tmp_path: Path) -> None:
    # transformers prefers safetensors when both sit in one folder: the .bin never loads.
    folder = write_stub_model(tmp_path / "m", both_formats=True)
    assert all(v.folder is None for v in plan_variants(request(folder), folder, "bfloat16"))


# ----------------------------------------------------------------- profiling


def fake_child(fail: tuple[str, bool] | None = None) -> Callable[..., dict]:
    """A stand-in for run_child answering like the real child on a GPU machine."""

    def run_child(job: LoadJob, env: dict[str, str], timeout_s: float | None) -> dict:
        if (job.view, job.pinned) == fail:
            raise ChildFailed(1, "exited with code 1\nRuntimeError: CUDA out of memory")
        seconds = TOTALS.get((job.view, job.pinned), 5.0)
        stage = StageRecord("from_pretrained", "ok", 0, int(seconds * 1e9))
        if job.view.startswith("native"):
            nv = NativeView(stages=(stage,), load_kwargs={"dtype": job.dtype})
            return {"native": nv.to_dict(), "environment": GPU_ENV.to_dict()}
        run = RunRecord(
            model=job.model,
            device=job.device,
            dtype_requested=job.dtype,
            dtype_resolved=job.dtype,
            cache=job.cache,
            environment=GPU_ENV,
            stages=(dataclasses.replace(stage, name="weight_read"),),
        )
        return {"run": run.to_dict()}

    return run_child


@pytest.fixture
def gpu_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[RunRecord]:
    folder = write_stub_model(tmp_path / "m")
    monkeypatch.setattr(variants_mod, "run_child", fake_child(fail=("staged", True)))
    return profile_variants(request(folder, "cuda:0", "bfloat16"))


def test_every_variant_is_on_the_machine_its_child_measured(gpu_runs: list[RunRecord]) -> None:
    # from_pretrained variants and failed ones used to be fingerprinted as "cpu" in
    # the parent: a machine without the GPU, next to the H100 of the staged ones.
    assert len(gpu_runs) == 5
    assert {machine_id(r.environment) for r in gpu_runs} == {machine_id(GPU_ENV)}
    assert {r.environment.gpu_name for r in gpu_runs} == {"NVIDIA H100 80GB HBM3"}


def test_a_failed_variant_stays_in_its_own_variant_and_dtype(gpu_runs: list[RunRecord]) -> None:
    (failed,) = [r for r in gpu_runs if r.status != "ok"]
    assert failed.variant == "llmprof staged, pinned"
    assert (failed.dtype_requested, failed.dtype_resolved) == ("bfloat16", "bfloat16")
    assert "CUDA out of memory" in (failed.error or "")
    keys = {(g.key.variant, g.key.dtype) for g in group_runs(gpu_runs)}
    assert ("llmprof staged, pinned", "bfloat16") in keys and len(keys) == 5


def test_variant_runs_keep_the_page_note_and_end_with_their_description(
    gpu_runs: list[RunRecord],
) -> None:
    for r in gpu_runs:
        assert any(n.startswith(("warm: ", "not warm: ")) for n in r.notes), r.notes
    descriptions = {r.variant: r.notes[-1] for r in gpu_runs}
    assert descriptions["from_pretrained + .to()"] == "the tutorial way: load on CPU, then move"
    assert descriptions["llmprof staged, pinned"] == "explicit stages, pinned staging buffers"


def test_a_from_pretrained_variant_is_not_compared_with_itself(gpu_runs: list[RunRecord]) -> None:
    by_variant = {g.key.variant: g for g in summarize_runs(gpu_runs)}
    native = by_variant["from_pretrained + .to()"]
    assert native.load_total is not None and native.load_total.median == pytest.approx(3.0)
    assert native.native_total is None  # its stages are its native view


# ------------------------------------------------------------ ranking, table


def test_ranking_orders_by_median_and_keeps_failed_variants(gpu_runs: list[RunRecord]) -> None:
    (rows,) = rank_variants(gpu_runs).values()
    assert [(r.variant, r.total.median if r.total else None) for r in rows] == [
        ("llmprof fast path", pytest.approx(1.5)),
        ("from_pretrained(device_map)", pytest.approx(2.4)),
        ("from_pretrained + .to()", pytest.approx(3.0)),
        ("llmprof staged", pytest.approx(4.0)),
        ("llmprof staged, pinned", None),
    ]
    # against the first variant planned (the tutorial way, 3.0 s)
    assert [r.speedup for r in rows] == [
        pytest.approx(2.0),
        pytest.approx(1.25),
        pytest.approx(1.0),
        pytest.approx(0.75),
        None,
    ]
    assert [(r.n_runs, r.failed) for r in rows] == [(1, 0)] * 4 + [(1, 1)]


def _variant_run(variant: str, seconds: float, rep: int, status: str = "ok") -> RunRecord:
    stages = (StageRecord("from_pretrained", "ok", 0, int(seconds * 1e9)),)
    return RunRecord(
        model=fr.model_info(),
        device="cpu",
        dtype_requested="bfloat16",
        dtype_resolved="bfloat16",
        cache=CacheState(page="cold", page_verified=True),
        environment=fr.cpu_environment(),
        repetition=rep,
        stages=stages if status == "ok" else (),
        status=status,
        variant=variant,
        notes=(f"how {variant}",),
    )


def test_ranking_medians_over_repetitions_and_partial_failures() -> None:
    runs = [
        _variant_run("tutorial", 2.0, 0),
        _variant_run("tutorial", 4.0, 1),
        _variant_run("tutorial", 3.0, 2),
        _variant_run("fast", 1.0, 0),
        _variant_run("fast", 9.0, 1, status="failed"),
        _variant_run("fast", 1.2, 2),
    ]
    (rows,) = rank_variants(runs).values()
    fast, tutorial = rows
    assert fast.variant == "fast" and fast.total is not None
    assert fast.total.median == pytest.approx(1.1)  # the failed 9.0 s is left out
    assert (fast.n_runs, fast.failed, fast.n_ok) == (3, 1, 2)
    assert fast.speedup == pytest.approx(3.0 / 1.1)
    assert tutorial.total is not None and tutorial.total.spread == pytest.approx(1.0)
    assert fast.description == "how fast"


def test_without_the_tutorial_run_there_is_no_speed_up() -> None:
    runs = [_variant_run("tutorial", 0, 0, status="failed"), _variant_run("fast", 1.0, 0)]
    (rows,) = rank_variants(runs).values()
    assert [(r.variant, r.speedup) for r in rows] == [("fast", None), ("tutorial", None)]


def test_variants_table_shows_ranks_totals_and_failures(gpu_runs: list[RunRecord]) -> None:
    text = render_variants(gpu_runs)
    lines = text.splitlines()
    assert lines[0] == "Ways of loading, page cache warm (load total: tokenizer → eval)"
    header = lines[1].split()
    assert header[:4] == ["#", "variant", "load", "(ms)"]
    names = [r.variant for r in gpu_runs]
    rows = {n: next(line for line in lines[3:] if f" {n}  " in line) for n in names}
    fast = rows["llmprof fast path"]
    assert fast.split()[0] == "1" and "1,500" in fast and "2.0×" in fast
    assert "1.0×" in rows["from_pretrained + .to()"]
    failed = rows["llmprof staged, pinned"]
    assert failed.split()[0] == "–" and " failed " in failed and "0/1" in failed
    assert failed.rstrip().endswith("explicit stages, pinned staging buffers")


def test_variants_table_in_markdown_and_when_nothing_ran() -> None:
    md = render_variants([_variant_run("a", 1.0, 0)], fmt="pipe")
    assert "| a " in md and "|--" in md.replace(":", "-")
    assert render_variants([]) == "no variant ran"


def test_each_variant_is_diagnosed_on_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A cast variant loads in another dtype: diagnosing all variants of one cache
    # state as one group mixed them, and refused (ValueError) once dtypes differed.
    from profiler.machine import cache as ceilings_cache
    from profiler.machine.cache import Lookup
    from profiler.records.ceilings import Ceilings
    from profiler.run.session import judge

    folder = write_stub_model(tmp_path / "m", "F32")
    monkeypatch.setattr(variants_mod, "run_child", fake_child())
    runs = profile_variants(request(folder, "cuda:0", "bfloat16"))
    assert {r.dtype_resolved for r in runs} == {"bfloat16", "float32"}
    found = Lookup(Ceilings({}, "t", {}, device="cuda:0"), tmp_path / "c.json", True)
    monkeypatch.setattr(ceilings_cache, "lookup", lambda *a, **kw: found)
    session = judge(runs, "quick", "cuda:0", lambda m: None)
    heads = [line for line in session.diagnosis if "load: " in line]
    assert len(heads) == len(runs) == 6
    assert "[from_pretrained at storage dtype (float32) · warm] load: 3.00 s over 1 stage" in heads
