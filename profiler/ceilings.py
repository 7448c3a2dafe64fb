"""Ceilings ("speed of light"): what this machine can move, measured, cached per machine.

A stage that reads 1.6 GB/s is fast or slow only next to what the hardware allows.
This module measures those limits once per machine with plain probes (a cold disk
read, a warm page-cache read, a host memory copy, host↔device copies, a device
memory copy, a bf16 matrix product), caches them by machine fingerprint, and pairs
each load stage with the ceiling that bounds it (:func:`bound_for_stage`,
:func:`attach_ceilings`).

Every figure is a median over several trials after an untimed warm-up. Copies count
bytes read plus bytes written (as vendors quote memory bandwidth); reads count the
bytes read. GB/s means 1e9 bytes per second.

Nothing here imports torch at module level: the ``ceilings`` command must stay cheap
to import. The probes import it when they run.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import mmap
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from profiler.cachedir import ceilings_dir
from profiler.errors import UserError
from profiler.records import DecodeRecord, RunRecord, StageRecord
from profiler.resultsio import write_atomic
from profiler.stats import median

CEILINGS_KIND = "llmprof.ceilings"
CEILINGS_SCHEMA_VERSION = 1

GBPS = "GB/s"
TFLOPS = "TFLOP/s"

MIB = 1 << 20
GIB = 1 << 30
BLOCK_BYTES = 16 * MIB  # one read request: large enough that per-call cost vanishes
READ_THREADS = 4  # "a few threads": what a parallel loader uses (staged.py reads with 4)
MIN_SIZE_BYTES = BLOCK_BYTES

HOST_ITEMS: tuple[str, ...] = (
    "disk_read",
    "page_cache_read_1t",
    "page_cache_read",
    "host_memcpy",
)
GPU_ITEMS: tuple[str, ...] = (
    "h2d_pageable",
    "h2d_pinned",
    "d2h_pinned",
    "device_memory",
)
MATMUL = "matmul_bf16_tflops"
ITEM_ORDER: tuple[str, ...] = HOST_ITEMS + GPU_ITEMS + (MATMUL,)

# How each ceiling is named in sentences (diagnosis, tables).
DESCRIPTIONS: dict[str, str] = {
    "disk_read": "this disk",
    "page_cache_read_1t": "the single-thread page-cache read",
    "page_cache_read": f"the page-cache read ({READ_THREADS} threads)",
    "host_memcpy": "host memory bandwidth",
    "h2d_pageable": "pageable host-to-device",
    "h2d_pinned": "pinned host-to-device",
    "d2h_pinned": "pinned device-to-host",
    "device_memory": "device memory bandwidth",
    MATMUL: "the bf16 matmul rate",
}


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Ceiling:
    """One measured limit.

    ``value`` is the median of ``trials`` in ``unit`` (``"GB/s"`` for bandwidths,
    ``"TFLOP/s"`` for the matmul rate); ``None`` when the probe was skipped, with the
    reason in ``notes``. ``size_bytes`` is the payload of one trial (the file read,
    the source of a copy, one operand of the matmul).
    """

    name: str
    value: float | None
    unit: str
    trials: tuple[float, ...] = ()
    method: str = ""
    notes: tuple[str, ...] = ()
    size_bytes: int | None = None

    @property
    def measured(self) -> bool:
        return self.value is not None

    @property
    def gbps(self) -> float | None:
        """The value when it is a bandwidth, else None (a matmul rate is no GB/s)."""
        return self.value if self.unit == GBPS else None

    @property
    def trials_gbps(self) -> tuple[float, ...]:
        return self.trials if self.unit == GBPS else ()

    @property
    def tflops(self) -> float | None:
        return self.value if self.unit == TFLOPS else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "trials": list(self.trials),
            "method": self.method,
            "notes": list(self.notes),
            "size_bytes": self.size_bytes,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Ceiling:
        value = data.get("value")
        return cls(
            name=str(data["name"]),
            value=None if value is None else float(value),
            unit=str(data.get("unit", GBPS)),
            trials=tuple(float(x) for x in data.get("trials", ())),
            method=str(data.get("method", "")),
            notes=tuple(str(x) for x in data.get("notes", ())),
            size_bytes=data.get("size_bytes"),
        )


def skipped(name: str, unit: str, reason: str) -> Ceiling:
    """A ceiling that was not measured, saying why."""
    return Ceiling(name=name, value=None, unit=unit, method="not measured", notes=(reason,))


@dataclass(frozen=True)
class Ceilings:
    """All ceilings of one machine, measured together.

    ``device`` is the device the GPU items were measured on (``"cpu"`` when none);
    ``folder`` the folder whose filesystem ``disk_read`` measured; ``quick`` marks the
    small sizes used in tests and CI, whose figures are rougher.
    """

    fingerprint: dict[str, Any]
    measured_at: str
    items: dict[str, Ceiling]
    schema_version: int = CEILINGS_SCHEMA_VERSION
    device: str = "cpu"
    folder: str = ""
    quick: bool = False
    elapsed_s: float | None = None

    def get(self, name: str) -> Ceiling | None:
        return self.items.get(name)

    def value(self, name: str) -> float | None:
        """The measured value of ``name``, or None when absent or skipped."""
        c = self.items.get(name)
        return c.value if c is not None else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": CEILINGS_KIND,
            "schema_version": self.schema_version,
            "measured_at": self.measured_at,
            "device": self.device,
            "folder": self.folder,
            "quick": self.quick,
            "elapsed_s": self.elapsed_s,
            "fingerprint": dict(self.fingerprint),
            "items": {k: v.to_dict() for k, v in self.items.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Ceilings:
        if not isinstance(data, Mapping) or data.get("kind") != CEILINGS_KIND:
            raise UserError(f'not an llmprof ceilings file (no "kind": "{CEILINGS_KIND}")')
        version = data.get("schema_version")
        if not isinstance(version, int) or version > CEILINGS_SCHEMA_VERSION:
            raise UserError(
                f"ceilings schema version {version!r} is not one this llmprof reads "
                f"(up to {CEILINGS_SCHEMA_VERSION}): run `llmprof ceilings --refresh`"
            )
        items = {str(k): Ceiling.from_dict(v) for k, v in data.get("items", {}).items()}
        elapsed = data.get("elapsed_s")
        return cls(
            fingerprint=dict(data.get("fingerprint", {})),
            measured_at=str(data.get("measured_at", "")),
            items=items,
            schema_version=version,
            device=str(data.get("device", "cpu")),
            folder=str(data.get("folder", "")),
            quick=bool(data.get("quick", False)),
            elapsed_s=None if elapsed is None else float(elapsed),
        )


# --------------------------------------------------------------------------- arithmetic


def gbps_of(nbytes: float, seconds: float) -> float:
    """Rate of moving ``nbytes`` in ``seconds``, in GB/s (1e9 bytes per second)."""
    if seconds <= 0:
        raise ValueError(f"time must be positive, got {seconds}")
    return nbytes / seconds / 1e9


def copy_gbps_of(nbytes: float, seconds: float) -> float:
    """Rate of a copy of ``nbytes``: bytes read plus bytes written."""
    return gbps_of(2 * nbytes, seconds)


def fraction_of(achieved: float | None, ceiling: float | None) -> float | None:
    """``achieved / ceiling``, or None when either is missing or the ceiling is 0."""
    if achieved is None or not ceiling:
        return None
    return achieved / ceiling


def matmul_tflops_of(n: int, seconds: float) -> float:
    """Rate of one n×n×n matrix product (2·n³ floating-point operations), TFLOP/s."""
    if seconds <= 0:
        raise ValueError(f"time must be positive, got {seconds}")
    return 2.0 * n**3 / seconds / 1e12


def prefill_mfu(
    num_params: int, prompt_tokens: int, batch: int, ttft_s: float, tflops: float
) -> float:
    """Model FLOPs utilisation of the prefill: ``2·params·tokens·batch / ttft`` over
    the matmul rate. Counts only the weight matmuls (the usual 2 FLOPs per parameter
    per token); attention's own FLOPs are left out, so this slightly understates."""
    if ttft_s <= 0 or tflops <= 0:
        raise ValueError("ttft and matmul rate must be positive")
    return 2.0 * num_params * prompt_tokens * batch / ttft_s / (tflops * 1e12)


