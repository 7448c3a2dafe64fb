"""The rules a decode spec must follow, in one pure function (no torch).

:func:`validate_decode_spec` is called twice on the same rules: by the commands
before any child process starts, on everything the spec itself says, and by the
decode loop once the prompt is tokenized, when the prompt length and the model's
context are known. Messages name the command-line options; suite files use the
same names with underscores.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from types import SimpleNamespace

from profiler.errors import UserError
from profiler.records.job import DecodeSpec

# Fewer than 2 new tokens give no token-to-token interval: no step time, no tokens/s.
MIN_NEW_TOKENS = 2


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _check_batches(batch_sizes: tuple[int, ...]) -> None:
    if not batch_sizes:
        raise UserError("no batch size given: pass at least one batch size >= 1 (--batch)")
    for b in batch_sizes:
        if not _positive_int(b):
            raise UserError(f"--batch {b!r}: batch sizes must be at least 1")
    if len(set(batch_sizes)) != len(batch_sizes):
        raise UserError(
            f"--batch {','.join(map(str, batch_sizes))} repeats a size: give each size once"
        )


def _check_prompt(spec: DecodeSpec) -> None:
    if spec.prompt is not None and spec.prompt_tokens is not None:
        raise UserError("both --prompt and --prompt-tokens given: pass only one")
    if spec.prompt_tokens is not None and not _positive_int(spec.prompt_tokens):
        raise UserError(f"--prompt-tokens {spec.prompt_tokens!r}: use 1 or more prompt tokens")
    if spec.chat and spec.prompt_tokens is not None:
        raise UserError(
            "--chat with --prompt-tokens: the chat template adds tokens, so pass a "
            "prompt text with --chat, or drop --chat"
        )
    sweep = spec.prompt_sweep
    if sweep:
        bad = [n for n in sweep if not _positive_int(n)]
        if bad:
            raise UserError(f"--prompt-tokens {bad[0]!r}: use 1 or more prompt tokens")
        if len(set(sweep)) != len(sweep):
            raise UserError(
                f"--prompt-tokens {','.join(map(str, sweep))} repeats a length: give each once"
            )
    if spec.prompt is not None and not spec.prompt.strip():
        raise UserError("--prompt is empty: pass some text or --prompt-tokens")


def validate_decode_spec(
    spec: DecodeSpec, *, context_length: int | None = None, prompt_length: int | None = None
) -> None:
    """Raise :class:`UserError` (one line) when ``spec`` cannot be run.

    ``context_length`` (the model's maximum positions) and ``prompt_length`` (the
    prompt's token count, defaulting to ``spec.prompt_tokens``) add the context
    check; a text prompt's length is known only after tokenization.
    """
    _check_batches(spec.batch_sizes)
    if not _positive_int(spec.new_tokens) or spec.new_tokens < MIN_NEW_TOKENS:
        raise UserError(
            f"--new-tokens {spec.new_tokens!r} gives no per-token interval (the first "
            f"token comes from the prefill): use {MIN_NEW_TOKENS} or more"
        )
    _check_prompt(spec)
    temperature = spec.temperature
    if not isinstance(temperature, int | float) or math.isnan(temperature) or temperature < 0:
        raise UserError(f"--temperature {temperature!r}: use 0 (greedy) or more")
    if not _positive_int(spec.warm_calls):
        raise UserError(f"--warm-calls {spec.warm_calls!r}: use 1 or more")
    if prompt_length is None:
        prompt_length = max(spec.prompt_sweep) if spec.prompt_sweep else spec.prompt_tokens
    if context_length is not None and prompt_length is not None:
        total = prompt_length + spec.new_tokens
        if total > context_length:
            raise UserError(
                f"prompt of {prompt_length} tokens + {spec.new_tokens} new tokens = {total} "
                f"exceeds the model's context of {context_length} positions "
                "(max_position_embeddings): shorten the prompt or ask for fewer new tokens"
            )


def sweep_specs(spec: DecodeSpec) -> list[DecodeSpec]:
    """One spec per length of ``--prompt-tokens 32,512,...`` (the spec itself without a sweep)."""
    if not spec.prompt_sweep:
        return [spec]
    return [dataclasses.replace(spec, prompt_tokens=n, prompt_sweep=()) for n in spec.prompt_sweep]


def check_decode_context(folder: Path, spec: DecodeSpec) -> None:
    """The context check of :func:`validate_decode_spec` from the folder's
    ``config.json``, before any model loads; nothing when the folder has no config
    (a .gguf file: the loop checks once the model is loaded)."""
    from profiler.decode.model_facts import context_length_of

    if not spec.enabled:
        return
    path = Path(folder) / "config.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    if not isinstance(data, dict):
        return
    text = data.get("text_config")
    config = SimpleNamespace(**(text if isinstance(text, dict) else data))
    validate_decode_spec(spec, context_length=context_length_of(config))
