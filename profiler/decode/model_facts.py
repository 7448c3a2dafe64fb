"""What a model's config and parameters say about decode: context length, KV-cache
bytes per position, weight bytes a step reads, the attention backend, and whether
the model can generate at all. torch is imported inside the functions that need it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def _text_config(config: Any) -> Any:
    get = getattr(config, "get_text_config", None)
    if callable(get):
        try:
            return get()
        except Exception:  # noqa: BLE001 - an odd config: fall back to the config itself
            return config
    return config


def _first_int(obj: Any, names: Iterable[str]) -> int | None:
    for name in names:
        value = getattr(obj, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def context_length_of(config: Any) -> int | None:
    """The model's maximum number of positions, or None when the config has none."""
    return _first_int(
        _text_config(config),
        ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length", "seq_length"),
    )


def kv_bytes_per_token(config: Any, dtype_bytes: int) -> int | None:
    """KV-cache bytes that one position of one sequence adds, from the config.

    ``2 (K and V) x layers x kv_heads x head_dim x dtype_bytes``. ``kv_heads`` is
    ``num_key_value_heads`` (grouped-query attention), 1 for ``multi_query`` configs,
    else the number of attention heads (GPT-2's ``n_head``); ``head_dim`` is the
    config's own or ``hidden_size // heads`` (GPT-2: ``n_embd // n_head``). Returns
    None when the config lacks what is needed. Models whose layers do not all cache
    every position (sliding windows, linear attention) need the measured cache instead.
    """
    cfg = _text_config(config)
    if getattr(cfg, "is_encoder_decoder", False):
        return None  # decoder self- and cross-attention caches: not this formula
    layers = _first_int(cfg, ("num_hidden_layers", "n_layer", "num_layers"))
    heads = _first_int(cfg, ("num_attention_heads", "n_head", "num_heads"))
    if layers is None or heads is None:
        return None
    kv_heads = _first_int(cfg, ("num_key_value_heads", "n_kv_heads", "num_kv_heads"))
    if kv_heads is None:
        kv_heads = 1 if getattr(cfg, "multi_query", False) is True else heads
    head_dim = _first_int(cfg, ("head_dim",))
    if head_dim is None:
        hidden = _first_int(cfg, ("hidden_size", "n_embd", "d_model"))
        if hidden is None:
            return None
        head_dim = hidden // heads
    return 2 * layers * kv_heads * head_dim * dtype_bytes


def tensor_key(t: Any) -> tuple[int, int, str]:
    """Identity of a tensor's storage: tied parameters share it."""
    return (t.data_ptr(), t.numel(), str(t.dtype))


def lookup_table_keys(model: Any) -> set[tuple[int, int, str]]:
    """Keys (:func:`tensor_key`) of the embedding tables used only for lookups: input
    or position embeddings not tied to the output head."""
    import torch

    out_emb = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    out_weight = getattr(out_emb, "weight", None)
    out_key = tensor_key(out_weight) if isinstance(out_weight, torch.Tensor) else None
    tables: set[tuple[int, int, str]] = set()
    modules = list(model.modules())
    inp = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if inp is not None:
        modules.append(inp)
    for m in modules:
        w = getattr(m, "weight", None)
        if (isinstance(m, torch.nn.Embedding) or m is inp) and isinstance(w, torch.Tensor):
            k = tensor_key(w)
            if k != out_key:
                tables.add(k)
    return tables


def weight_read_bytes(model: Any) -> tuple[int, int]:
    """Bytes of weights one decode step reads, and the embedding bytes left out.

    Counts every parameter once (tied input embedding and ``lm_head`` share one
    tensor and count once; the key is the tensor's address, size and dtype). An
    embedding table used only for lookups (input or position embeddings not tied to
    the output head) is left out: a step reads one row of it per sequence, not the
    table. The output head (``lm_head``) reads its full matrix every step and is kept,
    also when it is tied to the input embedding. Returns ``(bytes_read, left_out)``.
    """
    lookup_tables = lookup_table_keys(model)
    seen: set[tuple[int, int, str]] = set()
    read = left_out = 0
    for p in model.parameters():
        k = tensor_key(p)
        if k in seen:
            continue
        seen.add(k)
        nbytes = p.numel() * p.element_size()
        if k in lookup_tables:
            left_out += nbytes
        else:
            read += nbytes
    return read, left_out


def cache_nbytes(cache: Any) -> tuple[int, int] | None:
    """Bytes held by a transformers cache object and its longest layer's positions.

    Works with ``DynamicCache`` (``cache.layers[i].keys/values``, transformers >= 4.56)
    and legacy tuples of ``(key, value)`` per layer. Returns None for anything else.
    """
    import torch

    pairs: list[tuple[Any, Any]] = []
    layers = getattr(cache, "layers", None)
    if layers is not None:
        pairs = [(getattr(la, "keys", None), getattr(la, "values", None)) for la in layers]
    elif isinstance(cache, (tuple, list)):
        pairs = [tuple(x[:2]) for x in cache if isinstance(x, (tuple, list)) and len(x) >= 2]
    total = 0
    positions = 0
    found = False
    for k, v in pairs:
        for t in (k, v):
            if isinstance(t, torch.Tensor) and t.numel():
                total += t.numel() * t.element_size()
                found = True
        if isinstance(k, torch.Tensor) and k.dim() >= 2:
            positions = max(positions, int(k.shape[-2]))
    return (total, positions) if found else None


def decode_skip_reason(model: Any) -> str | None:
    """None when ``model.generate()`` can run; else one line saying why decode is skipped."""
    name = type(model).__name__
    can = getattr(model, "can_generate", None)
    if not callable(can) or not callable(getattr(model, "generate", None)):
        return (
            f"{name} has no generation head (no generate(), e.g. an encoder): decode "
            "skipped; load it with AutoModelForCausalLM to profile decode"
        )
    try:
        ok = bool(can())
    except Exception as e:  # noqa: BLE001 - any failure here means "cannot generate"
        return f"{name}.can_generate() failed ({type(e).__name__}): decode skipped"
    config = getattr(model, "config", None)
    if ok and getattr(config, "is_encoder_decoder", False):
        return (
            f"{name} is an encoder-decoder model: per-token decode profiling supports "
            "decoder-only models; decode skipped"
        )
    if not ok:
        return (
            f"{name} has no generation head (can_generate() is False, e.g. an encoder): "
            "decode skipped; load it with AutoModelForCausalLM to profile decode"
        )
    return None


def attention_backend(model: Any, device: str) -> str:
    """The attention implementation in use, with torch's SDPA switches for ``sdpa``.

    ``model.config._attn_implementation`` names what transformers dispatches to
    (``eager``, ``sdpa``, ``flash_attention_2``...). For ``sdpa`` torch picks a kernel
    per call among the backends enabled by ``torch.backends.cuda.*_sdp_enabled()``;
    those switches steer CUDA only, so on CPU they are listed as not applying.
    """
    import torch

    impl = getattr(getattr(model, "config", None), "_attn_implementation", None) or "unknown"
    if impl != "sdpa":
        return str(impl)
    flags = []
    for name in ("flash", "mem_efficient", "cudnn", "math"):
        fn = getattr(torch.backends.cuda, f"{name}_sdp_enabled", None)
        if fn is not None:
            flags.append(f"{name}={'on' if fn() else 'off'}")
    where = "" if device.startswith("cuda") else "; CPU run: these CUDA switches do not apply"
    return f"sdpa (torch.backends.cuda SDPA: {', '.join(flags)}{where})"
