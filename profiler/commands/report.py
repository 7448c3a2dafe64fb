"""``llmprof report RUNS... -o report.md``: a markdown report with charts beside it.

RUNS are JSON result files or folders of them. A file that cannot be used (missing,
unreadable, not JSON, not an llmprof record, a newer schema, no runs in it) is named
on stderr with its reason, one line per file, and listed in the report's notes; the
report is still written from the good files. Exit status: 0 when every file was
used, 2 when any was left out (the report exists all the same), 2 with no report
when no file was usable.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from profiler.errors import UserError

if TYPE_CHECKING:
    from profiler.records.run import RunRecord

HELP = "write a markdown report (tables and charts) from llmprof JSON results"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "runs", nargs="+", metavar="RUNS", help="JSON result files, or folders searched for *.json"
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="REPORT.md",
        help="markdown file to write; charts go to <stem>_files/ beside it",
    )
    parser.add_argument("--title", help="report title (default: the model names)")
    parser.add_argument(
        "--no-plots", action="store_true", help="tables only: draw no charts (no matplotlib needed)"
    )


def _reason(message: str, path: Path) -> str:
    """The reason part of a UserError about ``path`` (messages start with the path)."""
    prefix = f"{path}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


def collect_runs(paths: Sequence[str]) -> tuple[list[RunRecord], list[tuple[str, str]]]:
    """Load every run under ``paths``; return (runs, [(file, why it was left out)]).

    A run present twice (same run_id, e.g. a file given alone and inside a folder)
    counts once.
    """
    from profiler.analysis.ranks import rank_of
    from profiler.records.io import expand_paths, load_runs

    runs: list[RunRecord] = []
    skipped: list[tuple[str, str]] = []
    seen_ids: set[tuple[str, int]] = set()
    seen_files: set[Path] = set()
    for raw in paths:
        p = Path(raw)
        files = expand_paths([p])
        if p.is_dir() and not files:
            skipped.append((str(p), "folder holds no .json files"))
            continue
        for f in files:
            resolved = f.resolve()
            if resolved in seen_files:
                continue
            seen_files.add(resolved)
            try:
                loaded = load_runs(f)
            except UserError as e:
                skipped.append((str(f), _reason(str(e), f)))
                continue
            if not loaded:
                skipped.append((str(f), "holds no runs"))
                continue
            for r in loaded:
                # The ranks of one torchrun job share a run_id: each is its own run.
                ident = (r.run_id, rank_of(r)[0])
                if r.run_id and ident in seen_ids:
                    continue
                if r.run_id:
                    seen_ids.add(ident)
                runs.append(r)
    return runs, skipped


def run(args: argparse.Namespace) -> int:
    from profiler.analysis.summaries import summarize_runs
    from profiler.files import check_output
    from profiler.records.io import expand_paths
    from profiler.render.markdown import images_folder, nothing_in_common
    from profiler.render.report_files import write_report

    out = Path(args.output)
    check_output(out, option="-o", inputs=expand_paths(args.runs), example="report.md")
    charts_dir = images_folder(out)
    if not args.no_plots and charts_dir.exists() and not charts_dir.is_dir():
        raise UserError(f"{charts_dir} is in the way of the report's charts folder: move it")
    runs, skipped = collect_runs(args.runs)
    for path, reason in skipped:
        print(f"llmprof: left out {path}: {reason}", file=sys.stderr)
    if not runs:
        raise UserError(
            f"no usable llmprof runs in {len(skipped)} input(s), no report written: "
            "pass JSON files written by llmprof (or folders of them)"
        )
    if nothing_in_common(summarize_runs(runs)):
        print(
            "llmprof: warning: the runs share no model and no machine; the report lists "
            "them side by side",
            file=sys.stderr,
        )
    written = write_report(runs, out, title=args.title, skipped=skipped, plots=not args.no_plots)
    charts = len(written) - 1
    where = (
        f" and {charts} chart{'s' if charts != 1 else ''} in {images_folder(out)}/"
        if charts
        else ""
    )
    print(f"wrote {out}{where} ({len(runs)} runs)")
    return 2 if skipped else 0
