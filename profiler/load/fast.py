"""llmprof's own fast path: what the hardware allows, for comparison with the usual loads.

The read starts first, in the background (:mod:`profiler.load.copier`): many
threads ``pread`` the checkpoint into slots of a reused pinned pool and copy each
slot to one device buffer per file on their own CUDA streams, while the main thread
loads the tokenizer and builds the model on the meta device. The ``read_copy``
stage therefore overlaps ``tokenizer``, ``config`` and ``model_init`` (its counter
``overlapped`` says so; the load total counts wall time). Tensors are then views into the
device buffers (no further copy), cast on the GPU when the dtype differs, and
attached to a meta-initialized model: the same model ``from_pretrained`` builds
(tests/integration/test_staged_equals_native.py checks it on CPU; the GPU check
runs on the lent machine). The stages other than ``read_copy`` are the staged
view's own (:mod:`profiler.load.common`).

On a CPU device it degrades to parallel reads into host memory: there is no copy
to overlap.
"""

from __future__ import annotations

import os
from pathlib import Path

from profiler.errors import UserError
from profiler.load.checkpoint import (
    Checkpoint,
    dominant_dtype,
    find_checkpoint,
    misaligned_note,
    read_safetensors_header,
    state_from_buffers,
)
from profiler.load.common import (
    Loaded,
    LoadOptions,
    attach_stage,
    cast_stage,
    config_stage,
    model_init_stage,
    resolve_dtype,
    tokenizer_stage,
    unique_param_count,
)
from profiler.load.copier import CopyPlan, CopyResult, start_copy
from profiler.measure.recorder import Recorder
from profiler.records.stage import StageRecord
from profiler.run.device_kind import is_gpu

MIB = 1 << 20

# Not a cold/warm verdict (profiler.caches.page holds those): the resident fraction
# from which the page-cache plan is used. The read's time goes to whichever source
# serves most of the bytes, so the plan follows the majority.
PAGE_CACHE_PLAN_MIN_RESIDENT = 0.5


def read_plan(resident_fraction: float, cpu_count: int) -> tuple[int, int]:
    """(threads, chunk bytes) for a read whose files are this much in the page cache.

    Warm: 16 threads of 4 MiB (the H200 sweep's best through the ctypes copier,
    51.8 GB/s; reads release the GIL, so threads up to twice the cores pay).
    Cold: 16 threads of 16 MiB (the best cold pattern on the H200's disk, buffered
    16t×16MiB 1.95 GB/s against 1.93 for 4t×64MiB and 1.38 for O_DIRECT 4t×16MiB,
    reports/gpu-h200/explore/disk.json)."""
    threads = max(1, min(16, 2 * cpu_count))
    if resident_fraction >= PAGE_CACHE_PLAN_MIN_RESIDENT:
        return threads, 4 * MIB
    return threads, 16 * MIB


def copy_plan(
    resident_fraction: float,
    cpu_count: int,
    threads: int | None = None,
    chunk_bytes: int | None = None,
    slots: int | None = None,
) -> CopyPlan:
    """:func:`read_plan` with overrides, and pinned slots per thread: 3 for small
    warm chunks (copies in flight while the next reads run), 2 for large cold ones."""
    auto_threads, auto_chunk = read_plan(resident_fraction, cpu_count)
    chunk = chunk_bytes or auto_chunk
    return CopyPlan(
        threads=threads or auto_threads,
        chunk_bytes=chunk,
        slots=slots or (3 if chunk <= 4 * MIB else 2),
    )


