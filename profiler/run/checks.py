"""Option values of ``load`` and ``decode``, checked before any work.

argparse checks that a value parses as a number; these checks say whether it means
anything: a timeout of 0 or NaN, a temperature of infinity, a seed numpy cannot
take or ``cuda:abc`` would otherwise surface as a failed repetition or a wrong
diagnosis ("no GPU") after minutes of work.
"""

from __future__ import annotations

import argparse
import math
import re
from typing import TYPE_CHECKING

from profiler.errors import UserError

if TYPE_CHECKING:
    from profiler.run.request import ProfileRequest

# transformers' set_seed seeds numpy too, which takes 0 .. 2**32 - 1.
SEED_MAX = 2**32 - 1
_DEVICE = re.compile(r"cpu|cuda(:[0-9]+)?")


def check_device(device: str) -> None:
    """``cpu``, ``cuda`` or ``cuda:N``; anything else is malformed, not "no GPU"."""
    if not _DEVICE.fullmatch(device):
        raise UserError(
            f"unknown device {device!r} (malformed): use cpu, cuda or cuda:N (N = 0, 1, ...)"
        )


def check_timeout(value: float | None) -> None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise UserError(f"--timeout {value!r}: give a positive number of seconds, e.g. 600")


def check_states(option: str, text: str | None) -> None:
    """A cache list that was given must name at least one state."""
    if text is not None and not [s for s in text.split(",") if s.strip()]:
        raise UserError(f"{option} {text!r} names no state: use cold, warm or cold,warm")


def _at_least(option: str, value: int | None, low: int, hint: str) -> None:
    if value is not None and value < low:
        raise UserError(f"{option} {value}: {hint}")


def check_run_options(args: argparse.Namespace) -> None:
    """Every option of ``load``/``decode`` that has a meaning beyond its type."""
    from profiler.decode.options import MIN_NEW_TOKENS

    check_device(args.device)
    check_timeout(args.timeout)
    _at_least("--repeat", args.repeat, 1, "use 1 or more repetitions")
    _at_least("--read-threads", getattr(args, "read_threads", None), 1, "use 1 or more threads")
    check_states("--cache", getattr(args, "cache", None))
    check_states("--page", getattr(args, "page", None))
    temperature = args.temperature
    if not (math.isfinite(temperature) and temperature >= 0):
        raise UserError(f"--temperature {temperature!r}: use 0 (greedy) or a finite number above")
    if not 0 <= args.seed <= SEED_MAX:
        raise UserError(f"--seed {args.seed}: use a whole number from 0 to {SEED_MAX}")
    # One lower bound for every command and mode, the one decode itself needs.
    _at_least(
        "--new-tokens",
        args.new_tokens,
        MIN_NEW_TOKENS,
        f"gives no per-token interval (the first token comes from the prefill): "
        f"use {MIN_NEW_TOKENS} or more",
    )
    _at_least("--warm-calls", args.warm_calls, 1, "use 1 or more")
    if not isinstance(args.prompt_tokens, str):  # a list of lengths is checked by the spec
        _at_least("--prompt-tokens", args.prompt_tokens, 1, "use 1 or more prompt tokens")
    shard = getattr(args, "max_shard_size", None)
    if shard is not None:
        from profiler.sources.sizes import parse_size

        parse_size(shard, "--max-shard-size")


def check_request(req: ProfileRequest) -> None:
    """The same checks on a request however it was made (command line, suite file,
    Python): values that reach a child are meaningful ones."""
    check_device(req.device)
    check_timeout(req.timeout_s)
    _at_least("--repeat", req.repeat, 1, "use 1 or more repetitions")
    _at_least("--read-threads", req.read_threads, 1, "use 1 or more threads")
    spec = req.decode
    if spec.enabled:
        if not (math.isfinite(spec.temperature) and spec.temperature >= 0):
            raise UserError(f"temperature {spec.temperature!r}: use 0 (greedy) or more")
        if spec.seed is not None and not 0 <= spec.seed <= SEED_MAX:
            raise UserError(f"seed {spec.seed}: use a whole number from 0 to {SEED_MAX}")
