"""TODO: docstring."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from profiler.errors import UserError
from profiler.measure.recorder import Recorder

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


def first_float_dtype(tensors: dict[str, torch.Tensor]) -> str | None:
    for t in tensors.values():
        if t.is_floating_point():
            return str(t.dtype).replace("torch.", "")
    return None


def _sync_for(device: str) -> Any:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.synchronize
    return None


def load_tokenizer(folder: Path, options: LoadOptions, auto: Any) -> Any:
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


def init_on_meta(config: Any, dtype: torch.dtype) -> Any:
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


def attach_state(model: Any, state: dict[str, torch.Tensor]) -> tuple[set[str], set[str]]:
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


def unique_param_count(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def cast_copy_attach(
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
        missing, unexpected = attach_state(model, state)
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
