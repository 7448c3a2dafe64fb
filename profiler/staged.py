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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from profiler.checkpoint import (
    dominant_dtype,
    find_checkpoint,
    read_file_into,
    read_safetensors_header,
    tensors_from_buffer,
)
from profiler.errors import UserError
from profiler.recorder import Recorder

if TYPE_CHECKING:
    import torch

DTYPES = ("auto", "float32", "float16", "bfloat16")


@dataclass(frozen=True)
class LoadOptions:
    dtype: str = "auto"
    device: str = "cpu"
    read_threads: int = 4
    pinned: bool = False  # stage weights in pinned host memory before the copy
    gguf_file: str | None = None


@dataclass
class Loaded:
    """What a load produced: the model, its tokenizer and facts found on the way."""

    model: Any
    tokenizer: Any
    config: Any
    dtype_resolved: str
    weight_format: str
    weight_files: tuple[str, ...]
    weight_bytes: int
    storage_dtype: str | None
    num_parameters: int
    notes: list[str] = field(default_factory=list)


def resolve_dtype(requested: str, config: Any, stored: str | None) -> str:
    """'auto' means what transformers 5 means: the dtype in config.json, else the
    dtype the weights are stored in, else float32."""
    if requested not in DTYPES:
        raise UserError(f"unknown dtype {requested!r}: use one of {', '.join(DTYPES)}")
    if requested != "auto":
        return requested
    cfg = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if cfg is not None:
        name = str(cfg).replace("torch.", "")
        if name in DTYPES:
            return name
    return stored or "float32"


def _first_float_dtype(tensors: dict[str, torch.Tensor]) -> str | None:
    for t in tensors.values():
        if t.is_floating_point():
            return str(t.dtype).replace("torch.", "")
    return None


def _sync_for(device: str) -> Any:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.synchronize
    return None


def load_staged(folder: Path, options: LoadOptions, rec: Recorder) -> Loaded:
    """Load the model in ``folder`` stage by stage, recording into ``rec``."""
    import torch
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    notes: list[str] = []

    with rec.stage("tokenizer") as st:
        tokenizer = _load_tokenizer(folder, options, AutoTokenizer)
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
        return _load_gguf_staged(folder, options, rec, tokenizer, config, gen_config)

    ckpt = find_checkpoint(folder)
    headers = [read_safetensors_header(f) for f in ckpt.files] if ckpt.fmt == "safetensors" else []
    stored = dominant_dtype(headers)
    dtype_name = resolve_dtype(options.dtype, config, stored)
    dtype = getattr(torch, dtype_name)

    with rec.stage("model_init") as st:
        model = _init_on_meta(config, dtype)
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
        stored = _first_float_dtype(state)

    _cast_copy_attach(model, state, dtype, options, rec, pin)
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
        num_parameters=_unique_param_count(model),
        notes=notes,
    )


def _load_tokenizer(folder: Path, options: LoadOptions, auto: Any) -> Any:
    try:
        if options.gguf_file:
            return auto.from_pretrained(folder, gguf_file=options.gguf_file)
        return auto.from_pretrained(folder)
    except (OSError, ValueError) as e:
        raise UserError(
            f"{folder}: cannot load the tokenizer ({str(e).splitlines()[0][:200]})"
            ": check the tokenizer files"
        ) from e


def model_class(config: Any) -> Any:
    """The class a checkpoint declares (``config.architectures``), as transformers'
    own pipelines pick it; else the causal-LM auto class. An encoder such as BERT
    then loads as what it is, and decode is skipped with a reason instead of a
    decoder head being grafted on."""
    import transformers

    for name in getattr(config, "architectures", None) or ():
        cls = getattr(transformers, name, None)
        if cls is not None:
            return cls
    return transformers.AutoModelForCausalLM


def _init_on_meta(config: Any, dtype: torch.dtype) -> Any:
    """Build the model with parameters on the meta device and real buffers.

    Buffers (rotary frequencies, causal masks) are computed at construction and
    are not in the checkpoint, so they must be real; parameters come from the file.
    """
    from accelerate import init_empty_weights

    cls = model_class(config)
    with init_empty_weights(include_buffers=False):
        try:
            if hasattr(cls, "from_config"):
                return cls.from_config(config, dtype=dtype)
            return cls._from_config(config, dtype=dtype)
        except ValueError as e:
            raise UserError(
                f"transformers cannot build model type {getattr(config, 'model_type', '?')!r}"
                f" ({str(e).splitlines()[0][:120]}): check the folder's config.json"
            ) from e


