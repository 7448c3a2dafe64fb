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
    p.add_argument(
        "--variants",
        nargs="?",
        const="all",
        metavar="LIST",
        help="compare ways of decoding, each in a fresh process, ranked: generate, "
        "static, static-compile, static-fullgraph, attn:NAME (sdpa, eager, "
        "flash_attention_2), seed-loop, graph-loop [all]",
    )
    p.set_defaults(cache=None, page=None, hub=None)


def run(args: argparse.Namespace) -> int:
    if args.variants is not None:
        return _run_variants(args)
    from profiler.run.session import profile_session

    req = build_request(args, native=False, decode=True)
    return show(args, profile_session(req, args.ceilings, log))


def _run_variants(args: argparse.Namespace) -> int:
    from profiler.decode.variant_plan import check_variant_options, parse_variant_list
    from profiler.records.io import save_runs
    from profiler.render.decode_variants import render_decode_variants
    from profiler.run.decode_variants import profile_decode_variants

    names = parse_variant_list(args.variants)
    req = build_request(args, native=False, decode=True)
    check_variant_options(names, req.decode, repeat=req.repeat, in_process=req.in_process)
    runs = profile_decode_variants(req, names, log)
    if args.json:
        save_runs(args.json, runs)
        log(f"wrote {len(runs)} run record(s) to {args.json}")
    print(render_decode_variants(runs))
    if args.report:
        from profiler.render.report_files import write_report

        written = write_report(runs, args.report, title=f"llmprof: {args.model}", skipped=[])
        log(f"wrote report {written[0]}")
    return 0 if any(r.status == "ok" for r in runs) else 1