def load_fast(
    folder: Path,
    options: LoadOptions,
    rec: Recorder,
    *,
    threads: int | None = None,
    chunk_bytes: int | None = None,
    slots: int | None = None,
    tokenizer: bool = True,
) -> Loaded:
    """Load the model in ``folder`` through the fast path, recording into ``rec``.

    ``threads``, ``chunk_bytes`` and ``slots`` override :func:`copy_plan` (sweeps);
    ``tokenizer=False`` skips the tokenizer (:mod:`profiler.fastload` returns the
    model only)."""
    import torch

    from profiler.caches.page import residency

    ckpt = find_checkpoint(folder) if not options.gguf_file else None
    if ckpt is None or ckpt.fmt != "safetensors":
        raise UserError(
            "the fast path reads safetensors checkpoints only: convert the weights "
            "(save_pretrained) or use the staged view"
        )
    headers = [read_safetensors_header(f) for f in ckpt.files]
    resident = residency(list(ckpt.files)).fraction
    plan = copy_plan(resident, os.cpu_count() or 1, threads, chunk_bytes, slots)
    job = start_copy(ckpt.files, options.device, plan, rec.clock)  # reads start now
    try:
        tok = tokenizer_stage(folder, options, rec) if tokenizer else None
        if not tokenizer:
            rec.skip("tokenizer", "not asked for")
        config, gen_config = config_stage(folder, options, rec)
        stored = dominant_dtype(headers)
        dtype_name = resolve_dtype(options.dtype, config, stored)
        dtype = getattr(torch, dtype_name)
        model = model_init_stage(config, dtype, gen_config, rec)
    except BaseException:
        try:
            job.wait()  # the copier stops (and frees its slots) before the error leaves
        except BaseException:  # the first error is the one to report
            pass
        raise
    result = job.wait()
    record_copy_stages(rec, result, ckpt, plan, resident, options.device)
    state, copied = state_from_buffers(headers, result.buffers)
    cast_stage(state, dtype, rec, options.device)
    attach_stage(model, state, options.device, rec)
    del result
    return Loaded(
        model=model,
        tokenizer=tok,
        config=config,
        dtype_resolved=dtype_name,
        weight_format="safetensors",
        weight_files=tuple(str(f) for f in ckpt.files),
        weight_bytes=ckpt.total_bytes,
        storage_dtype=stored,
        num_parameters=unique_param_count(model),
        notes=misaligned_note(copied),
    )


ENGINE_NOTES = {
    "cudart": "pread into a reused pinned pool; cudaMemcpyAsync through ctypes, one stream "
    "and {slots} slots in flight per thread",
    "torch": "pread into pinned buffers; torch async copies, one stream per thread "
    "(CUDA runtime not found for ctypes)",
    "host": "pread straight into host tensors (device cpu: no copy to overlap)",
}


def record_copy_stages(
    rec: Recorder,
    result: CopyResult,
    ckpt: Checkpoint,
    plan: CopyPlan,
    resident: float,
    device: str,
) -> None:
    """Add ``pin_pool`` (when a pool was set up) and ``read_copy`` with the copier's own
    times: it ran in the background, overlapping the stages recorded meanwhile."""
    if result.pool_start_ns is not None and result.pool_end_ns is not None:
        rec.add(
            StageRecord(
                name="pin_pool",
                status="ok",
                start_ns=result.pool_start_ns,
                end_ns=result.pool_end_ns,
                bytes=plan.pool_bytes,
                bytes_what="bytes of pinned host memory set up for the copies",
                notes=(
                    "pool reused from an earlier load in this process"
                    if result.pool_reused
                    else "pinned pool allocated (cudaHostAlloc); later loads reuse it",
                ),
                counters={"reused": int(result.pool_reused)},
            )
        )
    overlapped = [r.name for r in rec.records if r.status == "ok" and r.end_ns > result.start_ns]
    notes = [
        f"{100 * resident:.0f}% of the checkpoint was in the page cache when the read "
        f"started: {plan.threads} threads × {plan.chunk_bytes >> 20} MiB chunks",
        ENGINE_NOTES[result.engine].format(slots=plan.slots),
    ]
    if overlapped:
        notes.append("ran in the background, overlapping " + ", ".join(overlapped))
    rec.add(
        StageRecord(
            name="read_copy",
            status="ok",
            start_ns=result.start_ns,
            end_ns=result.end_ns,
            bytes=ckpt.total_bytes,
            bytes_what="bytes read and copied to the device, overlapped",
            disk_read_bytes=result.disk_read_bytes,
            notes=tuple(notes),
            counters={
                "threads": plan.threads,
                "chunk_bytes": plan.chunk_bytes,
                "slots": plan.slots,
                "files": len(ckpt.files),
                "pinned": int(is_gpu(device)),
                "engine": result.engine,
                "overlapped": len(overlapped),
            },
        )
    )
