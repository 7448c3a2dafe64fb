"""``llmprof decode MODEL``: load once (staged view, untimed focus) and profile generate()."""

from __future__ import annotations

import argparse

from profiler.commands.load import add_decode_arguments, add_run_arguments, execute

HELP = "profile generate(): TTFT, every token's latency, tokens/s, memory-bandwidth use"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p)
    add_decode_arguments(p, default_on=False)
    p.set_defaults(cache=None, page=None, hub=None)


def run(args: argparse.Namespace) -> int:
    return execute(args, native=False, decode=True)
