"""``llmprof ceilings``: measure (or show cached) speed-of-light figures of this machine."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from profiler.errors import UserError
from profiler.machine.cache import lookup
from profiler.machine.fingerprint import default_folder
from profiler.render.ceilings import ceilings_report
from profiler.render.format import human_seconds
from profiler.sources.sizes import parse_size

HELP = (
    "measure what this machine can move: cold disk and page-cache reads, host memory, "
    "host<->GPU copies, GPU memory and matmul rate. Cached per machine"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--path",
        metavar="FOLDER",
        help="folder on the disk to measure (default: the Hugging Face hub cache)",
    )
    parser.add_argument("--refresh", action="store_true", help="measure again, ignore the cache")
    parser.add_argument(
        "--quick", action="store_true", help="small sizes (rougher figures; for tests and CI)"
    )
    parser.add_argument(
        "--device",
        default=None,
        help="cpu, cuda or cuda:N (default: cuda when available, else cpu)",
    )
    parser.add_argument(
        "--size",
        default=None,
        help="size of the disk probe's scratch file (default 2GiB, 256MiB with --quick)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the ceilings as JSON")


def run(args: argparse.Namespace) -> int:
    if args.json:
        from profiler.files import check_output

        check_output(args.json, option="--json")
    if args.path is not None:
        folder = Path(args.path).expanduser()
        if not folder.exists():
            raise UserError(f"--path {args.path}: no such folder: pass an existing folder")
        if not folder.is_dir():
            folder = folder.parent  # a weights file: measure the folder holding it
    else:
        folder = default_folder()
    device = args.device
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    size = parse_size(args.size, "--size") if args.size is not None else None

    def progress(msg: str) -> None:
        print(f"llmprof ceilings: {msg}", file=sys.stderr, flush=True)

    found = lookup(
        folder,
        refresh=args.refresh,
        quick=args.quick,
        device=device,
        size_bytes=size,
        progress=progress,
    )
    c = found.ceilings
    print(ceilings_report(c))
    print()
    mode = "quick" if c.quick else "full"
    took = f", took {human_seconds(c.elapsed_s)}" if c.elapsed_s is not None else ""
    if found.from_cache:
        print(
            f"from cache: {found.path} ({mode}, measured {c.measured_at}{took}); "
            "--refresh measures again"
        )
    else:
        print(f"cached in {found.path} ({mode}, measured {c.measured_at}{took})")
    print(
        f"disk probed: {c.folder} ({c.fingerprint.get('fs_type')} on "
        f"{c.fingerprint.get('fs_source')}); device {c.device}"
    )
    if args.json:
        from profiler.records.io import write_atomic

        write_atomic(args.json, (json.dumps(c.to_dict(), indent=1) + "\n").encode())
        print(f"wrote {args.json}")
    return 0
