"""TODO: docstring."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from profiler.decode.model_facts import context_length_of
from profiler.errors import UserError


@dataclass(frozen=True)
class DecodeOptions:
    """What to generate: batch sizes, prompt, length, sampling and repetitions.

    ``prompt`` and ``prompt_tokens`` are exclusive; with neither, :data:`DEFAULT_PROMPT`
    is used. ``temperature == 0`` means greedy decoding; above 0, sampling seeded with
    ``torch.manual_seed(seed)`` before every call so all calls do the same work and a
    rerun gives the same text. ``warm_calls`` timed calls with the hook (and as many
    without it) follow one untimed first call at each batch size.
    """

    batch_sizes: tuple[int, ...] = (1,)
    new_tokens: int = 64
    prompt: str | None = None
    prompt_tokens: int | None = None
    chat: bool = False
    temperature: float = 0.0
    seed: int | None = 0
    warm_calls: int = 3

    @property
    def do_sample(self) -> bool:
        return self.temperature > 0

    def validate(
        self,
        config: Any | None = None,
        *,
        context_length: int | None = None,
        prompt_length: int | None = None,
    ) -> None:
        """Raise :class:`UserError` for options that cannot be run.

        The context check needs the model's maximum positions (``context_length``, or
        read from ``config``: ``max_position_embeddings`` / ``n_positions``) and the
        prompt's token count (``prompt_length``, defaulting to ``prompt_tokens``). A
        text prompt's length is known only after tokenization, so
        :func:`profile_decode` checks again once it has tokenized the prompt.
        """
        if context_length is None and config is not None:
            context_length = context_length_of(config)
        if prompt_length is None:
            prompt_length = self.prompt_tokens
        if not self.batch_sizes:
            raise UserError("no batch size given: pass at least one batch size >= 1")
        for b in self.batch_sizes:
            if isinstance(b, bool) or not isinstance(b, int) or b <= 0:
                raise UserError(f"batch size {b!r} is not a positive integer: use 1 or more")
        if len(set(self.batch_sizes)) != len(self.batch_sizes):
            raise UserError(
                f"batch sizes {list(self.batch_sizes)} repeat a value: give each size once"
            )
        if not isinstance(self.new_tokens, int) or self.new_tokens <= 0:
            raise UserError(f"new tokens {self.new_tokens!r} must be >= 1: use 2 or more")
        if self.new_tokens < 2:
            raise UserError(
                "new tokens 1 gives no per-token interval (only the first token): use 2 or more"
            )
        if self.prompt is not None and self.prompt_tokens is not None:
            raise UserError("both a prompt text and a prompt token count given: pass only one")
        if self.prompt_tokens is not None and (
            not isinstance(self.prompt_tokens, int) or self.prompt_tokens < 1
        ):
            raise UserError(f"prompt tokens {self.prompt_tokens!r} must be >= 1: use 1 or more")
        if self.chat and self.prompt_tokens is not None:
            raise UserError(
                "chat template with an exact prompt token count: the template adds tokens, "
                "so pass a prompt text with --chat, or drop --chat"
            )
        if self.prompt is not None and not self.prompt.strip():
            raise UserError("prompt text is empty: pass some text or a prompt token count")
        if math.isnan(self.temperature) or self.temperature < 0:
            raise UserError(f"temperature {self.temperature} must be >= 0 (0 = greedy)")
        if not isinstance(self.warm_calls, int) or self.warm_calls < 1:
            raise UserError(f"warm calls {self.warm_calls!r} must be >= 1: use 1 or more")
        if context_length is not None and prompt_length is not None:
            total = prompt_length + self.new_tokens
            if total > context_length:
                raise UserError(
                    f"prompt of {prompt_length} tokens + {self.new_tokens} new tokens = {total} "
                    f"exceeds the model's context of {context_length} positions: shorten the "
                    "prompt or ask for fewer new tokens"
                )
