"""llmprof's own fast path: what the hardware allows, for comparison with the usual loads.

Many threads ``pread`` the checkpoint into small pinned host buffers and each thread
copies its chunk to one device buffer per file on its own CUDA stream, so disk or
page-cache reads overlap host-to-device copies. Tensors are then views into the
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
from typing import TYPE_CHECKING

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
from profiler.load.read import read_to_device
from profiler.measure.recorder import Recorder
from profiler.run.device_kind import is_gpu

if TYPE_CHECKING:
    import torch

MIB = 1 << 20

# Not a cold/warm verdict (profiler.caches.page holds those): the resident fraction
# from which the page-cache plan is used. The read's time goes to whichever source
# serves most of the bytes, so the plan follows the majority.
PAGE_CACHE_PLAN_MIN_RESIDENT = 0.5


def read_plan(resident_fraction: float, cpu_count: int) -> tuple[int, int]:
    """(threads, chunk bytes) for a read whose files are this much in the page cache.

    From the page cache the copy into user memory is CPU-bound and scales with
    threads; from a disk, many threads scatter requests and a few large sequential
    streams come closer to the disk's rate (measured on an H100 box: 16 threads of
    32 MiB reached 80% of the O_DIRECT rate cold, 4 threads of 64 MiB 90%)."""
    if resident_fraction >= PAGE_CACHE_PLAN_MIN_RESIDENT:
        return max(1, min(16, cpu_count)), 16 * MIB
    return max(1, min(4, cpu_count)), 64 * MIB


def load_fast(
    folder: Path,
    options: LoadOptions,
    rec: Recorder,
    *,
    threads: int | None = None,
    chunk_bytes: int | None = None,
) -> Loaded:
    """Load the model in ``folder`` through the fast path, recording into ``rec``.

    ``threads`` and ``chunk_bytes`` override :func:`read_plan` (for sweeps)."""
    import torch

    ckpt = find_checkpoint(folder) if not options.gguf_file else None
    if ckpt is None or ckpt.fmt != "safetensors":
        raise UserError(
            "the fast path reads safetensors checkpoints only: convert the weights "
            "(save_pretrained) or use the staged view"
        )
    tokenizer = tokenizer_stage(folder, options, rec)
    config, gen_config = config_stage(folder, options, rec)
    headers = [read_safetensors_header(f) for f in ckpt.files]
    stored = dominant_dtype(headers)
    dtype_name = resolve_dtype(options.dtype, config, stored)
    dtype = getattr(torch, dtype_name)
    model = model_init_stage(config, dtype, gen_config, rec)
    bufs = read_copy_stage(ckpt, options.device, rec, threads, chunk_bytes)
    state, copied = state_from_buffers(headers, bufs)
    cast_stage(state, dtype, rec, options.device)
    attach_stage(model, state, options.device, rec)
    del bufs
    return Loaded(
        model=model,
        tokenizer=tokenizer,
        config=config,
        dtype_resolved=dtype_name,
        weight_format="safetensors",
        weight_files=tuple(str(f) for f in ckpt.files),
        weight_bytes=ckpt.total_bytes,
        storage_dtype=stored,
        num_parameters=unique_param_count(model),
        notes=misaligned_note(copied),
    )


def read_copy_stage(
    ckpt: Checkpoint, device: str, rec: Recorder, threads: int | None, chunk_bytes: int | None
) -> list[torch.Tensor]:
    """The ``read_copy`` stage: every file into one ``device`` buffer, reads and
    host-to-device copies overlapped; the plan follows the measured residency."""
    from profiler.caches.page import residency

    resident = residency(list(ckpt.files)).fraction
    auto_threads, auto_chunk = read_plan(resident, os.cpu_count() or 1)
    threads = threads or auto_threads
    chunk_bytes = chunk_bytes or auto_chunk
    on_gpu = is_gpu(device)
    with rec.stage("read_copy", "bytes read and copied to the device, overlapped") as st:
        st.note(
            f"{100 * resident:.0f}% of the checkpoint was in the page cache when the "
            f"read started: {threads} threads × {chunk_bytes >> 20} MiB chunks"
        )
        bufs = read_to_device(ckpt.files, device, threads=threads, chunk_bytes=chunk_bytes)
        st.bytes = ckpt.total_bytes
        st.counters.update({"threads": threads, "chunk_bytes": chunk_bytes, "pinned": int(on_gpu)})
        st.note(
            f"{threads} threads pread into pinned buffers; async copies on one stream per thread"
            if on_gpu
            else f"{threads} threads pread into host memory"
        )
    return bufs
