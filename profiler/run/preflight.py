"""Checks of a local model folder in the parent, before any child process starts.

A bad model (a config of the wrong JSON types, an unknown ``model_type``, custom
code, a config that would allocate more memory than the machine has, damaged
checkpoint headers, a tokenizer that cannot work) is bad input: one line, exit 2,
naming the cause and the fix. Left to the child it would become a "failed
repetition" with a 40-line traceback, which reads as a fault of the run.
"""

from __future__ import annotations

import json
import os
import re
from functools import cache
from pathlib import Path
from typing import Any

from profiler.errors import UserError

REMOTE_CODE = "llmprof never runs custom code (trust_remote_code=False)"

# Config fields that must be positive whole numbers when present.
_POSITIVE_INTS = (
    "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "vocab_size", "max_position_embeddings", "n_embd", "n_layer",
    "n_head", "n_positions", "n_inner", "head_dim",
)  # fmt: skip


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """A JSON file that must hold an object; one line naming ``what`` otherwise."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read {what} ({getattr(e, 'strerror', None) or e})") from e
    except ValueError as e:
        raise UserError(
            f"{path}: {what} is not valid JSON ({str(e)[:80]}): fix or re-download it"
        ) from e
    if not isinstance(doc, dict):
        raise UserError(
            f"{path}: {what} holds a JSON {type(doc).__name__}, not an object: "
            "fix or re-download it"
        )
    return doc


@cache
def known_model_types() -> frozenset[str]:
    """The ``model_type`` names this transformers knows, read from its source text:
    importing its auto module would import torch (seconds) in the parent."""
    import importlib.util

    spec = importlib.util.find_spec("transformers")
    if spec is None or not spec.submodule_search_locations:
        return frozenset()
    auto = Path(list(spec.submodule_search_locations)[0], "models", "auto")
    names: set[str] = set()
    # transformers 4.x lists them in configuration_auto.py, 5.x in auto_mappings.py.
    for file in ("configuration_auto.py", "auto_mappings.py"):
        try:
            text = (auto / file).read_text()
        except OSError:
            continue
        names.update(re.findall(r'\(\s*"([\w\-]+)",\s*"\w+Config"\s*\)', text))
    return frozenset(names)


def check_config(folder: Path) -> dict[str, Any]:
    """``config.json``: an object, no custom code, a known ``model_type``, and sizes
    that are positive whole numbers. Returns it."""
    path = folder / "config.json"
    if not path.is_file():
        raise UserError(f"{folder}: no config.json: pass a folder saved with save_pretrained()")
    config = read_json_object(path, "config.json")
    if "auto_map" in config:
        raise UserError(f"{path}: the model needs its own Python code (auto_map): {REMOTE_CODE}")
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise UserError(f'{path}: no model_type string: add one (e.g. "llama") or re-download')
    known = known_model_types()
    if known and model_type not in known:
        raise UserError(
            f"{path}: unknown model_type {model_type!r} for this transformers: upgrade "
            f"transformers; {REMOTE_CODE}"
        )
    for key in _POSITIVE_INTS:
        value = config.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"{path}: {key} = {str(value)[:30]!r} is not a positive whole number")
    archs = config.get("architectures")
    if archs is not None and not (
        isinstance(archs, list) and all(isinstance(a, str) for a in archs)
    ):
        raise UserError(f"{path}: architectures must be a list of class names")
    return config


def estimated_bytes(config: dict[str, Any]) -> int | None:
    """Bytes a model of this config allocates, roughly (embeddings, head and per layer
    attention + MLP), at 2 bytes a parameter (the smallest usual dtype); None when
    the config does not give the sizes."""

    def get(*keys: str) -> int | None:
        for k in keys:
            v = config.get(k)
            if isinstance(v, int) and not isinstance(v, bool):
                return v
        return None

    hidden, layers = get("hidden_size", "n_embd"), get("num_hidden_layers", "n_layer")
    vocab = get("vocab_size")
    if hidden is None or layers is None or vocab is None:
        return None
    inter = get("intermediate_size", "n_inner") or 4 * hidden
    tied = config.get("tie_word_embeddings", True)
    params = vocab * hidden * (1 if tied else 2) + layers * (
        4 * hidden * hidden + 3 * hidden * inter
    )
    return params * 2


def machine_ram() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (OSError, ValueError):
        return None


def check_memory(folder: Path, config: dict[str, Any]) -> None:
    """Refuse a config whose weights alone would not fit in this machine's memory."""
    need, ram = estimated_bytes(config), machine_ram()
    if need is not None and ram and need > ram:
        raise UserError(
            f"{folder}: its config describes about {need / 1e9:.3g} GB of weights, more than "
            f"this machine's {ram / 1e9:.3g} GB of memory: use a smaller model"
        )


def check_shapes(folder: Path, config: dict[str, Any], headers: list[Any]) -> None:
    """The embedding table must be ``vocab_size × hidden_size`` as the config says."""
    vocab, hidden = config.get("vocab_size"), config.get("hidden_size", config.get("n_embd"))
    if not isinstance(vocab, int) or not isinstance(hidden, int):
        return
    for h in headers:
        for t in h.tensors:
            if t.name.endswith(("embed_tokens.weight", "wte.weight")) and len(t.shape) == 2:
                if t.shape != (vocab, hidden):
                    raise UserError(
                        f"{h.path}: tensor {t.name!r} has shape {list(t.shape)}, the config "
                        f"says [{vocab}, {hidden}] (vocab_size, hidden_size): the weights do "
                        "not belong to this config"
                    )


def check_model(folder: Path, *, chat: bool, tokenizer: bool = True) -> None:
    """Every check of a local model folder (not a .gguf file), in the order a load
    meets the files: config, memory, weights, tokenizer."""
    from profiler.load.checkpoint import find_checkpoint, read_safetensors_header
    from profiler.load.pickle_scan import check_pickle
    from profiler.run.tokenizer_check import check_tokenizer

    config = check_config(folder)
    check_memory(folder, config)
    ckpt = find_checkpoint(folder)
    if ckpt.fmt == "safetensors":
        check_shapes(folder, config, [read_safetensors_header(f) for f in ckpt.files])
    else:
        for f in ckpt.files:
            check_pickle(f)
    if tokenizer:
        check_tokenizer(folder, chat=chat)
