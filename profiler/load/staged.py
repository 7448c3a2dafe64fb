"""The staged view: a model load done as explicit, sequential stages.

Each stage does one kind of work with public APIs and has a clean boundary, a byte
count and a GB/s figure:

    tokenizer → config → model_init (meta) → weight_read → [deserialize | dequantize]
    → dtype_cast (CPU) → h2d_copy → attach (+ tie, buffers) → eval

The result is the same model ``from_pretrained`` gives (same tensors, dtypes and
devices: tests/integration/test_staged_equals_native.py checks it). The order of
cast and copy mirrors transformers: weights are cast on the CPU, then copied.
"""

from __future__ import annotations

import io
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
    cast_copy_attach,
    config_stage,
    first_float_dtype,
    model_init_stage,
    resolve_dtype,
    tokenizer_stage,
    unique_param_count,
)
from profiler.load.gguf import load_gguf_staged
from profiler.load.read import byte_view, read_file_into
from profiler.measure.recorder import Recorder
from profiler.run.device_kind import is_gpu

if TYPE_CHECKING:
    import torch


def load_staged(folder: Path, options: LoadOptions, rec: Recorder) -> Loaded:
    """Load the model in ``folder`` stage by stage, recording into ``rec``."""
    import torch

    tokenizer = tokenizer_stage(folder, options, rec)
    config, gen_config = config_stage(folder, options, rec)
    if options.gguf_file:
        return load_gguf_staged(folder, options, rec, tokenizer, config, gen_config)

    ckpt = find_checkpoint(folder)
    headers = [read_safetensors_header(f) for f in ckpt.files] if ckpt.fmt == "safetensors" else []
    stored = dominant_dtype(headers)
    dtype_name = resolve_dtype(options.dtype, config, stored)
    dtype = getattr(torch, dtype_name)
    model = model_init_stage(config, dtype, gen_config, rec)

    pin = options.pinned and is_gpu(options.device)
    buffers = weight_read_stage(ckpt, options, rec, pin)
    if ckpt.fmt == "safetensors":
        state, copied = state_from_buffers(headers, buffers)
        notes = misaligned_note(copied)
        rec.skip("deserialize", "safetensors tensors are zero-copy views of the read bytes")
    else:
        state = deserialize_stage(buffers, rec)
        notes = []
        buffers.clear()
        stored = first_float_dtype(state)

    cast_copy_attach(model, state, dtype, options, rec, pin)
    del buffers
    return Loaded(
        model=model,
        tokenizer=tokenizer,
        config=config,
        dtype_resolved=dtype_name,
        weight_format=ckpt.fmt,
        weight_files=tuple(str(f) for f in ckpt.files),
        weight_bytes=ckpt.total_bytes,
        storage_dtype=stored,
        num_parameters=unique_param_count(model),
        notes=notes,
    )


def weight_read_stage(
    ckpt: Checkpoint, options: LoadOptions, rec: Recorder, pin: bool
) -> list[torch.Tensor]:
    """The ``weight_read`` stage: every byte of every file into process memory, one
    buffer per file (pinned when ``pin``)."""
    import torch

    total = ckpt.total_bytes
    buffers: list[torch.Tensor] = []
    with rec.stage("weight_read", "bytes read from the checkpoint files") as st:
        done = [0]

        def on_bytes(n: int) -> None:
            done[0] += n
            st.progress(done[0], total)

        for f in ckpt.files:
            buf = torch.empty(f.stat().st_size, dtype=torch.uint8, pin_memory=pin)
            st.add_bytes(read_file_into(f, buf, threads=options.read_threads, on_bytes=on_bytes))
            buffers.append(buf)
        st.counters["files"] = len(ckpt.files)
        st.counters["threads"] = options.read_threads
        st.counters["pinned"] = int(pin)
        if st.bytes != total:
            raise UserError(f"read {st.bytes} bytes but the checkpoint has {total}: files changed?")
    return buffers


def deserialize_stage(buffers: list[torch.Tensor], rec: Recorder) -> dict[str, torch.Tensor]:
    """The ``deserialize`` stage of a ``.bin`` checkpoint: unpickle each read file."""
    import torch

    state: dict[str, torch.Tensor] = {}
    with rec.stage("deserialize", "bytes unpickled from pytorch_model.bin") as st:
        for buf in buffers:
            part = torch.load(io.BytesIO(byte_view(buf)), map_location="cpu", weights_only=True)
            state.update(part)
            st.add_bytes(buf.numel())
        st.note("torch.load copies each tensor out of the pickle: bytes are moved once more")
    return state