def decode_bytes_per_step(
    weight_bytes: int, kv_bytes_per_token: int | None, context_tokens: float, batch: int
) -> float:
    """Bytes one decode step must read: every weight once, plus the KV cache of each
    sequence over its context (``kv_bytes_per_token`` per position per sequence)."""
    kv = (kv_bytes_per_token or 0) * context_tokens * batch
    return float(weight_bytes) + kv


def mbu(bytes_per_step: float, step_s: float, bandwidth_gbps: float) -> float:
    """Memory bandwidth utilisation: bytes a step reads per second over the ceiling."""
    if step_s <= 0 or bandwidth_gbps <= 0:
        raise ValueError("step time and bandwidth must be positive")
    return bytes_per_step / step_s / 1e9 / bandwidth_gbps


def decode_step_s(record: DecodeRecord) -> float | None:
    """Median token-to-token interval over the warm calls (median of each call's
    median, so a long call does not outweigh a short one)."""
    per_call = [median(c.intervals_s) for c in record.calls if len(c.token_times_ns) >= 2]
    return median(per_call) if per_call else None


def decode_mbu(record: DecodeRecord, bandwidth_gbps: float | None = None) -> float | None:
    """MBU of one decode record, or None when a figure it needs was not measured.

    The KV cache grows during the call, so the context is taken at its mean:
    ``prompt_tokens + new_tokens / 2``.
    """
    bw = bandwidth_gbps if bandwidth_gbps is not None else record.memory_bandwidth_gbps
    step = decode_step_s(record)
    if not bw or not step or not record.weight_bytes:
        return None
    context = record.prompt_tokens + record.new_tokens / 2
    nbytes = decode_bytes_per_step(
        record.weight_bytes, record.kv_bytes_per_token, context, record.batch_size
    )
    return mbu(nbytes, step, bw)


# --------------------------------------------------------------------------- bounds


def _is_gpu(device: str) -> bool:
    return device.startswith("cuda")


# Bytes per element, by torch name and by safetensors' short name.
_ITEMSIZE: dict[str, int] = {
    "float64": 8, "F64": 8, "float32": 4, "F32": 4, "float16": 2, "F16": 2,
    "bfloat16": 2, "BF16": 2, "float8_e4m3fn": 1, "float8_e5m2": 1, "F8_E4M3": 1,
    "F8_E5M2": 1,
}  # fmt: skip


def dtype_size(name: str | None) -> int | None:
    """Bytes per element of a dtype named as torch or safetensors name it."""
    if not name:
        return None
    return _ITEMSIZE.get(name.replace("torch.", ""))


