"""Ceilings ("speed of light"): what this machine can move, measured, cached per machine.

A stage that reads 1.6 GB/s is fast or slow only next to what the hardware allows.
This module measures those limits with plain probes (a cold disk read, a warm
page-cache read, a host memory copy, host↔device copies, a device memory copy, a
bf16 matrix product: :mod:`profiler.machine.disk`, :mod:`profiler.machine.device`).
:mod:`profiler.machine.cache` keeps them per machine fingerprint and
:mod:`profiler.machine.bounds` pairs each load stage with the ceiling that bounds it.

Every figure is a median over several trials after an untimed warm-up. Copies count
bytes read plus bytes written (as vendors quote memory bandwidth); reads count the
bytes read. GB/s means 1e9 bytes per second.

Nothing here imports torch at module level: the ``ceilings`` command must stay cheap
to import. The probes import it when they run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from profiler.errors import UserError
from profiler.machine.device import probe_gpu, probe_matmul
from profiler.machine.disk import probe_files
from profiler.machine.fingerprint import machine_fingerprint
from profiler.machine.plan import MIB, ProbePlan, probe_plan
from profiler.machine.scratch import model_bytes
from profiler.records.ceilings import (
    GBPS,
    GPU_ITEMS,
    ITEM_ORDER,
    MATMUL,
    Ceiling,
    Ceilings,
    skipped,
)
from profiler.run.device_kind import is_gpu


def probe_host_memcpy(plan: ProbePlan, say: Callable[[str], None]) -> Ceiling:
    """host_memcpy: a large copy in host memory (:mod:`profiler.machine.bandwidth`)."""
    from profiler.machine.bandwidth import measure_memory_bandwidth

    say(f"host_memcpy: {plan.trials} x {plan.host_bytes / MIB:.0f} MiB")
    r = measure_memory_bandwidth("cpu", nbytes=plan.host_bytes, trials=plan.trials)
    return Ceiling("host_memcpy", r.gbps, GBPS, tuple(r.trials_gbps), r.method, (), plan.host_bytes)


def measure_ceilings(
    folder: str | os.PathLike[str],
    *,
    device: str = "cpu",
    quick: bool = False,
    size_bytes: int | None = None,
    progress: Callable[[str], None] | None = None,
    fingerprint: Mapping[str, Any] | None = None,
) -> Ceilings:
    """Measure every ceiling now (no cache). ``device`` must already be normalised
    (:func:`parse_device`); GPU items are skipped with a note when it is ``cpu``."""
    say = progress or (lambda _msg: None)
    folder = Path(folder)
    if not folder.exists():
        raise UserError(f"{folder}: no such folder: pass --path to the model's folder")
    fp = dict(fingerprint) if fingerprint is not None else machine_fingerprint(folder, device)
    t0 = time.perf_counter()
    plan = probe_plan(quick, size_bytes, device, model_bytes(folder))
    items: dict[str, Ceiling] = {}
    for c in probe_files(folder, plan, fp.get("fs_type"), say):
        items[c.name] = c
    items["host_memcpy"] = probe_host_memcpy(plan, say)
    if is_gpu(device):
        for c in probe_gpu(device, plan, say):
            items[c.name] = c
    else:
        reason = "no GPU measured (device cpu)"
        for name in GPU_ITEMS:
            items[name] = skipped(name, GBPS, reason)
    items[MATMUL] = probe_matmul(device, plan, say)
    return Ceilings(
        fingerprint=fp,
        measured_at=datetime.now(UTC).isoformat(timespec="seconds"),
        items={k: items[k] for k in ITEM_ORDER if k in items},
        device=device,
        folder=str(folder.resolve()),
        quick=quick,
        elapsed_s=round(time.perf_counter() - t0, 3),
    )
