"""The tokenizer files of a model folder, checked in the parent before any child.

Each problem is named as what it is: missing files, a ``tokenizer.json`` that is
not JSON, a chat template that does not parse or raises, a special token that is
not in the vocabulary. (Left to the child, a missing tokenizer surfaced as "the
prompt is empty", and a bad ``config.json`` as "check the tokenizer files".)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from profiler.errors import UserError
from profiler.run.preflight import REMOTE_CODE, read_json_object

# Any of these makes a tokenizer transformers can load without custom code.
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model",
    "sentencepiece.bpe.model", "tiktoken.model", "vocab.model",
)  # fmt: skip
SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "pad_token")


def _token_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None


def _vocabulary(folder: Path) -> set[str] | None:
    """Every token string of ``tokenizer.json`` (vocab and added tokens); None when
    its model keeps no plain vocabulary this check can read."""
    path = folder / "tokenizer.json"
    if not path.is_file():
        return None
    doc = read_json_object(path, "tokenizer.json")
    model = doc.get("model")
    vocab = model.get("vocab") if isinstance(model, dict) else None
    if isinstance(vocab, dict):
        words = set(vocab)
    elif isinstance(vocab, list):
        words = {v[0] for v in vocab if isinstance(v, list) and v and isinstance(v[0], str)}
    else:
        return None
    for t in doc.get("added_tokens") or ():
        if isinstance(t, dict) and isinstance(t.get("content"), str):
            words.add(t["content"])
    return words


def chat_template(folder: Path, config: dict[str, Any]) -> str | None:
    """The chat template transformers would use: ``chat_template.jinja``, then
    ``chat_template.json``, then ``tokenizer_config.json``'s (the default one of a list)."""
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8", errors="replace")
    as_json = folder / "chat_template.json"
    if as_json.is_file():
        value = read_json_object(as_json, "chat_template.json").get("chat_template")
    else:
        value = config.get("chat_template")
    if isinstance(value, list):
        value = next(
            (
                t.get("template")
                for t in value
                if isinstance(t, dict) and t.get("name") == "default"
            ),
            None,
        )
    return value if isinstance(value, str) else None


def check_chat_template(folder: Path, config: dict[str, Any]) -> None:
    """Render the template once, sandboxed as transformers renders it."""
    from jinja2 import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    template = chat_template(folder, config)
    if template is None:
        raise UserError(f"{folder}: the tokenizer has no chat template: drop --chat")

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    tokens = {k: _token_text(config.get(k)) or "" for k in SPECIAL_TOKENS}
    try:
        env.from_string(template).render(
            messages=[{"role": "user", "content": "hello"}], add_generation_prompt=True, **tokens
        )
    except TemplateError as e:
        raise UserError(
            f"{folder}: the chat template fails ({type(e).__name__}: {str(e)[:100]}): "
            "fix chat_template or drop --chat"
        ) from e
    except Exception as e:  # noqa: BLE001 - a template's own code may raise anything
        raise UserError(
            f"{folder}: the chat template raises {type(e).__name__}: fix it or drop --chat"
        ) from e


def check_tokenizer(folder: Path, *, chat: bool) -> None:
    """Tokenizer files present and readable, special tokens in the vocabulary, and
    (with ``chat``) a chat template that renders."""
    cfg_path = folder / "tokenizer_config.json"
    config = read_json_object(cfg_path, "tokenizer_config.json") if cfg_path.is_file() else {}
    if "auto_map" in config:
        raise UserError(f"{cfg_path}: the tokenizer needs its own Python code: {REMOTE_CODE}")
    if not any((folder / n).is_file() for n in TOKENIZER_FILES):
        raise UserError(
            f"{folder}: no tokenizer files ({', '.join(TOKENIZER_FILES[:3])}, ...): save the "
            "tokenizer beside the model (tokenizer.save_pretrained(folder))"
        )
    words = _vocabulary(folder)
    special = folder / "special_tokens_map.json"
    named = dict(config)
    if special.is_file():
        try:
            named.update(json.loads(special.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            pass  # optional file; transformers ignores a broken one as well
    for key in SPECIAL_TOKENS:
        text = _token_text(named.get(key))
        if words is not None and text is not None and text not in words:
            raise UserError(
                f"{folder}: {key} {text[:40]!r} is not in the tokenizer's vocabulary: fix "
                "tokenizer_config.json or re-download the tokenizer"
            )
    if chat:
        check_chat_template(folder, config)