def cast_traffic_per_byte(stage: StageRecord, run: RunRecord | None = None) -> float | None:
    """Memory traffic of a cast per source byte: 1 (read) + output/input size.

    From the stage's ``bytes_out`` counter when it has one, else from the sizes of the
    checkpoint's storage dtype and the loaded dtype; None when neither is known.
    """
    out = stage.counters.get("bytes_out")
    if isinstance(out, (int, float)) and stage.bytes:
        return 1.0 + float(out) / stage.bytes
    if run is not None:
        src = dtype_size(run.model.storage_dtype)
        dst = dtype_size(run.dtype_resolved)
        if src and dst:
            return 1.0 + dst / src
    return None


def cast_on_device(stage: StageRecord) -> bool:
    """Whether a dtype_cast ran on the GPU (llmprof's fast path casts where the weights
    already are; the staged view casts on the CPU)."""
    flag = stage.counters.get("on_device")
    if flag is not None:
        try:
            return bool(int(flag))
        except (TypeError, ValueError):
            return False
    return "on the device" in stage.bytes_what


def _read_ceiling(page_state: str, disk_read_bytes: int | None, nbytes: int | None) -> str | None:
    if page_state == "cold":
        return "disk_read"
    if page_state == "warm":
        return "page_cache_read"
    # Page state not controlled (or cold asked but not verified): the kernel's own
    # count of bytes fetched from storage says which path served the reads.
    if disk_read_bytes is not None and nbytes:
        return "disk_read" if disk_read_bytes >= 0.5 * nbytes else "page_cache_read"
    return None


def ceiling_candidates(
    name: str,
    *,
    page_state: str,
    device: str,
    pinned: bool,
    disk_read_bytes: int | None = None,
    nbytes: int | None = None,
    on_device: bool = False,
) -> tuple[str, ...]:
    """The ceilings that bound the stage called ``name``; the slowest of them bounds it
    (a stage that reads and copies at once can go no faster than either)."""
    h2d = "h2d_pinned" if pinned else "h2d_pageable"
    if name == "weight_read":
        read = _read_ceiling(page_state, disk_read_bytes, nbytes)
        return (read,) if read else ()
    if name == "read_copy":  # fast path: reads overlapped with host-to-device copies
        read = _read_ceiling(page_state, disk_read_bytes, nbytes)
        if read is None:
            return ()
        return (read, h2d) if _is_gpu(device) else (read,)
    if name == "dtype_cast":
        return ("device_memory",) if on_device and _is_gpu(device) else ("host_memcpy",)
    if name == "h2d_copy":
        return (h2d,) if _is_gpu(device) else ()
    # hub_download is network-bound (no ceiling measured for a network); the other
    # stages move no bulk bytes.
    return ()


def ceiling_for(name: str, **kw: Any) -> str | None:
    """The first of :func:`ceiling_candidates` (the only one, except for read_copy)."""
    cands = ceiling_candidates(name, **kw)
    return cands[0] if cands else None


def stage_pinned(stage: StageRecord) -> bool:
    """Whether a stage copied from pinned memory, per its ``pinned`` counter."""
    try:
        return bool(int(stage.counters.get("pinned", 0)))
    except (TypeError, ValueError):
        return False


def pick_ceiling(names: Sequence[str], ceilings: Ceilings) -> tuple[Ceiling | None, str | None]:
    """(the lowest measured GB/s ceiling among ``names``, None) or (None, the first name
    not measured): a bound is only known when every candidate was measured."""
    found = []
    for n in names:
        c = ceilings.get(n)
        if c is None or c.gbps is None:
            return None, n
        found.append(c)
    if not found:
        return None, None
    return min(found, key=lambda c: c.gbps or 0.0), None


def bound_for_stage(
    stage: StageRecord,
    *,
    page_state: str,
    device: str,
    pinned: bool,
    ceilings: Ceilings | None = None,
) -> str | None:
    """Name of the ceiling that bounds ``stage``, or None when none applies.

    - ``weight_read``: cold page cache → ``disk_read``; warm → ``page_cache_read``;
      uncontrolled → decided by the stage's ``disk_read_bytes`` (≥ half its bytes
      came from storage → ``disk_read``), None when that was not measured;
    - ``dtype_cast`` → ``host_memcpy`` (``device_memory`` for a cast on the GPU);
    - ``h2d_copy`` → ``h2d_pinned`` or ``h2d_pageable`` (per ``pinned``); None on CPU;
    - ``read_copy`` (reads overlapped with copies) → the slower of the read ceiling
      and the host-to-device one, which needs ``ceilings``; without, the read one;
    - ``hub_download`` and every other stage → None (a network has no measured
      ceiling here; the others move no bulk bytes).
    """
    cands = ceiling_candidates(
        stage.name,
        page_state=page_state,
        device=device,
        pinned=pinned,
        disk_read_bytes=stage.disk_read_bytes,
        nbytes=stage.bytes,
        on_device=cast_on_device(stage),
    )
    if len(cands) > 1 and ceilings is not None:
        best, _missing = pick_ceiling(cands, ceilings)
        if best is not None:
            return best.name
    return cands[0] if cands else None


def stage_ceiling_scale(stage: StageRecord, run: RunRecord | None = None) -> float | None:
    """Factor turning a ceiling into the stage's own bytes per second.

    Stages count their payload (bytes read, bytes copied); copy ceilings count bytes
    read plus written. A cast of N source bytes reads N and writes N·out/in, so at
    a memory bandwidth B it handles at most B / traffic source bytes per second.
    None when that traffic is unknown. Every other stage: 1.
    """
    if stage.name != "dtype_cast":
        return 1.0
    traffic = cast_traffic_per_byte(stage, run)
    return 1.0 / traffic if traffic else None


