"""``llmprof decode MODEL``: load once (staged view, untimed focus) and profile generate()."""

from __future__ import annotations

import argparse

from profiler.commands.load import add_decode_arguments, execute

HELP = "profile generate(): TTFT, every token's latency, tokens/s, memory-bandwidth use"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "model", help="hub id, local folder, file.gguf, smollm2-135m or synthetic:PRESET"
    )
    p.add_argument("--dtype", default="auto", help="float32 | float16 | bfloat16 | auto [auto]")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N [cpu]")
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="fresh processes, each with its own first call [1]",
    )
    p.add_argument("--json", metavar="PATH", help="write run records here (atomically)")
    p.add_argument("--report", metavar="PATH", help="also write a markdown report here")
    p.add_argument("--timeout", type=float, metavar="S", help="kill a repetition after S seconds")
    p.add_argument("--in-process", action="store_true", help="run in this process")
    add_decode_arguments(p, default_on=False)
    p.set_defaults(cache=None, page=None, hub=None)


def run(args: argparse.Namespace) -> int:
    return execute(args, native=False, decode=True)
