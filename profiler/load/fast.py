"""llmprof's own fast path: what the hardware allows, for comparison with the usual loads.

Many threads ``pread`` the checkpoint into small pinned host buffers and each thread
copies its chunk to one device buffer per file on its own CUDA stream, so disk or
page-cache reads overlap host-to-device copies. Tensors are then views into the
device buffers (no further copy), cast on the GPU when the dtype differs, and
attached to a meta-initialized model: the same model ``from_pretrained`` builds
(tests/integration/test_fastpath.py checks it on CPU; the GPU check runs on the
lent machine).

On a CPU device it degrades to parallel reads into host memory: there is no copy
to overlap.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from profiler.errors import UserError
from profiler.load.checkpoint import (
    dominant_dtype,
    find_checkpoint,
    read_safetensors_header,
    tensors_from_buffer,
)
from profiler.load.common import (
    Loaded,
    LoadOptions,
    attach_state,
    init_on_meta,
    load_tokenizer,
    resolve_dtype,
)
from profiler.measure.recorder import Recorder

if TYPE_CHECKING:
    import torch
from profiler.load.read import read_to_device


def read_plan(resident_fraction: float, cpu_count: int) -> tuple[int, int]:
    """(threads, chunk bytes) for a read whose files are this much in the page cache.

    From the page cache the copy into user memory is CPU-bound and scales with
    threads; from a disk, many threads scatter requests and a few large sequential
    streams come closer to the disk's rate (measured on an H100 box: 16 threads of
    32 MiB reached 80% of the O_DIRECT rate cold, 4 threads of 64 MiB 90%)."""
    if resident_fraction >= 0.5:
        return max(1, min(16, cpu_count)), 16 * 1024 * 1024
    return max(1, min(4, cpu_count)), 64 * 1024 * 1024


def load_fast(
    folder: Path,
    options: LoadOptions,
    rec: Recorder,
    *,
    threads: int | None = None,
    chunk_bytes: int | None = None,
) -> Loaded:
    import torch
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    ckpt = find_checkpoint(folder)
    if ckpt.fmt != "safetensors":
        raise UserError("the fast path reads safetensors checkpoints only: convert the .bin first")
    with rec.stage("tokenizer"):
        tokenizer = load_tokenizer(folder, options, AutoTokenizer)
        if tokenizer.pad_token is None and tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
    with rec.stage("config"):
        config = AutoConfig.from_pretrained(folder)
        try:
            gen = GenerationConfig.from_pretrained(folder)
        except OSError:
            gen = None
    headers = [read_safetensors_header(f) for f in ckpt.files]
    stored = dominant_dtype(headers)
    dtype_name = resolve_dtype(options.dtype, config, stored)
    dtype = getattr(torch, dtype_name)
    with rec.stage("model_init"):
        model = init_on_meta(config, dtype)
    if gen is not None:
        model.generation_config = gen

    from profiler.caches.page import residency

    resident = residency(list(ckpt.files)).fraction
    auto_threads, auto_chunk = read_plan(resident, os.cpu_count() or 1)
    threads = threads or auto_threads
    chunk_bytes = chunk_bytes or auto_chunk
    with rec.stage("read_copy", "bytes read and copied to the device, overlapped") as st:
        st.note(
            f"{100 * resident:.0f}% of the checkpoint was in the page cache when the "
            f"read started: {threads} threads × {chunk_bytes >> 20} MiB chunks"
        )
        bufs = read_to_device(ckpt.files, options.device, threads=threads, chunk_bytes=chunk_bytes)
        st.bytes = ckpt.total_bytes
        st.counters.update(
            {
                "threads": threads,
                "chunk_bytes": chunk_bytes,
                "pinned": int(options.device.startswith("cuda")),
            }
        )
        st.note(
            f"{threads} threads pread into pinned buffers; async copies on one stream per thread"
            if options.device.startswith("cuda")
            else f"{threads} threads pread into host memory"
        )
    state: dict[str, torch.Tensor] = {}
    for h, b in zip(headers, bufs, strict=True):
        views, _copied = tensors_from_buffer(h, b)
        state.update(views)
    to_cast = [k for k, t in state.items() if t.is_floating_point() and t.dtype != dtype]
    if to_cast:
        with rec.stage("dtype_cast", "bytes of source tensors cast on the device") as st:
            out_bytes = 0
            for k in to_cast:
                st.add_bytes(state[k].numel() * state[k].element_size())
                state[k] = state[k].to(dtype)
                out_bytes += state[k].numel() * state[k].element_size()
            st.counters["bytes_out"] = out_bytes
            st.counters["on_device"] = int(options.device.startswith("cuda"))
            st.note("cast where the weights already are (on the GPU when device is cuda)")
    else:
        rec.skip("dtype_cast", f"weights are already stored as {dtype_name}")
    device = torch.device(options.device)
    with rec.stage("attach"):
        missing, _unexpected = attach_state(model, state)
        if missing:
            raise UserError(f"checkpoint lacks {len(missing)} weights the model needs")
        model.to(device)  # buffers only: parameters are already there
    with rec.stage("eval"):
        model.eval()
    del bufs
    return Loaded(
        model,
        tokenizer,
        config,
        dtype_name,
        "safetensors",
        tuple(str(f) for f in ckpt.files),
        ckpt.total_bytes,
        stored,
        sum(p.numel() for p in model.parameters()),
    )
