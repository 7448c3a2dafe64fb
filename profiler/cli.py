"""Command line: parse, dispatch, turn user errors into one line and an exit code.

Each subcommand lives in ``profiler/commands/<name>.py`` and exposes ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported when the
parser is built, so they must not import torch at module level: ``llmprof --help``
stays fast (see tests/integration/test_cli_imports.py).
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from profiler import __version__
from profiler.errors import Terminated, UserError

COMMANDS: tuple[str, ...] = (
    "load",
    "decode",
    "models",
    "report",
    "compare",
    "suite",
    "ceilings",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmprof",
        description="Where the time and memory go when a Hugging Face model loads and generates.",
    )
    parser.add_argument("--version", action="version", version=f"llmprof {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"profiler.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"profiler.commands.{name}":
                continue  # command not built yet in this checkout
            raise
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    previous = _on_sigterm()
    try:
        return int(args._run(args))
    except UserError as e:
        print(f"llmprof: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        # Everything on the way out (child process groups, temporary folders) has
        # been cleaned up by the context managers it unwound through.
        print("llmprof: interrupted: stopped the run, nothing was written", file=sys.stderr)
        return 130
    except Terminated:
        print("llmprof: terminated: stopped the run, nothing was written", file=sys.stderr)
        return Terminated.exit_code
    except BrokenPipeError:
        # Output piped into `head` and closed: not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


def _on_sigterm() -> Any:
    """Turn SIGTERM into :class:`Terminated` (so the run unwinds and cleans up);
    returns the handler it replaced, None outside the main thread."""
    try:
        return signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread (a test calling main()): leave it
        return None


if __name__ == "__main__":
    raise SystemExit(main())
