"""The staged view of a GGUF checkpoint: read, dequantize, then the usual stages.

transformers loads a ``.gguf`` by dequantizing every tensor to float. Here the read
(through the page cache, with llmprof's reader) and the dequantization are stages of
their own, and the model is built on the meta device afterwards, once the
dequantized dtype is known; cast, copy and attach are the staged view's.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from profiler.load.common import (
    Loaded,
    LoadOptions,
    cast_copy_attach,
    first_float_dtype,
    model_init_stage,
    resolve_dtype,
    unique_param_count,
)
from profiler.load.read import read_scratch
from profiler.measure.recorder import Recorder

# The read buffer is reused: the bytes are wanted in the page cache, not in the
# process (dequantize reads the file again through its own mapping).
READ_BUFFER_BYTES = 64 * 1024 * 1024


def load_gguf_staged(
    folder: Path, options: LoadOptions, rec: Recorder, tokenizer: Any, config: Any, gen_config: Any
) -> Loaded:
    """GGUF: the file is read through the page cache, then dequantized to tensors
    with transformers' own GGUF support (its own stage), then cast/copied/attached."""
    import torch

    from profiler.sources import gguf as gguf_src

    path = folder / str(options.gguf_file)
    size = path.stat().st_size
    with rec.stage("weight_read", "bytes read from the GGUF file") as st:
        fd = os.open(path, os.O_RDONLY)
        try:
            read_scratch(fd, size, [bytearray(min(size, READ_BUFFER_BYTES) or 1)])
        finally:
            os.close(fd)
        st.add_bytes(size)
        st.note("read through the page cache; dequantize then reads the mapped file from memory")
    with rec.stage("dequantize", "bytes of dequantized tensors produced") as st:
        state = gguf_src.dequantize(gguf_src.read_gguf(path))
        st.add_bytes(sum(t.numel() * t.element_size() for t in state.values()))
    stored = first_float_dtype(state)
    dtype_name = resolve_dtype(options.dtype, config, stored)
    dtype = getattr(torch, dtype_name)
    note = "parameters on the meta device; built after dequantize for GGUF"
    model = model_init_stage(config, dtype, gen_config, rec, note)
    cast_copy_attach(model, state, dtype, options, rec, pinned=False)
    return Loaded(
        model=model,
        tokenizer=tokenizer,
        config=config,
        dtype_resolved=dtype_name,
        weight_format="gguf",
        weight_files=(str(path),),
        weight_bytes=size,
        storage_dtype="gguf",
        num_parameters=unique_param_count(model),
    )
