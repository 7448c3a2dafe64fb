"""The pure parts of GPU-only code, checked on the CPU: GPU identity, the H2D trace
summary, the pageable H2D probe's choice, and the native view's attribution keys."""

from __future__ import annotations

import sys
import types
from types import SimpleNamespace

import pytest

from profiler.load.native import attribute
from profiler.machine.device import better_pageable
from profiler.measure.gpu import (
    GpuProbe,
    format_pci_bus_id,
    nvml_driver_version,
    nvml_handle,
    pci_bus_id,
)
from profiler.measure.h2d_trace import summarize_h2d
from profiler.records.stage import MemorySnapshot, StageMemory, StageRecord

MIB = 1 << 20

# --------------------------------------------------------------------------- identity


def test_pci_bus_id_is_spelled_as_nvml_spells_it() -> None:
    assert format_pci_bus_id(0, 0x1A, 0) == "00000000:1A:00.0"
    assert format_pci_bus_id(1, 0xC3, 0x1F) == "00000001:C3:1F.0"
    props = SimpleNamespace(pci_bus_id=0x41, pci_domain_id=0, pci_device_id=0)
    assert pci_bus_id(props) == "00000000:41:00.0"
    assert pci_bus_id(SimpleNamespace(pci_bus_id=0x41)) == "00000000:41:00.0"
    assert pci_bus_id(SimpleNamespace()) is None  # old torch: no bus id


class FakeNvml:
    """Stands in for pynvml: records how a handle was asked for."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.fail = fail
        self.asked: list[tuple[str, object]] = []

    def nvmlInit(self) -> None:  # noqa: N802 (pynvml's names)
        if self.fail is not None:
            raise self.fail

    def nvmlShutdown(self) -> None:  # noqa: N802
        pass

    def nvmlSystemGetDriverVersion(self) -> bytes:  # noqa: N802
        return b"550.54.15"

    def nvmlDeviceGetHandleByPciBusId(self, bus: bytes) -> str:  # noqa: N802
        self.asked.append(("bus", bus))
        return "handle"

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:  # noqa: N802
        self.asked.append(("index", index))
        return "handle"


def test_nvml_handle_is_found_by_bus_id_never_by_index_when_known() -> None:
    nvml = FakeNvml()
    nvml_handle(nvml, 1, SimpleNamespace(pci_bus_id=0x41, pci_domain_id=0, pci_device_id=0))
    nvml_handle(nvml, 1, SimpleNamespace())
    assert nvml.asked == [("bus", b"00000000:41:00.0"), ("index", 1)]


def _install(monkeypatch: pytest.MonkeyPatch, nvml: FakeNvml) -> None:
    module = types.ModuleType("pynvml")
    for name in dir(nvml):
        if name.startswith("nvml"):
            setattr(module, name, getattr(nvml, name))
    monkeypatch.setitem(sys.modules, "pynvml", module)


def test_driver_version_or_the_reason_it_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    _install(monkeypatch, FakeNvml())
    assert nvml_driver_version() == ("550.54.15", None)
    _install(monkeypatch, FakeNvml(fail=RuntimeError("Driver Not Loaded")))
    version, why = nvml_driver_version()
    assert version is None and why is not None and "Driver Not Loaded" in why


def test_gpu_probe_keeps_why_nvml_gave_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without NVML the GPU-memory column is empty: the probe says why, for the run notes."""
    import torch

    props = SimpleNamespace(pci_bus_id=0x41, pci_domain_id=0, pci_device_id=0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda _i: props)
    _install(monkeypatch, FakeNvml(fail=RuntimeError("NVML Shared Library Not Found")))
    probe = GpuProbe(0)
    assert probe.pci_bus_id == "00000000:41:00.0"
    assert probe.used_bytes() is None
    assert probe.note is not None and "NVML Shared Library Not Found" in probe.note
    assert "\n" not in probe.note
    _install(monkeypatch, FakeNvml())
    assert GpuProbe(0).note is None


# --------------------------------------------------------------------------- H2D trace


