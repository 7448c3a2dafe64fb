"""``llmprof load MODEL``: profile a model load stage by stage, then its decode."""

from __future__ import annotations

import argparse

from profiler.commands._shared import add_load_arguments, build_request, log, show
from profiler.errors import UserError

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
    if args.tp:
        return _run_tp(args)
    if isinstance(args.device_map, str):
        return _run_placement(args)
    if args.max_memory:
        raise UserError("--max-memory needs --device-map MAP (for example --device-map auto)")
    from profiler.run.session import profile_session

    if args.trace:
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


def _run_tp(args: argparse.Namespace) -> int:
    """One torchrun rank; rank 0 shows every rank's records."""
    from profiler.run.ranks import check_tp_request, torchrun_env

    if args.variants or args.device_map is not False or args.max_memory:
        raise UserError("--tp shards the model itself: drop --variants, --device-map, --max-memory")
    req = build_request(args, native=False, decode=not args.no_decode)
    env = check_tp_request(req, torchrun_env())
    from profiler.render.ranks import rank_diagnosis
    from profiler.run.ranks import profile_tp
    from profiler.run.session import Session

    runs = profile_tp(req, env, log)
    if not runs:
        return 0  # not rank 0: rank 0 writes the result
    return show(args, Session(tuple(runs), tuple(rank_diagnosis(runs))))


def _run_placement(args: argparse.Namespace) -> int:
    """A load split across devices by a device map, accounted per device."""
    from profiler.run.placement import parse_placement, profile_placement

    plan = parse_placement(args.device_map, args.max_memory)
    if args.variants or args.in_process or args.repeat != 1:
        raise UserError(
            "--device-map MAP profiles one load: drop --variants, --repeat, --in-process"
        )
    req = build_request(args, native=False, decode=not args.no_decode)
    from profiler.render.placement import placement_diagnosis
    from profiler.run.session import Session

    runs = profile_placement(req, plan, log)
    return show(args, Session(tuple(runs), tuple(placement_diagnosis(runs))))
