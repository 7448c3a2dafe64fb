"""``llmprof decode MODEL``: load once (staged view, untimed focus) and profile generate()."""

from __future__ import annotations

import argparse

from profiler.commands._shared import (
    add_ceilings_arguments,
    add_decode_arguments,
    add_run_arguments,
    build_request,
    log,
    show,
)

HELP = "profile generate(): TTFT, every token's latency, tokens/s, memory-bandwidth use"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p)
    add_ceilings_arguments(p)
    add_decode_arguments(p, default_on=False)
    p.set_defaults(cache=None, page=None, hub=None)


def run(args: argparse.Namespace) -> int:
    from profiler.run.session import profile_session

    req = build_request(args, native=False, decode=True)
    return show(args, profile_session(req, args.ceilings, log))