def page_state_of(run: RunRecord) -> str:
    """The page-cache state to judge a run by: cold only when it was verified cold."""
    page = run.cache.page
    if page == "cold" and run.cache.page_verified is False:
        return "not-cold"
    return page


def decode_bandwidth_ceiling(ceilings: Ceilings, device: str) -> Ceiling | None:
    """The bandwidth decode is bounded by: ``device_memory`` on a GPU, ``host_memcpy``
    on the CPU; None when not measured (or measured for another kind of device)."""
    if _is_gpu(device):
        if not _is_gpu(ceilings.device):
            return None
        c = ceilings.get("device_memory")
    else:
        c = ceilings.get("host_memcpy")
    return c if c is not None and c.measured else None


def matmul_ceiling(ceilings: Ceilings, device: str) -> Ceiling | None:
    """The matmul rate of the kind of device a run used, when it was measured there."""
    if _is_gpu(device) != _is_gpu(ceilings.device):
        return None
    c = ceilings.get(MATMUL)
    return c if c is not None and c.measured else None


def attach_ceilings(run: RunRecord, ceilings: Ceilings) -> RunRecord:
    """A copy of ``run`` with ``ceiling_name``/``ceiling_gbps`` filled on each stage a
    measured ceiling bounds, and the decode records' ``memory_bandwidth_gbps`` filled
    from the ceilings where the run did not measure one itself. Everything else is
    left as it was.

    ``ceiling_gbps`` is in the stage's own bytes (see :func:`stage_ceiling_scale`),
    so ``stage.ceiling_fraction`` is right as it stands: for a bf16→fp32 cast it is
    ``host_memcpy / 3``, each source byte costing 1 byte read and 2 written.
    """
    page_state = page_state_of(run)
    stages = []
    for st in run.stages:
        cands = ceiling_candidates(
            st.name,
            page_state=page_state,
            device=run.device,
            pinned=stage_pinned(st),
            disk_read_bytes=st.disk_read_bytes,
            nbytes=st.bytes,
            on_device=cast_on_device(st),
        )
        best, _missing = pick_ceiling(cands, ceilings)
        if st.name == "dtype_cast" and best is not None and best.name == "device_memory":
            if not _is_gpu(ceilings.device):
                best = None
        scale = stage_ceiling_scale(st, run)
        if best is not None and best.gbps is not None and scale is not None:
            st = replace(st, ceiling_name=best.name, ceiling_gbps=best.gbps * scale)
        stages.append(st)
    decode = []
    bw = decode_bandwidth_ceiling(ceilings, run.device)
    for d in run.decode:
        if d.memory_bandwidth_gbps is None and bw is not None:
            d = replace(d, memory_bandwidth_gbps=bw.value, bandwidth_source=f"ceilings:{bw.name}")
        decode.append(d)
    return replace(run, stages=tuple(stages), decode=tuple(decode))


# --------------------------------------------------------------------------- fingerprint


def default_folder() -> Path:
    """The Hugging Face hub cache (where models land), or its nearest existing parent."""
    hub = os.environ.get("HF_HUB_CACHE")
    if hub:
        p = Path(hub)
    else:
        home = os.environ.get("HF_HOME")
        p = Path(home) / "hub" if home else Path.home() / ".cache" / "huggingface" / "hub"
    p = p.expanduser()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def parse_device(device: str) -> str:
    """Normalise ``cpu`` | ``cuda`` | ``cuda:N``; UserError for anything else or for a
    CUDA device that is not there."""
    d = device.strip().lower()
    if d == "cpu":
        return "cpu"
    if d == "cuda" or (d.startswith("cuda:") and d[5:].isdigit()):
        import torch

        if not torch.cuda.is_available():
            raise UserError(
                f"--device {device}: no CUDA device is available "
                "(torch.cuda.is_available() is False): use --device cpu"
            )
        index = int(d[5:]) if ":" in d else torch.cuda.current_device()
        count = torch.cuda.device_count()
        if index >= count:
            raise UserError(
                f"--device {device}: this machine has {count} CUDA device(s): "
                f"use cuda:0..cuda:{count - 1}"
            )
        return f"cuda:{index}"
    raise UserError(f"unknown device {device!r}: use cpu, cuda or cuda:N")


def _gpu_driver() -> str | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            v = pynvml.nvmlSystemGetDriverVersion()
        finally:
            pynvml.nvmlShutdown()
        return v.decode() if isinstance(v, bytes) else str(v)
    except Exception:  # no NVML, no driver: the fingerprint just lacks the field
        return None


def machine_fingerprint(folder: str | os.PathLike[str], device: str) -> dict[str, Any]:
    """What must match for cached ceilings to apply: CPU model and cores, RAM, GPU
    name/driver/CUDA (of ``device``), torch version, and the filesystem (device id and
    type) holding ``folder``."""
    import psutil
    import torch

    from profiler.environment import cpu_model, filesystem_of

    st = os.stat(folder)
    fs_type, fs_source = filesystem_of(folder)
    fp: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count() or 0,
        # Whole GiB: MemTotal moves by a few MiB between boots of one machine.
        "ram_gib": round(psutil.virtual_memory().total / GIB),
        "torch": str(torch.__version__),
        "cuda": torch.version.cuda,
        "device": device,
        "gpu_name": None,
        "gpu_driver": None,
        "fs_device": f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}",
        "fs_type": fs_type,
        "fs_source": fs_source,
    }
    if _is_gpu(device):
        idx = int(device.split(":", 1)[1]) if ":" in device else 0
        fp["gpu_name"] = torch.cuda.get_device_name(idx)
        fp["gpu_driver"] = _gpu_driver()
    return fp


