"""What the staged view and the fast path share: options, result, and the stages
that do not depend on how the weight bytes were read.

Both views run the same tokenizer, config, model_init, dtype_cast, attach and eval
stages from here, so the two differ only where they mean to (how the bytes get to
the device) and their stage tables compare like for like. The native view does
not use them: it times plain ``from_pretrained`` as users call it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from profiler.errors import UserError
from profiler.measure.recorder import Recorder
from profiler.run.device_kind import is_gpu

if TYPE_CHECKING:
    import torch


DTYPES = ("auto", "float32", "float16", "bfloat16")


@dataclass(frozen=True)
class LoadOptions:
    """How to load: dtype asked for, device, reader threads, pinned staging, GGUF file."""

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
    """The dtype name of the first floating-point tensor, or None."""
    for t in tensors.values():
        if t.is_floating_point():
            return dtype_name_of(t.dtype)
    return None


def dtype_name_of(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` → ``"bfloat16"``."""
    return str(dtype).replace("torch.", "")


def load_tokenizer(folder: Path, options: LoadOptions, auto: Any) -> Any:
    """``auto.from_pretrained`` on the folder (and GGUF file); UserError when it fails."""
    try:
        if options.gguf_file:
            return auto.from_pretrained(
                folder, gguf_file=options.gguf_file, trust_remote_code=False
            )
        return auto.from_pretrained(folder, trust_remote_code=False)
    except (OSError, ValueError) as e:
        raise load_error(folder, "tokenizer", e) from e


def load_error(folder: Path, what: str, e: Exception) -> UserError:
    """The one line for a failed transformers load that names the real cause: custom
    code refused, an invalid config.json, or else the files of ``what``."""
    from profiler.run.preflight import REMOTE_CODE

    text = str(e)
    first = text.splitlines()[0][:200] if text else type(e).__name__
    if "trust_remote_code" in text:
        return UserError(f"{folder}: the model needs its own Python code: {REMOTE_CODE}")
    if "config.json" in text and what != "config":
        return UserError(f"{folder}: invalid config.json ({first}): fix or re-download it")
    return UserError(f"{folder}: cannot load the {what} ({first}): check the {what} files")


def tokenizer_stage(folder: Path, options: LoadOptions, rec: Recorder) -> Any:
    """The ``tokenizer`` stage: load it, and give it a pad token when it has none."""
    from transformers import AutoTokenizer

    with rec.stage("tokenizer") as st:
        tokenizer = load_tokenizer(folder, options, AutoTokenizer)
        st.counters["vocab_size"] = len(tokenizer)
        if tokenizer.pad_token is None and tokenizer.eos_token is not None:
            # As the seed tutorial does: generate() needs a pad token for batches.
            tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def config_stage(folder: Path, options: LoadOptions, rec: Recorder) -> tuple[Any, Any]:
    """The ``config`` stage: (model config, generation config or None)."""
    from transformers import AutoConfig, GenerationConfig

    gguf = {"gguf_file": options.gguf_file} if options.gguf_file else {}
    with rec.stage("config") as st:
        try:
            config = AutoConfig.from_pretrained(folder, trust_remote_code=False, **gguf)
        except (OSError, ValueError) as e:
            raise load_error(folder, "config", e) from e
        try:
            gen_config = GenerationConfig.from_pretrained(folder)
        except OSError:
            gen_config = None
            st.note("no generation_config.json: generate() uses defaults from config")
    return config, gen_config


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
                return cls.from_config(config, dtype=dtype, trust_remote_code=False)
            return cls._from_config(config, dtype=dtype)
        except ValueError as e:
            raise UserError(
                f"transformers cannot build model type {getattr(config, 'model_type', '?')!r}"
                f" ({str(e).splitlines()[0][:120]}): check the folder's config.json"
            ) from e


