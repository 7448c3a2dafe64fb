"""``llmprof load MODEL``: profile a model load stage by stage, then its decode."""

from __future__ import annotations

import argparse

from profiler.commands._shared import add_load_arguments, build_request, log, show

HELP = "profile loading a model (staged and native views), then generating with it"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_load_arguments(p)


def run(args: argparse.Namespace) -> int:
    from profiler.run.session import profile_session

    req = build_request(args, native=not args.no_native, decode=not args.no_decode)
    session = profile_session(req, args.ceilings, log, variants=args.variants)
    return show(args, session, variants=args.variants)
