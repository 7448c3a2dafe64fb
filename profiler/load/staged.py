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
    dominant_dtype,
    find_checkpoint,
    read_safetensors_header,
    tensors_from_buffer,
)
from profiler.load.read import read_file_into
from profiler.measure.recorder import Recorder

if TYPE_CHECKING:
    import torch
from profiler.load.common import (
    Loaded,
    LoadOptions,
    cast_copy_attach,
    first_float_dtype,
    init_on_meta,
    load_tokenizer,
    resolve_dtype,
    unique_param_count,
)
from profiler.load.gguf import load_gguf_staged


def load_staged(folder: Path, options: LoadOptions, rec: Recorder) -> Loaded:
    """Load the model in ``folder`` stage by stage, recording into ``rec``."""
    import torch
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    notes: list[str] = []

    with rec.stage("tokenizer") as st:
        tokenizer = load_tokenizer(folder, options, AutoTokenizer)
        st.counters["vocab_size"] = len(tokenizer)
        if tokenizer.pad_token is None and tokenizer.eos_token is not None:
            # As the seed tutorial does: generate() needs a pad token for batches.
            tokenizer.pad_token = tokenizer.eos_token

    with rec.stage("config") as st:
        if options.gguf_file:
            config = AutoConfig.from_pretrained(folder, gguf_file=options.gguf_file)
        else:
            config = AutoConfig.from_pretrained(folder)
        try:
            gen_config = GenerationConfig.from_pretrained(folder)
        except OSError:
            gen_config = None
            st.note("no generation_config.json: generate() uses defaults from config")

    if options.gguf_file:
        return load_gguf_staged(folder, options, rec, tokenizer, config, gen_config)

    ckpt = find_checkpoint(folder)
    headers = [read_safetensors_header(f) for f in ckpt.files] if ckpt.fmt == "safetensors" else []
    stored = dominant_dtype(headers)
    dtype_name = resolve_dtype(options.dtype, config, stored)
    dtype = getattr(torch, dtype_name)

    with rec.stage("model_init") as st:
        model = init_on_meta(config, dtype)
        st.note("parameters on the meta device (no memory, no random init); buffers on CPU")
    if gen_config is not None:
        model.generation_config = gen_config

    # weight_read: every byte of every file into process memory.
    total = ckpt.total_bytes
    pin = options.pinned and options.device.startswith("cuda")
    buffers: list[torch.Tensor] = []
    with rec.stage("weight_read", "bytes read from the checkpoint files") as st:
        done = [0]

        def on_bytes(n: int) -> None:
            done[0] += n
            st.progress(done[0], total)

        for f in ckpt.files:
            size = f.stat().st_size
            buf = torch.empty(size, dtype=torch.uint8, pin_memory=pin)
            st.add_bytes(read_file_into(f, buf, threads=options.read_threads, on_bytes=on_bytes))
            buffers.append(buf)
        st.counters["files"] = len(ckpt.files)
        st.counters["threads"] = options.read_threads
        st.counters["pinned"] = int(pin)
        if st.bytes != total:
            raise UserError(f"read {st.bytes} bytes but the checkpoint has {total}: files changed?")

    state: dict[str, torch.Tensor] = {}
    if ckpt.fmt == "safetensors":
        copied = 0
        for h, buf in zip(headers, buffers, strict=True):
            views, c = tensors_from_buffer(h, buf)
            state.update(views)
            copied += c
        if copied:
            notes.append(f"{copied} bytes of misaligned tensors were copied during the read")
        rec.skip("deserialize", "safetensors tensors are zero-copy views of the read bytes")
    else:
        with rec.stage("deserialize", "bytes unpickled from pytorch_model.bin") as st:
            for buf in buffers:
                part = torch.load(
                    io.BytesIO(memoryview(buf.numpy())), map_location="cpu", weights_only=True
                )
                state.update(part)
                st.add_bytes(buf.numel())
            st.note("torch.load copies each tensor out of the pickle: bytes are moved once more")
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
        weight_bytes=total,
        storage_dtype=stored,
        num_parameters=unique_param_count(model),
        notes=notes,
    )
