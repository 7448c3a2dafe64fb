"""TODO: docstring."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from profiler.measure.recorder import Recorder

if TYPE_CHECKING:
    import torch
from profiler.load.common import (
    Loaded,
    LoadOptions,
    cast_copy_attach,
    first_float_dtype,
    init_on_meta,
    resolve_dtype,
    unique_param_count,
)


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
        buf = torch.empty(min(size, 64 * 1024 * 1024), dtype=torch.uint8)
        st.add_bytes(_read_through(path, buf))
        st.note("read through the page cache; dequantize then reads the mapped file from memory")
    with rec.stage("dequantize", "bytes of dequantized tensors produced") as st:
        state = gguf_src.dequantize(gguf_src.read_gguf(path))
        st.add_bytes(sum(t.numel() * t.element_size() for t in state.values()))
    stored = first_float_dtype(state)
    dtype_name = resolve_dtype(options.dtype, config, stored)
    dtype = getattr(torch, dtype_name)
    with rec.stage("model_init") as st:
        model = init_on_meta(config, dtype)
        st.note("parameters on the meta device; built after dequantize for GGUF")
    if gen_config is not None:
        model.generation_config = gen_config
    cast_copy_attach(model, state, dtype, options, rec, pinned=False)
    return Loaded(
        model,
        tokenizer,
        config,
        dtype_name,
        "gguf",
        (str(path),),
        size,
        "gguf",
        unique_param_count(model),
    )


def _read_through(path: Path, buf: torch.Tensor) -> int:
    """Read a file sequentially through a small buffer (the data stays in the page
    cache for the mmap that reads it next)."""
    view = memoryview(buf.numpy()).cast("B")
    total = 0
    with open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(view)
            if not n:
                return total
            total += n
