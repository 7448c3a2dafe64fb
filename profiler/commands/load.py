"""``llmprof load MODEL``: profile a model load stage by stage, then its decode."""

from __future__ import annotations

import argparse

from profiler.commands._shared import add_load_arguments, build_request, log, show

HELP = "profile loading a model (staged and native views), then generating with it"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_load_arguments(p)
    p.add_argument(
        "--trace",
        metavar="PATH",
        help="write the native load's timeline here as Chrome trace-event JSON "
        "(opens in ui.perfetto.dev and chrome://tracing)",
    )


def run(args: argparse.Namespace) -> int:
    from profiler.run.session import profile_session

    if args.trace:
        from profiler.errors import UserError
        from profiler.render.trace_file import check_trace_path

        check_trace_path(args.trace)
        if args.no_native:
            raise UserError("--trace records the native load: drop --no-native")
    req = build_request(args, native=not args.no_native, decode=not args.no_decode)
    session = profile_session(req, args.ceilings, log, variants=args.variants)
    status = show(args, session, variants=args.variants)
    if args.trace:
        from profiler.render.trace_file import write_trace

        log(write_trace(args.trace, session.runs))
    return status