def test_h2d_summary_counts_only_host_to_device_copies() -> None:
    events = [
        {"cat": "gpu_memcpy", "name": "Memcpy HtoD (Pageable -> Device)", "dur": 250.0,
         "args": {"bytes": 4 * MIB}},
        {"cat": "gpu_memcpy", "name": "Memcpy HtoD (Pinned -> Device)", "dur": 750,
         "args": {"bytes": MIB}},
        {"cat": "gpu_memcpy", "name": "Memcpy DtoH (Device -> Pinned)", "dur": 999.0,
         "args": {"bytes": 7}},
        {"cat": "kernel", "name": "HtoD-looking kernel", "dur": 5.0},
        {"cat": "gpu_memcpy", "name": "Memcpy HtoD", "args": None},  # no size, no time
        {"ph": "M", "name": "process_name"},
    ]  # fmt: skip
    assert summarize_h2d(events) == {
        "h2d_copies": 3,
        "h2d_bytes": 5 * MIB,
        "h2d_time_s": pytest.approx(0.001),
    }
    assert summarize_h2d([]) == {"h2d_copies": 0, "h2d_bytes": 0, "h2d_time_s": 0.0}


# --------------------------------------------------------------------------- pageable H2D


def test_pageable_ceiling_takes_the_faster_way_and_names_the_other() -> None:
    what = "pageable host tensor → device"
    rates, method = better_pageable(1024 * MIB, 16 * MIB, what, [7.0, 7.2, 7.1], [8.0, 8.1, 7.9])
    assert rates == [8.0, 8.1, 7.9]
    assert "in 16 MiB pieces" in method and "(one 1024 MiB copy: 7.10 GB/s)" in method
    rates, method = better_pageable(1024 * MIB, 16 * MIB, what, [9.0, 9.2, 9.1], [8.0, 8.1, 7.9])
    assert rates == [9.0, 9.2, 9.1]
    assert "in 16 MiB pieces" not in method and "(16 MiB pieces: 8.00 GB/s)" in method
    # a tie keeps the single copy: pieces must be faster to be chosen
    assert better_pageable(MIB * 64, MIB * 16, what, [5.0], [5.0])[0] == [5.0]


# --------------------------------------------------------------------------- native view


def _stage(name: str, seconds: float = 1.0, **kw) -> StageRecord:
    return StageRecord(name=name, status="ok", start_ns=0, end_ns=int(seconds * 1e9), **kw)


def test_native_attribution_keys_on_cpu_and_cuda() -> None:
    before = MemorySnapshot(100, 60, 40)
    after = MemorySnapshot(400, 160, 240)
    fp = _stage(
        "from_pretrained",
        bytes=1000,
        disk_read_bytes=900,
        memory=StageMemory(before, after, 400, 160),
        counters={"major_faults": 3},
    )
    out, unattributed = attribute((_stage("tokenizer"), fp), on_cuda=False)
    assert out == {
        "from_pretrained.disk_read_bytes": 900,
        "from_pretrained.major_faults": 3,
        "from_pretrained.rss_file_growth_bytes": 200,
        "from_pretrained.rss_anon_growth_bytes": 100,
        "from_pretrained.model_bytes": 1000,
    }
    assert len(unattributed) == 1 and "overlap" in unattributed[0]

    traced = _stage("to_device", 2.0, counters={"h2d_time_s": 1.5, "h2d_bytes": 1000})
    out, unattributed = attribute((fp, traced), on_cuda=True)
    assert {k for k in out if k.startswith("to_device.")} == {
        "to_device.h2d_time_s",
        "to_device.h2d_bytes",
        "to_device.other_s",
    }
    assert out["to_device.other_s"] == pytest.approx(0.5)
    assert any("0.500 s outside" in u for u in unattributed)

    untraced = _stage("to_device", 2.0)
    out, unattributed = attribute((fp, untraced), on_cuda=True)
    assert not any(k.startswith("to_device.") for k in out)
    assert any("no copy trace" in u for u in unattributed)


def test_native_attribution_of_a_failed_load_says_so() -> None:
    failed = StageRecord("from_pretrained", "failed", 0, 1)
    assert attribute((failed,), on_cuda=True) == ({}, ["from_pretrained failed"])
    assert attribute((), on_cuda=False) == ({}, ["from_pretrained failed"])