def _cast_copy_attach(
    model: Any,
    state: dict[str, torch.Tensor],
    dtype: torch.dtype,
    options: LoadOptions,
    rec: Recorder,
    pinned: bool,
) -> None:
    import torch

    # dtype_cast on the CPU, as from_pretrained does before any device copy.
    to_cast = [k for k, t in state.items() if t.is_floating_point() and t.dtype != dtype]
    if not to_cast:
        rec.skip("dtype_cast", f"weights are already stored as {str(dtype).replace('torch.', '')}")
    else:
        with rec.stage("dtype_cast", "bytes of source tensors cast on the CPU") as st:
            src_dtypes = sorted({str(state[k].dtype).replace("torch.", "") for k in to_cast})
            out_bytes = 0
            for k in to_cast:
                t = state[k]
                st.add_bytes(t.numel() * t.element_size())
                state[k] = t.to(dtype)
                out_bytes += state[k].numel() * state[k].element_size()
            st.counters["bytes_out"] = out_bytes  # cast traffic = bytes in + bytes out
            st.counters["on_device"] = 0
            st.note(f"{'/'.join(src_dtypes)} → {str(dtype).replace('torch.', '')} on the CPU")
            st.counters["tensors"] = len(to_cast)

    device = torch.device(options.device)
    if device.type == "cpu":
        rec.skip("h2d_copy", "device is cpu: weights stay in host memory")
    else:
        with rec.stage("h2d_copy", "bytes copied host → device") as st:
            st.counters["pinned"] = int(pinned)
            st.counters["tensors"] = len(state)
            for k, t in state.items():
                st.add_bytes(t.numel() * t.element_size())
                state[k] = t.to(device, non_blocking=pinned)
            st.note(("from pinned" if pinned else "from pageable") + " host memory, synchronized")

    with rec.stage("attach", "bytes of non-persistent buffers moved") as st:
        missing, unexpected = _attach(model, state)
        moved = 0
        for _, buf in model.named_buffers():
            if buf.device != device:
                moved += buf.numel() * buf.element_size()
        if moved:
            model.to(device)  # parameters are already there; this moves buffers only
        st.bytes = moved
        if unexpected:
            st.note(f"{len(unexpected)} checkpoint keys unused (e.g. {sorted(unexpected)[0]})")
        if missing:
            raise UserError(
                f"checkpoint lacks {len(missing)} weights the model needs (e.g. "
                f"{sorted(missing)[0]}): the folder does not match its config.json"
            )

    with rec.stage("eval"):
        model.eval()


def _attach(model: Any, state: dict[str, torch.Tensor]) -> tuple[set[str], set[str]]:
    """Make the loaded tensors the model's parameters (no copy), then tie weights.

    Old checkpoints (GPT-2) store keys without the base-model prefix; they are
    mapped the way transformers maps them.
    """
    expected = set(model.state_dict().keys())
    prefix = getattr(model, "base_model_prefix", "")
    if prefix and not (expected & set(state)):
        state = {(k if k in expected else f"{prefix}.{k}"): v for k, v in state.items()}
    result = model.load_state_dict(state, strict=False, assign=True)
    model.tie_weights()
    still_meta = {
        n for n, p in model.named_parameters(remove_duplicate=False) if p.device.type == "meta"
    }
    return still_meta, set(result.unexpected_keys)


def _unique_param_count(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def _load_gguf_staged(
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
    stored = _first_float_dtype(state)
    dtype_name = resolve_dtype(options.dtype, config, stored)
    dtype = getattr(torch, dtype_name)
    with rec.stage("model_init") as st:
        model = _init_on_meta(config, dtype)
        st.note("parameters on the meta device; built after dequantize for GGUF")
    if gen_config is not None:
        model.generation_config = gen_config
    _cast_copy_attach(model, state, dtype, options, rec, pinned=False)
    return Loaded(
        model,
        tokenizer,
        config,
        dtype_name,
        "gguf",
        (str(path),),
        size,
        "gguf",
        _unique_param_count(model),
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
