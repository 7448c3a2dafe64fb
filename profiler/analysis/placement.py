"""Loads split across devices by a device map: per-device figures, pure functions.

The placement profile (:mod:`profiler.run.placement`) stores what it measured per
device as counters of its ``from_pretrained`` stage, named ``FIELD[DEVICE]`` (for
example ``placed_bytes[cuda:1]``), so the record schema needs no new table. This
module reads them back into :class:`DeviceFigures`, and says which device bounds
the load and how unevenly the weights were spread.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from profiler.records.run import RunRecord

PLACEMENT_FIELDS = (
    "placed_bytes",  # weights (parameters and buffers) that ended on the device
    "h2d_bytes",  # host-to-device copies into it (torch.profiler CUDA activity)
    "h2d_time_s",  # device time of those copies
    "torch_allocated_bytes",  # torch allocator after the load
    "torch_reserved_bytes",
    "nvml_used_bytes",  # NVML: the whole device, every process
)
_KEY = re.compile(r"^(\w+)\[(.+)\]$")


def counter_key(field: str, device: str) -> str:
    """The counter name of one per-device figure."""
    return f"{field}[{device}]"


@dataclass(frozen=True)
class DeviceFigures:
    """What one device received and used during a split load."""

    device: str
    placed_bytes: int = 0
    h2d_bytes: int | None = None
    h2d_time_s: float | None = None
    torch_allocated_bytes: int | None = None
    torch_reserved_bytes: int | None = None
    nvml_used_bytes: int | None = None

    @property
    def h2d_gbps(self) -> float | None:
        if not self.h2d_bytes or not self.h2d_time_s:
            return None
        return self.h2d_bytes / self.h2d_time_s / 1e9


@dataclass(frozen=True)
class Placement:
    """Every device of one split load, with the imbalance and the bounding device."""

    devices: tuple[DeviceFigures, ...]
    total_bytes: int
    imbalance: float | None  # most bytes on one device ÷ mean over devices holding any
    bounding: str | None  # the device whose copies took longest (else the one with most bytes)
    bound_by: str  # "h2d time" | "bytes placed"
    load_s: float | None  # from_pretrained, the whole split load


def h2d_by_device(events: Iterable[Mapping[str, Any]]) -> dict[str, tuple[int, float]]:
    """``{"cuda:N": (bytes, seconds)}`` of the host-to-device memcpy events of a Chrome
    trace (category ``gpu_memcpy``, ``HtoD`` in the name, ``args.device`` the index)."""
    out: dict[str, tuple[int, float]] = {}
    for ev in events:
        if ev.get("cat") != "gpu_memcpy" or "HtoD" not in str(ev.get("name", "")):
            continue
        args = ev.get("args") or {}
        dev = f"cuda:{int(args.get('device', 0))}"
        b, s = out.get(dev, (0, 0.0))
        out[dev] = (b + int(args.get("bytes", 0)), s + float(ev.get("dur", 0.0)) / 1e6)
    return out


def device_figures(counters: Mapping[str, float | int | str]) -> list[DeviceFigures]:
    """Per-device figures from a stage's counters, in order of first appearance."""
    found: dict[str, dict[str, Any]] = {}
    for key, value in counters.items():
        m = _KEY.match(key)
        if m is None or m.group(1) not in PLACEMENT_FIELDS or isinstance(value, str):
            continue
        found.setdefault(m.group(2), {})[m.group(1)] = value
    return [DeviceFigures(device=d, **v) for d, v in found.items()]


def placement(devices: Sequence[DeviceFigures], load_s: float | None = None) -> Placement:
    """Imbalance and bounding device of ``devices`` (ValueError when empty)."""
    if not devices:
        raise ValueError("no devices")
    holding = [d for d in devices if d.placed_bytes > 0]
    total = sum(d.placed_bytes for d in devices)
    imbalance = None
    if holding:
        mean = total / len(holding)
        imbalance = max(d.placed_bytes for d in holding) / mean
    timed = [d for d in devices if d.h2d_time_s]
    bounding: str | None
    if timed:
        bounding, how = max(timed, key=lambda d: d.h2d_time_s or 0.0).device, "h2d time"
    else:
        top = max(devices, key=lambda d: d.placed_bytes)
        bounding, how = (top.device if top.placed_bytes else None), "bytes placed"
    return Placement(tuple(devices), total, imbalance, bounding, how, load_s)


def run_placement(run: RunRecord) -> Placement | None:
    """The placement measured by a run, or None for runs that were not split loads."""
    st = run.stage("from_pretrained")
    if st is None or st.status != "ok":
        return None
    devices = device_figures(st.counters)
    if not devices:
        return None
    return placement(devices, st.duration_s)
