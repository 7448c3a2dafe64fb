"""Two ranks under torchrun with gloo on CPU, end to end: each rank loads the tiny
model with transformers' tensor parallelism (``tp_plan="auto"`` works on CPU with
gloo for llama-style models), records its stages, rank 0 gathers and writes one
result; ``report`` and ``compare`` then read it rank by rank."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from profiler.analysis.ranks import rank_of, rank_spreads
from profiler.records.io import load_runs, save_runs

REPO = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _llmprof(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "profiler", *args],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


@pytest.fixture(scope="module")
def tp_result(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("tp")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "profiler",
        "load",
        "synthetic:tiny",
        "--tp",
        "--page",
        "cold",
        "--new-tokens",
        "4",
        "--warm-calls",
        "1",
        "--json",
        str(out / "tp.json"),
        "--report",
        str(out / "tp.md"),
    ]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=180, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc.stdout


def test_every_rank_records_its_stages_and_rank_0_gathers_them(tp_result: tuple[Path, str]) -> None:
    out, stdout = tp_result
    runs = load_runs(out / "tp.json")
    assert sorted(rank_of(r) for r in runs) == [(0, 2), (1, 2)]
    assert len({r.run_id for r in runs}) == 1  # one job
    for r in runs:
        names = [s.name for s in r.stages]
        assert names[:2] == ["import", "pg_init"] and "load_barrier" in names
        assert all(s.rank == rank_of(r)[0] and s.device == "cpu" for s in r.stages)
        assert r.stage("pg_init").counters["backend"] == "gloo"  # type: ignore[union-attr]
        # each rank holds a shard: fewer bytes than the whole checkpoint
        held = r.stage("from_pretrained").bytes  # type: ignore[union-attr]
        assert (
            held
            and r.model.path
            and held < sum(f.stat().st_size for f in Path(r.model.path).glob("*.safetensors"))
        )
        assert r.cache.page == "cold" and r.cache.page_resident_fraction_before is not None
        assert r.decode and r.decode[0].calls  # decode with TP ran on every rank
    sp = rank_spreads(runs)[0]
    assert sp.load_s == max(r.load_total_s for r in runs)
    assert sp.skew_s == pytest.approx(
        max(r.load_total_s for r in runs) - min(r.load_total_s for r in runs)
    )
    assert f"slowest rank {sp.slowest_rank} of 2" in stdout
    assert "## ranks" in (out / "tp.md").read_text()


def test_report_keeps_both_ranks(tp_result: tuple[Path, str]) -> None:
    out, _ = tp_result
    proc = _llmprof("report", str(out / "tp.json"), str(out), "-o", str(out / "again.md"))
    assert proc.returncode == 0, proc.stderr
    text = (out / "again.md").read_text()
    assert text.count("| cpu ") >= 2 and "world size 2" in text


def test_a_regression_on_one_rank_is_a_regression(tp_result: tuple[Path, str]) -> None:
    out, _ = tp_result
    runs = load_runs(out / "tp.json")
    doc = json.loads((out / "tp.json").read_text())
    for run in doc["runs"] if isinstance(doc, dict) else doc:
        if run["stages"][0]["rank"] == 1:
            for st in run["stages"]:
                if st["name"] == "from_pretrained":
                    st["end_ns"] = st["start_ns"] + 5 * (st["end_ns"] - st["start_ns"]) + 10**8
    (out / "slow.json").write_text(json.dumps(doc))
    save_runs(out / "base.json", runs)
    proc = _llmprof("compare", str(out / "base.json"), str(out / "slow.json"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "cpu@rank1" in proc.stdout and "regress" in proc.stdout.lower()
    same = _llmprof("compare", str(out / "base.json"), str(out / "base.json"))
    assert same.returncode == 0
