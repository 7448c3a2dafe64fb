"""``llmprof suite FILE -o DIR``: run every profile of a suite file, write its records."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "run a suite file (suites/*.toml) and write one results file per profile"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("suite", help="suite file, e.g. suites/smoke.toml")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for the records")
    p.add_argument("--only", metavar="TEXT", help="run only profiles whose model contains TEXT")
    p.add_argument("--repeat", type=int, metavar="N", help="override every profile's repeat")
    p.add_argument("--quiet", action="store_true", help="print no tables, only file names")


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from profiler.records.io import save_runs
    from profiler.render import get_renderer
    from profiler.run.repetitions import profile
    from profiler.run.suite import filter_requests, load_suite, result_name

    suite = load_suite(args.suite)
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        from profiler.errors import UserError

        raise UserError(f"-o {out} is not a folder: give a folder for the records")
    if args.repeat is not None and args.repeat < 1:
        from profiler.errors import UserError

        raise UserError(f"--repeat {args.repeat}: use at least 1")
    failed = 0
    requests = filter_requests(suite.requests, args.only)
    for i, req in enumerate(requests, 1):
        if args.repeat is not None:
            if args.repeat < 1:
                from profiler.errors import UserError

                raise UserError(f"--repeat {args.repeat}: use at least 1")
            req = dataclasses.replace(req, repeat=args.repeat)
        print(
            f"llmprof: [{i}/{len(requests)}] {req.spec} {req.device} {req.dtype}",
            file=sys.stderr,
            flush=True,
        )
        runs = profile(req, lambda m: print(f"llmprof:   {m}", file=sys.stderr, flush=True))
        failed += sum(r.status != "ok" for r in runs)
        path = out / result_name(req)
        save_runs(path, runs)
        if not args.quiet:
            print(get_renderer("console").render(runs))
        print(f"llmprof: wrote {path}", file=sys.stderr)
    return 1 if failed else 0
