"""Ceilings measured for real, in quick mode with small files: structure, positivity,
the scratch file cleaned up, the O_DIRECT fallback, and the command end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from profiler.caches.page import evict_fd
from profiler.cli import main
from profiler.machine.disk import probe_files, resident_fraction
from profiler.machine.plan import ProbePlan
from profiler.machine.probe import measure_ceilings
from profiler.records.ceilings import (
    GBPS,
    GPU_ITEMS,
    HOST_ITEMS,
    ITEM_ORDER,
    MATMUL,
    TFLOPS,
    Ceilings,
)
from profiler.render.format import num
from profiler.run.devices import parse_device

ROOT = Path(__file__).resolve().parents[2]
SIZE = 64 << 20


def _fs_type(path: Path) -> str | None:
    from profiler.measure.environment import filesystem_of

    return filesystem_of(path)[0]


def test_quick_cpu_measurement(tmp_path: Path) -> None:
    said: list[str] = []
    c = measure_ceilings(tmp_path, device="cpu", quick=True, size_bytes=SIZE, progress=said.append)
    assert list(c.items) == list(ITEM_ORDER)
    for name in HOST_ITEMS:
        item = c.items[name]
        assert item.unit == GBPS
        assert item.value is not None and item.value > 0, name
        assert len(item.trials) == (2 if name == "disk_read" else 3), name
        assert all(t > 0 for t in item.trials)
        assert min(item.trials) <= item.value <= max(item.trials)
        assert item.method
    assert c.items["disk_read"].size_bytes == SIZE
    assert c.items["page_cache_read"].size_bytes == SIZE
    for name in GPU_ITEMS:
        assert c.items[name].value is None
        assert c.items[name].notes == ("no GPU measured (device cpu)",)
    mm = c.items[MATMUL]
    assert mm.unit == TFLOPS and mm.tflops is not None and mm.tflops > 0 and mm.gbps is None
    assert c.device == "cpu" and c.quick and c.elapsed_s is not None and c.elapsed_s > 0
    assert c.folder == str(tmp_path.resolve())
    assert c.fingerprint["fs_type"] == _fs_type(tmp_path)
    assert said and any("disk_read" in m for m in said)
    # the scratch file is gone
    assert list(tmp_path.iterdir()) == []
    assert Ceilings.from_dict(json.loads(json.dumps(c.to_dict()))) == c


def test_buffered_fallback_without_o_direct(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(os, "O_DIRECT", raising=False)
    plan = ProbePlan(
        disk_bytes=32 << 20,
        page_bytes=32 << 20,
        host_bytes=32 << 20,
        gpu_bytes=0,
        matmul_n=64,
        disk_trials=2,
        trials=2,
    )
    disk, one, four = probe_files(tmp_path, plan, _fs_type(tmp_path), lambda _m: None)
    assert (disk.name, one.name, four.name) == (
        "disk_read",
        "page_cache_read_1t",
        "page_cache_read",
    )
    assert disk.value is not None and disk.value > 0
    assert any(n.startswith("O_DIRECT unavailable") for n in disk.notes)
    assert disk.winner.startswith("buffered") and disk.patterns
    assert all(p.mode == "buffered" for p in disk.patterns)
    assert one.value is not None and one.value > 0 and four.value is not None
    assert list(tmp_path.iterdir()) == []


def test_resident_fraction_sees_reads_and_eviction(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(8 << 20))
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.read(fd, 8 << 20)
        assert resident_fraction(fd, 8 << 20) == pytest.approx(1.0, abs=0.01)
        evict_fd(fd)
        after = resident_fraction(fd, 8 << 20)
        assert after is not None and 0.0 <= after <= 1.0
        if _fs_type(tmp_path) not in ("tmpfs", "ramfs"):
            assert after < 0.5  # clean pages of a disk file can be dropped
    finally:
        os.close(fd)


def test_command_measures_then_serves_from_cache(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "cache"
    data = tmp_path / "models"
    data.mkdir()
    out_json = tmp_path / "c.json"
    env = {**os.environ, "LLMPROF_CACHE": str(cache), "PYTHONPATH": str(ROOT)}
    args = ["ceilings", "--quick", "--size", "64MiB", "--path", str(data), "--device", "cpu"]
    p = subprocess.run(
        [sys.executable, "-m", "profiler", *args, "--json", str(out_json)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    header = p.stdout.splitlines()[0].split()
    assert header == ["name", "value", "unit", "trials", "method", "notes"]
    for name in ITEM_ORDER:
        assert name in p.stdout
    # every pattern tried, the winner marked
    tried = p.stdout.split("patterns tried")[1]
    assert "O_DIRECT" in tried or "buffered" in tried
    assert sum(ln.startswith("disk_read ") for ln in tried.splitlines()) >= 2
    assert sum(ln.rstrip().endswith("best") for ln in tried.splitlines()) >= 3
    assert "cached in " + str(cache / "ceilings") in p.stdout
    saved = Ceilings.from_dict(json.loads(out_json.read_text()))
    assert saved.quick and saved.items["disk_read"].size_bytes == SIZE
    cached = list((cache / "ceilings").glob("*-quick.json"))
    assert len(cached) == 1
    assert list(data.iterdir()) == []

    # Second time: in-process, from the cache, same figures.
    os.environ["LLMPROF_CACHE"] = str(cache)
    try:
        assert main(args) == 0
    finally:
        del os.environ["LLMPROF_CACHE"]
    shown = capsys.readouterr().out
    assert f"from cache: {cached[0]}" in shown
    disk = saved.items["disk_read"].value
    assert disk is not None
    row = next(line for line in shown.splitlines() if line.startswith("disk_read "))
    assert row.split()[1] == num(disk)


def test_command_refuses_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    assert main(["ceilings", "--path", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("llmprof: --path") and "\n" not in err
    assert main(["ceilings", "--device", "tpu", "--path", str(tmp_path)]) == 2
    assert "unknown device" in capsys.readouterr().err
    assert main(["ceilings", "--size", "huge", "--path", str(tmp_path)]) == 2
    assert "--size" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["ceilings", "--device", "cuda", "--path", str(tmp_path)]) == 2
        err = capsys.readouterr().err.strip()
        assert "no CUDA device" in err and "\n" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.gpu
def test_quick_gpu_measurement(tmp_path: Path) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    c = measure_ceilings(tmp_path, device=parse_device("cuda"), quick=True, size_bytes=SIZE)
    for name in (*GPU_ITEMS, MATMUL):
        item = c.items[name]
        assert item.value is not None and item.value > 0, name
        assert all(t > 0 for t in item.trials)
    assert c.fingerprint["gpu_name"] == torch.cuda.get_device_name(0)
    # a device copy moves more bytes per second than PCIe carries
    assert c.items["device_memory"].value > c.items["h2d_pinned"].value


def test_probes_judge_residency_with_the_shared_cold_and_warm_thresholds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A residency just past the cold (or short of the warm) threshold of
    profiler.caches.page is called out by the probes, as it is for a run."""
    from profiler.caches.page import COLD_MAX_FRACTION, WARM_MIN_FRACTION
    from profiler.machine import disk, patterns

    monkeypatch.delattr(os, "O_DIRECT", raising=False)
    plan = ProbePlan(32 << 20, 32 << 20, 32 << 20, 0, 64, 1, 1)
    fraction = [0.0]
    monkeypatch.setattr(disk, "resident_fraction", lambda _fd, _size: fraction[0])
    monkeypatch.setattr(patterns, "resident_fraction", lambda _fd, _size: fraction[0])
    fraction[0] = COLD_MAX_FRACTION + 0.01
    probed, _one, _four = probe_files(tmp_path, plan, None, lambda _m: None)
    assert any(n.startswith("eviction failed") for n in probed.notes)
    fraction[0] = WARM_MIN_FRACTION - 0.01
    _disk, one, _four = probe_files(tmp_path, plan, None, lambda _m: None)
    assert any("stayed in the page cache" in n for n in one.notes)