def fingerprint_hash(fingerprint: Mapping[str, Any]) -> str:
    blob = json.dumps(dict(fingerprint), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def cache_file(fingerprint: Mapping[str, Any], *, quick: bool) -> Path:
    """Where ceilings of this fingerprint are cached; quick results get their own
    file so they never stand in for a full measurement."""
    suffix = "-quick" if quick else ""
    return ceilings_dir() / f"{fingerprint_hash(fingerprint)}{suffix}.json"


def _read_cached(path: Path, fingerprint: Mapping[str, Any]) -> Ceilings | None:
    """Cached ceilings at ``path`` if readable and of this exact fingerprint."""
    try:
        data = json.loads(path.read_text())
        c = Ceilings.from_dict(data)
    except (OSError, ValueError, KeyError, TypeError, UserError):
        return None  # missing, torn or foreign: measure again rather than fail
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
            hit = _read_cached(path, fp)
            if hit is None:
                continue
            disk = hit.get("disk_read")
            if size_bytes is not None and (
                disk is None or disk.size_bytes != _round_size(size_bytes)
            ):
                continue
            return Lookup(hit, path, True)
    measured = measure_ceilings(
        target, device=device, quick=quick, size_bytes=size_bytes, progress=progress, fingerprint=fp
    )
    path = quick_path if quick else full_path
    write_atomic(path, (json.dumps(measured.to_dict(), indent=1) + "\n").encode())
    return Lookup(measured, path, False)


def load_or_measure(
    folder: str | os.PathLike[str] | None = None,
    *,
    refresh: bool = False,
    quick: bool = False,
    device: str = "cpu",
    size_bytes: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> Ceilings:
    """Ceilings of this machine for the filesystem of ``folder``, from the cache when
    the fingerprint matches (see :func:`lookup`), else measured now and cached."""
    return lookup(
        folder,
        refresh=refresh,
        quick=quick,
        device=device,
        size_bytes=size_bytes,
        progress=progress,
    ).ceilings


# --------------------------------------------------------------------------- probes


def _round_size(size: int) -> int:
    """Sizes are whole blocks: O_DIRECT reads need aligned lengths."""
    if size < MIN_SIZE_BYTES:
        raise UserError(
            f"size {size} bytes is below {MIN_SIZE_BYTES // MIB} MiB: pass --size 16MiB or more"
        )
    return -(-size // BLOCK_BYTES) * BLOCK_BYTES


def _available_ram() -> int:
    import psutil

    return int(psutil.virtual_memory().available)


def _on_vm() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return " hypervisor" in line
    except OSError:
        pass
    return False


def _scratch_dir(folder: Path, size: int) -> Path:
    """A writable folder on the same filesystem as ``folder``: the folder itself or
    its nearest writable parent on that filesystem."""
    import shutil

    dev = os.stat(folder).st_dev
    start = folder if folder.is_dir() else folder.parent
    for cand in (start, *start.parents):
        try:
            if os.stat(cand).st_dev != dev:
                break
        except OSError:
            break
        if os.access(cand, os.W_OK | os.X_OK):
            free = shutil.disk_usage(cand).free
            if free < size + 256 * MIB:
                raise UserError(
                    f"{cand}: {free / GIB:.1f} GiB free, the disk probe needs "
                    f"{size / GIB:.1f} GiB + 0.25 GiB: free space or pass a smaller --size"
                )
            return cand
    raise UserError(
        f"no writable folder on the filesystem of {folder} for the disk probe's scratch "
        "file: pass --path to a writable folder on the same disk"
    )


def _write_scratch(path: Path, size: int) -> None:
    """Write ``size`` bytes in which every block differs (no dedup or compression in
    the storage stack can shortcut the read), then flush them to the device."""
    import numpy as np

    base = np.frombuffer(os.urandom(BLOCK_BYTES), dtype=np.uint64).copy()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        for i in range(size // BLOCK_BYTES):
            block = np.bitwise_xor(base, np.uint64(i + 1))
            view = memoryview(block.tobytes())
            while len(view):
                n = os.write(fd, view)
                view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)


def _evict(fd: int) -> None:
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


def resident_fraction(fd: int, size: int) -> float | None:
    """Fraction of the first ``size`` bytes of ``fd`` in the page cache (mincore), or
    None where it cannot be asked."""
    if size <= 0:
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_long,
        ]
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr is None or addr == ctypes.c_void_p(-1).value:
            return None
        try:
            pages = -(-size // mmap.PAGESIZE)
            vec = (ctypes.c_ubyte * pages)()
            if libc.mincore(ctypes.c_void_p(addr), size, vec) != 0:
                return None
            # Bit 0 of each byte is the page's residency; the other bits are reserved.
            resident = sum(1 for b in bytes(vec) if b & 1)
            return resident / pages
        finally:
            libc.munmap(ctypes.c_void_p(addr), size)
    except (OSError, AttributeError):
        return None


def _read_parallel(
    fd: int, size: int, threads: int, *, scratch: Sequence[Any] = (), dest: memoryview | None = None
) -> float:
    """Read ``[0, size)`` of ``fd`` in BLOCK_BYTES requests from ``threads`` threads,
    blocks handed out in file order; return the elapsed seconds.

    Each block lands at its own offset of ``dest`` when given (a copy into memory
    that stays, as a loader does), else in the thread's reused ``scratch`` buffer.
    """
    offsets = iter(range(0, size, BLOCK_BYTES))
    lock = threading.Lock()
    errors: list[BaseException] = []
    done = [0] * threads
    views = [memoryview(b) for b in scratch]

    def worker(i: int) -> None:
        try:
            while True:
                with lock:
                    off = next(offsets, None)
                if off is None:
                    return
                n = min(BLOCK_BYTES, size - off)
                target = dest[off : off + n] if dest is not None else views[i][:n]
                got = os.preadv(fd, [target], off)
                if got != n:
                    raise OSError(errno.EIO, f"short read at {off}: {got} of {n} bytes")
                done[i] += got
        except BaseException as e:  # surfaced to the caller below
            errors.append(e)

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    t0 = time.perf_counter_ns()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = (time.perf_counter_ns() - t0) / 1e9
    if errors:
        raise errors[0]
    if sum(done) != size:
        raise OSError(errno.EIO, f"read {sum(done)} of {size} bytes")
    return elapsed


def _aligned_buffers(count: int) -> list[mmap.mmap]:
    # Anonymous mmaps are page-aligned, which O_DIRECT needs.
    return [mmap.mmap(-1, BLOCK_BYTES) for _ in range(count)]


@dataclass
class _Plan:
    disk_bytes: int
    page_bytes: int
    host_bytes: int
    gpu_bytes: int
    matmul_n: int
    disk_trials: int
    trials: int
    notes: list[str] = field(default_factory=list)


def _plan(quick: bool, size_bytes: int | None, device: str) -> _Plan:
    disk = _round_size(size_bytes if size_bytes is not None else (256 * MIB if quick else 2 * GIB))
    avail = _available_ram()
    # Page-cache probe: the file and its destination buffer must both fit with room.
    page = min(disk, max(BLOCK_BYTES, (avail // 4) // BLOCK_BYTES * BLOCK_BYTES))
    host = min(256 * MIB if quick else GIB, max(BLOCK_BYTES, avail // 4))
    plan = _Plan(
        disk_bytes=disk,
        page_bytes=page,
        host_bytes=host,
        gpu_bytes=256 * MIB if quick else GIB,
        matmul_n=(4096 if quick else 8192) if _is_gpu(device) else (1024 if quick else 2048),
        disk_trials=2 if quick else 3,
        trials=3 if quick else 5,
    )
    if page < disk:
        plan.notes.append(f"page-cache probe limited to {page // MIB} MiB by free memory")
    return plan


def ceiling_from_trials(
    name: str,
    unit: str,
    trials: Sequence[float],
    method: str,
    notes: Sequence[str] = (),
    size_bytes: int | None = None,
) -> Ceiling:
    """A ceiling whose value is the median of ``trials``."""
    if not trials:
        raise ValueError(f"{name}: no trials")
    return Ceiling(
        name=name,
        value=median(trials),
        unit=unit,
        trials=tuple(trials),
        method=method,
        notes=tuple(notes),
        size_bytes=size_bytes,
    )


def _probe_files(
    folder: Path, plan: _Plan, fs_type: str | None, say: Callable[[str], None]
) -> list[Ceiling]:
    """disk_read, page_cache_read_1t and page_cache_read, on one scratch file."""
    size = plan.disk_bytes
    scratch = _scratch_dir(folder, size)
    path = scratch / f".llmprof-ceilings-{os.getpid()}.tmp"
    say(f"writing a {size / MIB:.0f} MiB scratch file in {scratch}")
    fd_buf = -1
    fd_direct = -1
    try:
        _write_scratch(path, size)
        fd_buf = os.open(path, os.O_RDONLY)
        _evict(fd_buf)
        direct_error: str | None = None
        if hasattr(os, "O_DIRECT"):
            try:
                fd_direct = os.open(path, os.O_RDONLY | os.O_DIRECT)
            except OSError as e:
                direct_error = e.strerror or str(e)
        else:
            direct_error = "no O_DIRECT on this platform"
    finally:
        # Unlinked now, the file lives until its descriptors close: a crash below
        # leaves nothing behind.
        try:
            os.unlink(path)
        except OSError:
            pass
    try:
        disk = _probe_disk(fd_buf, fd_direct, direct_error, plan, fs_type, say)
        pages = _probe_page_cache(fd_buf, plan, say)
        return [disk, *pages]
    finally:
        for fd in (fd_buf, fd_direct):
            if fd >= 0:
                os.close(fd)


def _probe_disk(
    fd_buf: int,
    fd_direct: int,
    direct_error: str | None,
    plan: _Plan,
    fs_type: str | None,
    say: Callable[[str], None],
) -> Ceiling:
    size = plan.disk_bytes
    bufs = _aligned_buffers(READ_THREADS)
    notes: list[str] = []
    warm = min(size, 4 * BLOCK_BYTES)
    if fd_direct >= 0:
        try:
            _read_parallel(
                fd_direct, warm, READ_THREADS, scratch=bufs
            )  # warm-up: first request, queues
        except OSError as e:
            if e.errno != errno.EINVAL:
                raise
            direct_error = "reads with O_DIRECT refused (EINVAL)"
            fd_direct = -1
    trials: list[float] = []
    if fd_direct >= 0:
        say(f"disk_read: {plan.disk_trials} x {size / MIB:.0f} MiB, O_DIRECT")
        for _ in range(plan.disk_trials):
            _evict(fd_buf)
            trials.append(
                gbps_of(size, _read_parallel(fd_direct, size, READ_THREADS, scratch=bufs))
            )
        method = (
            f"O_DIRECT read of a {size / MIB:.0f} MiB scratch file, "
            f"{BLOCK_BYTES // MIB} MiB requests, {READ_THREADS} threads; "
            f"median of {plan.disk_trials} after a warm-up"
        )
        if _on_vm():
            notes.append(
                "virtual machine: the host may cache this virtual disk, so "
                "re-reads can beat the physical disk"
            )
    else:
        say(f"disk_read: {plan.disk_trials} x {size / MIB:.0f} MiB, buffered after eviction")
        notes.append(
            f"O_DIRECT unavailable ({direct_error}): buffered reads after "
            "evicting the file with fadvise(DONTNEED)"
        )
        _read_parallel(fd_buf, warm, READ_THREADS, scratch=bufs)
        worst = 0.0
        for _ in range(plan.disk_trials):
            _evict(fd_buf)
            frac = resident_fraction(fd_buf, size)
            worst = max(worst, frac or 0.0)
            trials.append(gbps_of(size, _read_parallel(fd_buf, size, READ_THREADS, scratch=bufs)))
        if worst > 0.05:
            notes.append(
                f"eviction failed: {worst:.0%} of the file stayed in memory, so "
                "this is a memory read, not a disk read"
            )
        method = (
            f"buffered read of a {size / MIB:.0f} MiB scratch file evicted with "
            f"fadvise, {BLOCK_BYTES // MIB} MiB requests, {READ_THREADS} threads; "
            f"median of {plan.disk_trials} after a warm-up"
        )
    if fs_type in ("tmpfs", "ramfs"):
        notes.append(f"{fs_type} keeps files in memory: this is no disk")
    return ceiling_from_trials("disk_read", GBPS, trials, method, notes, size)


def _probe_page_cache(fd_buf: int, plan: _Plan, say: Callable[[str], None]) -> list[Ceiling]:
    size = plan.page_bytes
    dst = bytearray(size)
    whole = memoryview(dst)
    notes = list(plan.notes)
    say(f"page_cache_read: {plan.trials} x {size / MIB:.0f} MiB, 1 and {READ_THREADS} threads")
    # Warm-up pass: brings the file into the page cache and faults the destination in.
    _read_parallel(fd_buf, size, READ_THREADS, dest=whole)
    frac = resident_fraction(fd_buf, size)
    if frac is not None and frac < 0.95:
        notes.append(f"only {frac:.0%} of the file stayed in the page cache")
    out = []
    for name, threads in (("page_cache_read_1t", 1), ("page_cache_read", READ_THREADS)):
        trials = [
            gbps_of(size, _read_parallel(fd_buf, size, threads, dest=whole))
            for _ in range(plan.trials)
        ]
        method = (
            f"buffered pread of a resident {size / MIB:.0f} MiB file into a "
            f"pre-faulted buffer, {BLOCK_BYTES // MIB} MiB requests, {threads} "
            f"thread(s); median of {plan.trials} after a warm-up"
        )
        out.append(ceiling_from_trials(name, GBPS, trials, method, notes, size))
    del whole
    return out


def _probe_host_memcpy(plan: _Plan, say: Callable[[str], None]) -> Ceiling:
    from profiler.bandwidth import measure_memory_bandwidth

    say(f"host_memcpy: {plan.trials} x {plan.host_bytes / MIB:.0f} MiB")
    r = measure_memory_bandwidth("cpu", nbytes=plan.host_bytes, trials=plan.trials)
    return Ceiling("host_memcpy", r.gbps, GBPS, tuple(r.trials_gbps), r.method, (), plan.host_bytes)


def _cuda_time(fn: Callable[[], None], repeat: int = 1) -> float:
    """Seconds per call of ``fn`` on the current stream, timed with CUDA events."""
    import torch

    start = torch.cuda.Event(enable_timing=True)
    stop = torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeat):
        fn()
    stop.record()
    stop.synchronize()
    return start.elapsed_time(stop) / 1e3 / repeat


def _probe_host_device(dev: Any, n: int, trials: int, notes: Sequence[str]) -> list[Ceiling]:
    """h2d_pageable, h2d_pinned, d2h_pinned: copies of ``n`` bytes timed with events.
    Its buffers are freed when it returns, before the device-memory probe."""
    import torch

    gpu = torch.empty(n, dtype=torch.uint8, device=dev)
    pageable = torch.empty(n, dtype=torch.uint8)
    pageable.fill_(1)  # touch every page: untouched pages all map the zero page
    pinned = torch.empty(n, dtype=torch.uint8, pin_memory=True)
    pinned.fill_(1)

    def h2d_pageable() -> None:
        gpu.copy_(pageable)

    def h2d_pinned() -> None:
        gpu.copy_(pinned, non_blocking=True)

    def d2h_pinned() -> None:
        pinned.copy_(gpu, non_blocking=True)

    cases = (
        (h2d_pageable, "pageable host tensor → device"),
        (h2d_pinned, "pinned host tensor → device, non_blocking"),
        (d2h_pinned, "device → pinned host tensor, non_blocking"),
    )
    piece = 16 * MIB

    def h2d_pageable_pieces() -> None:
        # Loaders copy tensor by tensor; the driver stages pageable copies through
        # its own pinned buffers and small copies can pipeline better than one big
        # one (seen on an H100: 7.2 GB/s whole, more in pieces). The ceiling is
        # the better of the two ways, so no loader can beat it.
        for off in range(0, n, piece):
            gpu[off : off + piece].copy_(pageable[off : off + piece])

    out = []
    for fn, what in cases:
        fn()  # warm-up
        torch.cuda.synchronize(dev)
        rates = [gbps_of(n, _cuda_time(fn)) for _ in range(trials)]
        method = (
            f"torch copy_ of {n / MIB:.0f} MiB, {what}, timed with CUDA events; "
            f"median of {trials} after a warm-up"
        )
        if fn is h2d_pageable:
            h2d_pageable_pieces()
            torch.cuda.synchronize(dev)
            pieces = [gbps_of(n, _cuda_time(h2d_pageable_pieces)) for _ in range(trials)]
            from profiler.stats import median as _median

            if _median(pieces) > _median(rates):
                method = (
                    f"torch copy_ of {n / MIB:.0f} MiB in {piece // MIB} MiB pieces, "
                    f"{what}, timed with CUDA events; median of {trials} after a warm-up "
                    f"(one {n / MIB:.0f} MiB copy: {_median(rates):.2f} GB/s)"
                )
                rates = pieces
            else:
                method += f" ({piece // MIB} MiB pieces: {_median(pieces):.2f} GB/s)"
        out.append(ceiling_from_trials(fn.__name__, GBPS, rates, method, notes, n))
    return out


def _probe_gpu(device: str, plan: _Plan, say: Callable[[str], None]) -> list[Ceiling]:
    import torch

    from profiler.bandwidth import measure_memory_bandwidth

    dev = torch.device(device)
    torch.cuda.set_device(dev)
    n = plan.gpu_bytes
    free, _ = torch.cuda.mem_get_info(dev)
    notes: list[str] = []
    if free < 3 * n:
        n = max(BLOCK_BYTES, (free // 4) // BLOCK_BYTES * BLOCK_BYTES)
        notes.append(f"sizes cut to {n // MIB} MiB by free GPU memory")
    out: list[Ceiling] = []
    say(f"h2d/d2h: {plan.trials} x {n / MIB:.0f} MiB")
    out.extend(_probe_host_device(dev, n, plan.trials, notes))
    torch.cuda.empty_cache()

    say(f"device_memory: {plan.trials} x {n / MIB:.0f} MiB")
    r = measure_memory_bandwidth(device, nbytes=n, trials=plan.trials)
    out.append(
        Ceiling("device_memory", r.gbps, GBPS, tuple(r.trials_gbps), r.method, tuple(notes), n)
    )
    torch.cuda.empty_cache()
    return out


def _probe_matmul(device: str, plan: _Plan, say: Callable[[str], None]) -> Ceiling:
    import torch

    n = plan.matmul_n
    dev = torch.device(device)
    say(f"matmul: {plan.trials} x bf16 {n}^3 on {device}")
    gen = torch.Generator(device=dev).manual_seed(0)
    # Random operands: a GPU runs measurably faster (less power) on zeros.
    a = torch.randn(n, n, dtype=torch.bfloat16, device=dev, generator=gen)
    b = torch.randn(n, n, dtype=torch.bfloat16, device=dev, generator=gen)
    c = torch.empty(n, n, dtype=torch.bfloat16, device=dev)
    notes: list[str] = []
    if _is_gpu(device):
        repeat = 10

        def fn() -> None:
            torch.matmul(a, b, out=c)

        for _ in range(3):
            fn()
        torch.cuda.synchronize(dev)
        trials = [matmul_tflops_of(n, _cuda_time(fn, repeat)) for _ in range(plan.trials)]
        method = (
            f"torch.matmul bf16 {n}x{n}x{n} on random data, mean of {repeat} per "
            f"trial timed with CUDA events; median of {plan.trials} after 3 warm-ups"
        )
    else:
        torch.matmul(a, b, out=c)
        trials = []
        for _ in range(plan.trials):
            t0 = time.perf_counter_ns()
            torch.matmul(a, b, out=c)
            trials.append(matmul_tflops_of(n, (time.perf_counter_ns() - t0) / 1e9))
        method = (
            f"torch.matmul bf16 {n}x{n}x{n} on random data, {torch.get_num_threads()} "
            f"torch thread(s), perf_counter; median of {plan.trials} after a warm-up"
        )
        notes.append("CPU matmul at a small size: a rough rate for CPU prefill MFU")
    return ceiling_from_trials(MATMUL, TFLOPS, trials, method, notes, 2 * n * n)


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
    plan = _plan(quick, size_bytes, device)
    items: dict[str, Ceiling] = {}
    for c in _probe_files(folder, plan, fp.get("fs_type"), say):
        items[c.name] = c
    items["host_memcpy"] = _probe_host_memcpy(plan, say)
    if _is_gpu(device):
        for c in _probe_gpu(device, plan, say):
            items[c.name] = c
    else:
        reason = "no GPU measured (device cpu)"
        for name in GPU_ITEMS:
            items[name] = skipped(name, GBPS, reason)
    items[MATMUL] = _probe_matmul(device, plan, say)
    return Ceilings(
        fingerprint=fp,
        measured_at=datetime.now(UTC).isoformat(timespec="seconds"),
        items={k: items[k] for k in ITEM_ORDER if k in items},
        device=device,
        folder=str(folder.resolve()),
        quick=quick,
        elapsed_s=round(time.perf_counter() - t0, 3),
    )
