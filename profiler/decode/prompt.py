"""The prompt of a decode profile: token ids built the same way for every run."""

from __future__ import annotations

from typing import Any

from profiler.errors import UserError
from profiler.records.job import DecodeSpec

DEFAULT_PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."


# Source text for --prompt-tokens N: tokenized, then repeated or cut to exactly N ids,
# so the prompt length is the same for every tokenizer and every run.
FIXED_TEXT = (
    "Decoding reads every weight of the model once for each new token, so its speed "
    "is set by memory bandwidth more than by arithmetic. The prompt is processed in "
    "one pass, after which each step adds one position to the key and value cache "
    "and produces one token per sequence in the batch. "
)


def _ids_of(tokenizer: Any, text: str, add_special_tokens: bool) -> list[int]:
    ids = tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]
    if ids and isinstance(ids[0], list):  # some tokenizers return a batch of one
        ids = ids[0]
    return [int(i) for i in ids]


def prompt_ids(tokenizer: Any, spec: DecodeSpec) -> list[int]:
    """The prompt as token ids (one sequence), following ``spec``.

    * ``prompt_tokens=N``: :data:`FIXED_TEXT` tokenized without special tokens,
      repeated and cut to exactly N ids, starting with BOS when the tokenizer adds
      one by default. Deterministic for a given tokenizer.
    * ``chat``: ``apply_chat_template`` on one user message with the generation
      prompt, rendered to text and tokenized without adding special tokens again
      (the template writes its own).
    * otherwise the prompt text (or :data:`DEFAULT_PROMPT`) with the tokenizer's
      usual special tokens.
    """
    if tokenizer is None:
        raise UserError("decode needs a tokenizer and none was loaded: load one with the model")
    if spec.prompt_tokens is not None:
        n = spec.prompt_tokens
        body = _ids_of(tokenizer, FIXED_TEXT, add_special_tokens=False)
        if not body:
            raise UserError(
                "the tokenizer turns the fixed prompt text into no tokens: use --prompt"
            )
        prefix: list[int] = []
        bos = getattr(tokenizer, "bos_token_id", None)
        if bos is not None:
            default = _ids_of(tokenizer, FIXED_TEXT, add_special_tokens=True)
            if default and default[0] == bos and body[0] != bos:
                prefix = [int(bos)]
        reps = -(-(n - len(prefix)) // len(body)) if n > len(prefix) else 0
        return (prefix + body * reps)[:n]
    text = spec.prompt if spec.prompt is not None else DEFAULT_PROMPT
    if spec.chat:
        if not getattr(tokenizer, "chat_template", None):
            raise UserError("the tokenizer has no chat template: drop --chat or use a chat model")
        rendered = tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
        )
        ids = _ids_of(tokenizer, rendered, add_special_tokens=False)
    else:
        ids = _ids_of(tokenizer, text, add_special_tokens=True)
    if not ids:
        raise UserError("the prompt is empty after tokenization: pass a longer prompt")
    return ids


def build_inputs(tokenizer: Any, spec: DecodeSpec, batch_size: int, device: str) -> dict:
    """``input_ids`` and ``attention_mask`` of shape ``(batch_size, prompt)`` on ``device``.

    Every row is the same prompt, so no padding is needed and every sequence does the
    same work.
    """
    import torch

    ids = prompt_ids(tokenizer, spec)
    input_ids = torch.tensor([ids] * batch_size, dtype=torch.long, device=device)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
