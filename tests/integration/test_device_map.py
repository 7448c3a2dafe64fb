"""``llmprof load --device-map MAP`` on CPU: a map over cpu and disk exercises the
per-device bookkeeping (GPUs add copies and memory, see scripts/gpu-16.sh); the
fallback path of the GPU script runs end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from profiler.analysis.placement import run_placement
from profiler.records.io import load_runs

REPO = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def test_map_over_cpu_and_disk_is_accounted_per_device(tmp_path: Path) -> None:
    split = {
        "model.embed_tokens": "cpu",
        "model.layers.0": "cpu",
        "model.layers.1": "disk",
        "model.norm": "cpu",
        "model.rotary_emb": "cpu",
        "lm_head": "cpu",
    }
    (tmp_path / "split.json").write_text(json.dumps(split))
    out = tmp_path / "r.json"
    cmd = [
        sys.executable,
        "-m",
        "profiler",
        "load",
        "synthetic:tiny",
        "--device-map",
        str(tmp_path / "split.json"),
        "--page",
        "warm",
        "--no-decode",
        "--ceilings",
        "off",
        "--json",
        str(out),
    ]
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = subprocess.run(
        cmd, env=_env(TMPDIR=str(tmp)), capture_output=True, text=True, timeout=180, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run,) = load_runs(out)
    assert run.variant == "device_map=split.json"
    # The disk part is offloaded into llmprof's own temporary folder, removed at exit,
    # never into the user's model folder.
    assert not list(Path(run.model.path).glob(".llmprof-offload*"))
    assert not list(tmp.glob("llmprof-offload-*"))
    p = run_placement(run)
    assert p is not None
    placed = {d.device: d.placed_bytes for d in p.devices}
    assert set(placed) == {"cpu", "disk"} and placed["disk"] > 0
    # every weight lands somewhere: the devices add up to the model's bytes
    weights = sum(f.stat().st_size for f in Path(run.model.path).glob("*.safetensors"))
    assert 0.95 * weights < p.total_bytes <= weights
    assert p.bounding == "cpu" and "devices · device_map=split.json" in proc.stdout
    assert "cpu bounds the load" in proc.stdout


@pytest.mark.slow
def test_gpu_script_falls_back_to_cpu(tmp_path: Path) -> None:
    proc = subprocess.run(
        ["bash", "scripts/gpu-16.sh", str(tmp_path)],
        env=_env(LLMPROF_GPU16_CPU="1", PYTHON=sys.executable),
        capture_output=True,
        text=True,
        timeout=480,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    figures = json.loads((tmp_path / "figures.json").read_text())
    assert set(figures) == {"device-map-cold", "device-map-warm", "tp-cold", "tp-warm"}
    for state in ("cold", "warm"):
        tp = figures[f"tp-{state}"]
        assert [r["rank"] for r in tp["ranks"]] == [0, 1]
        assert tp["load_s_slowest_rank"] == max(r["load_s"] for r in tp["ranks"])
        assert all(r["cache"] == state for r in tp["ranks"])  # verified per rank
        assert figures[f"device-map-{state}"]["bounding"] == "cpu"
    assert "## ranks" in (tmp_path / "report.md").read_text()
