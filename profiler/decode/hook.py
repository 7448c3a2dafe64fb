"""The per-token hook: a ``generate()`` streamer that timestamps every new token.

transformers is imported only when the first hook is made, so the CLI can import
this module at no cost.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


class TokenClock:
    """Timestamps of one ``generate()`` call, filled by the streamer hook.

    The first ``put`` carries the prompt (``prompt_start_ns``); every later ``put``
    carries one new token per sequence and appends one timestamp. ``self_ns`` is the
    time spent inside ``put`` itself: an upper bound of the hook's cost, since on CUDA
    it includes the synchronize, whose wait for queued device work the decoding loop
    would otherwise pay at its own stop check a moment later.
    """

    __slots__ = ("sync", "prompt_start_ns", "token_times_ns", "self_ns", "ended")

    def __init__(self, sync: Callable[[], None] | None) -> None:
        self.sync = sync
        self.prompt_start_ns: int | None = None
        self.token_times_ns: list[int] = []
        self.self_ns = 0
        self.ended = False

    def put(self, value: Any) -> None:
        enter = time.monotonic_ns()
        if self.prompt_start_ns is None:
            self.prompt_start_ns = enter
            return
        if self.sync is not None:
            self.sync()
        now = time.monotonic_ns()
        self.token_times_ns.append(now)
        self.self_ns += time.monotonic_ns() - enter

    def end(self) -> None:
        self.ended = True


_STREAMER_CLASS: type | None = None


def make_token_clock(sync: Callable[[], None] | None) -> Any:
    """A ``BaseStreamer`` subclass instance that records into a :class:`TokenClock`."""
    global _STREAMER_CLASS
    if _STREAMER_CLASS is None:
        from transformers.generation.streamers import BaseStreamer

        class _TokenClockStreamer(TokenClock, BaseStreamer):
            __slots__ = ()

        _STREAMER_CLASS = _TokenClockStreamer
    return _STREAMER_CLASS(sync)
