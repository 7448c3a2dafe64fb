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
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from profiler.checkpoint import (
    dominant_dtype,
    find_checkpoint,
    read_safetensors_header,
    tensors_from_buffer,
)
from profiler.errors import UserError
from profiler.recorder import Recorder
from profiler.staged import (
    Loaded,
    LoadOptions,
    _attach,
    _init_on_meta,
    _load_tokenizer,
    resolve_dtype,
)

if TYPE_CHECKING:
    import torch


def _plan(sizes: Sequence[int], chunk: int) -> list[tuple[int, int, int]]:
    """(file index, offset, length) chunks covering every file, in file order."""
    out: list[tuple[int, int, int]] = []
    for i, size in enumerate(sizes):
        out.extend((i, off, min(chunk, size - off)) for off in range(0, size, chunk))
    return out


def read_to_device(
    paths: Sequence[Path],
    device: str,
    *,
    threads: int,
    chunk_bytes: int,
) -> list[torch.Tensor]:
    """Read every file into one device (or host) uint8 tensor per file."""
    import torch

    sizes = [p.stat().st_size for p in paths]
    on_cuda = device.startswith("cuda")
    dst = [torch.empty(s, dtype=torch.uint8, device=device) for s in sizes]
    plan = _plan(sizes, chunk_bytes)
    fds = [os.open(p, os.O_RDONLY) for p in paths]
    errors: list[BaseException] = []
    lock = threading.Lock()
    next_index = [0]

    def take() -> tuple[int, int, int] | None:
        with lock:
            if next_index[0] >= len(plan):
                return None
            item = plan[next_index[0]]
            next_index[0] += 1
            return item

    def pread_into(fd: int, view: memoryview, offset: int) -> None:
        done = 0
        while done < len(view):
            got = os.preadv(fd, [view[done:]], offset + done)
            if got <= 0:
                raise UserError("checkpoint file ended early while reading: re-download it")
            done += got

    def worker() -> None:
        try:
            if not on_cuda:
                while (item := take()) is not None:
                    f, off, n = item
                    view = memoryview(dst[f].numpy()).cast("B")[off : off + n]
                    pread_into(fds[f], view, off)
                return
            stream = torch.cuda.Stream(device=device)
            bufs = [torch.empty(chunk_bytes, dtype=torch.uint8, pin_memory=True) for _ in range(2)]
            done_events: list[Any] = [None, None]
            k = 0
            while (item := take()) is not None:
                f, off, n = item
                slot = k % 2
                if done_events[slot] is not None:
                    done_events[slot].synchronize()  # the copy out of this buffer finished
                buf = bufs[slot]
                pread_into(fds[f], memoryview(buf.numpy()).cast("B")[:n], off)
                with torch.cuda.stream(stream):
                    dst[f][off : off + n].copy_(buf[:n], non_blocking=True)
                    ev = torch.cuda.Event()
                    ev.record(stream)
                done_events[slot] = ev
                k += 1
            stream.synchronize()
        except BaseException as e:  # surfaced after join
            errors.append(e)

    pool = [threading.Thread(target=worker, name=f"llmprof-read-{i}") for i in range(threads)]
    try:
        for t in pool:
            t.start()
        for t in pool:
            t.join()
    finally:
        for fd in fds:
            os.close(fd)
    if errors:
        raise errors[0]
    return dst


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
        tokenizer = _load_tokenizer(folder, options, AutoTokenizer)
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
        model = _init_on_meta(config, dtype)
    if gen is not None:
        model.generation_config = gen

    from profiler.caches import residency

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
        missing, _unexpected = _attach(model, state)
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
