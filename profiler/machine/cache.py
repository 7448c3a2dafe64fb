"""Ceilings cached per machine: measured once, served while the fingerprint matches.

The cache key is a hash of :func:`profiler.machine.fingerprint.machine_fingerprint`
(CPU, RAM, GPU and driver, torch, the filesystem of the model folder): a change of
any of them measures again. Files live in llmprof's cache folder
(:func:`profiler.caches.models.ceilings_dir`) and are written atomically.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from profiler.caches.models import ceilings_dir
from profiler.errors import UserError
from profiler.machine.fingerprint import default_folder, fingerprint_hash, machine_fingerprint
from profiler.machine.plan import round_size
from profiler.machine.probe import measure_ceilings
from profiler.records.ceilings import CEILINGS_SCHEMA_VERSION, Ceilings
from profiler.records.io import write_atomic
from profiler.run.devices import parse_device


def cache_file(fingerprint: Mapping[str, Any], *, quick: bool) -> Path:
    """Where ceilings of this fingerprint are cached; quick results get their own
    file so they never stand in for a full measurement."""
    suffix = "-quick" if quick else ""
    return ceilings_dir() / f"{fingerprint_hash(fingerprint)}{suffix}.json"


def read_cached(path: Path, fingerprint: Mapping[str, Any]) -> Ceilings | None:
    """Cached ceilings at ``path`` if readable and of this exact fingerprint."""
    try:
        data = json.loads(path.read_text())
        c = Ceilings.from_dict(data)
    except (OSError, ValueError, KeyError, TypeError, UserError):
        return None  # missing, torn or foreign: measure again rather than fail
    if c.schema_version < CEILINGS_SCHEMA_VERSION:
        return None  # measured one way only (before best-of patterns): no upper bound
    return c if c.fingerprint == dict(fingerprint) else None


@dataclass(frozen=True)
class Lookup:
    """Result of :func:`lookup`: the ceilings, their cache file, whether it was a hit."""

    ceilings: Ceilings
    path: Path
    from_cache: bool


def lookup(
    folder: str | os.PathLike[str] | None = None,
    *,
    refresh: bool = False,
    quick: bool = False,
    device: str = "cpu",
    size_bytes: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> Lookup:
    """Cached ceilings for this machine, or measure and cache them.

    A quick request is served by a cached full measurement too (it is better); a full
    request never by a quick one. An explicit ``size_bytes`` that differs from the
    cached disk probe's size measures again.
    """
    target = Path(folder) if folder is not None else default_folder()
    device = parse_device(device)
    fp = machine_fingerprint(target, device)
    full_path = cache_file(fp, quick=False)
    quick_path = cache_file(fp, quick=True)
    if not refresh:
        candidates = [full_path, quick_path] if quick else [full_path]
        for path in candidates:
            hit = read_cached(path, fp)
            if hit is None:
                continue
            disk = hit.get("disk_read")
            if size_bytes is not None and (
                disk is None or disk.size_bytes != round_size(size_bytes)
            ):
                continue
            return Lookup(hit, path, True)
    measured = measure_ceilings(
        target, device=device, quick=quick, size_bytes=size_bytes, progress=progress, fingerprint=fp
    )
    path = quick_path if quick else full_path
    write_atomic(path, (json.dumps(measured.to_dict(), indent=1) + "\n").encode())
    return Lookup(measured, path, False)