def model_init_stage(
    config: Any,
    dtype: torch.dtype,
    gen_config: Any,
    rec: Recorder,
    note: str = "parameters on the meta device (no memory, no random init); buffers on CPU",
) -> Any:
    """The ``model_init`` stage (:func:`init_on_meta`); the generation config is set
    after it, outside the stage."""
    with rec.stage("model_init") as st:
        model = init_on_meta(config, dtype)
        st.note(note)
    if gen_config is not None:
        model.generation_config = gen_config
    return model


def attach_state(model: Any, state: dict[str, torch.Tensor]) -> tuple[set[str], set[str]]:
    """Make the loaded tensors the model's parameters (no copy), then tie weights.

    Old checkpoints (GPT-2) store keys without the base-model prefix; they are
    mapped the way transformers maps them. Returns (parameters still on the meta
    device, checkpoint keys the model did not take).
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
    """Parameters of the model, tied ones once (``parameters()`` skips duplicates)."""
    return sum(p.numel() for p in model.parameters())


def cast_stage(
    state: dict[str, torch.Tensor], dtype: torch.dtype, rec: Recorder, device: str | None = None
) -> None:
    """The ``dtype_cast`` stage: floating-point tensors not in ``dtype`` are cast in
    place in ``state``. ``device`` None: on the CPU before any copy, as
    ``from_pretrained`` does; else on that device, where the weights already are."""
    to_cast = [k for k, t in state.items() if t.is_floating_point() and t.dtype != dtype]
    if not to_cast:
        rec.skip("dtype_cast", f"weights are already stored as {dtype_name_of(dtype)}")
        return
    where = "the CPU" if device is None else "the device"
    with rec.stage("dtype_cast", f"bytes of source tensors cast on {where}") as st:
        src_dtypes = sorted({dtype_name_of(state[k].dtype) for k in to_cast})
        out_bytes = 0
        for k in to_cast:
            t = state[k]
            st.add_bytes(t.numel() * t.element_size())
            state[k] = t.to(dtype)
            out_bytes += state[k].numel() * state[k].element_size()
        st.counters["bytes_out"] = out_bytes  # cast traffic = bytes in + bytes out
        st.counters["on_device"] = int(device is not None and is_gpu(device))
        st.counters["tensors"] = len(to_cast)
        on = "the CPU" if device is None else f"{device}, where the weights already are"
        st.note(f"{'/'.join(src_dtypes)} → {dtype_name_of(dtype)} on {on}")


def attach_stage(model: Any, state: dict[str, torch.Tensor], device: str, rec: Recorder) -> None:
    """The ``attach`` stage (:func:`attach_state`, then buffers moved to ``device``)
    and the ``eval`` stage. UserError when the checkpoint lacks weights."""
    import torch

    dev = torch.device(device)
    with rec.stage("attach", "bytes of non-persistent buffers moved") as st:
        missing, unexpected = attach_state(model, state)
        moved = 0
        for _, buf in model.named_buffers():
            if buf.device != dev:
                moved += buf.numel() * buf.element_size()
        if moved:
            model.to(dev)  # parameters are already there; this moves buffers only
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


def cast_copy_attach(
    model: Any,
    state: dict[str, torch.Tensor],
    dtype: torch.dtype,
    options: LoadOptions,
    rec: Recorder,
    pinned: bool,
) -> None:
    """The staged view's last stages: dtype_cast on the CPU, h2d_copy, attach, eval."""
    cast_stage(state, dtype, rec)
    if not is_gpu(options.device):
        rec.skip("h2d_copy", "device is cpu: weights stay in host memory")
    else:
        import torch

        device = torch.device(options.device)
        with rec.stage("h2d_copy", "bytes copied host → device") as st:
            st.counters["pinned"] = int(pinned)
            st.counters["tensors"] = len(state)
            for k, t in state.items():
                st.add_bytes(t.numel() * t.element_size())
                state[k] = t.to(device, non_blocking=pinned)
            st.note(("from pinned" if pinned else "from pageable") + " host memory, synchronized")
    attach_stage(model, state, options.device, rec)
