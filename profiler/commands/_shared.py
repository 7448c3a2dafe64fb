"""What ``load`` and ``decode`` share: their argument groups, turning arguments into a
request, and showing a finished session. Private to the commands package; no
command imports another."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from profiler.errors import UserError
from profiler.records.job import DecodeSpec
from profiler.run.request import HUB_STATES, PAGE_STATES

if TYPE_CHECKING:
    from profiler.run.request import ProfileRequest
    from profiler.run.session import Session


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """What `load` and `decode` share: the model, how it is placed, how often, where to."""
    p.add_argument(
        "model",
        help="hub id (distilgpt2, Qwen/Qwen2-0.5B-Instruct), local folder, "
        "file.gguf, smollm2-135m (bundled) or synthetic:PRESET",
    )
    p.add_argument(
        "--dtype",
        default="auto",
        help="float32 | float16 | bfloat16 | auto (config's dtype) [auto]",
    )
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N [cpu]")
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="repetitions per cache state, each in a fresh process [1]",
    )
    p.add_argument("--json", metavar="PATH", help="write all run records here (atomically)")
    p.add_argument("--report", metavar="PATH", help="also write a markdown report here")
    p.add_argument("--timeout", type=float, metavar="S", help="kill a repetition after S seconds")
    p.add_argument(
        "--in-process",
        action="store_true",
        help="run repetitions in this process (warm-process case) instead of fresh ones",
    )


def add_load_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p)
    caches = p.add_argument_group("caches")
    caches.add_argument(
        "--cache",
        metavar="STATES",
        help="shorthand for --page and (hub models) --hub: cold, warm or cold,warm",
    )
    caches.add_argument(
        "--page",
        metavar="STATES",
        help="OS page cache before each run: cold, warm, uncontrolled, or a list",
    )
    caches.add_argument(
        "--hub",
        choices=HUB_STATES,
        help="hub cache: cold = fresh empty cache (real download), warm = "
        "already downloaded, user = your cache as it is [user]",
    )
    how = p.add_argument_group("how the staged view loads")
    how.add_argument(
        "--read-threads",
        type=int,
        default=4,
        metavar="N",
        help="threads reading weight files [4, like transformers' loader pool]",
    )
    how.add_argument(
        "--pinned",
        action="store_true",
        help="read weights into pinned host memory (faster host→device copy)",
    )
    how.add_argument(
        "--no-native", action="store_true", help="skip the native from_pretrained view"
    )
    how.add_argument(
        "--variants",
        action="store_true",
        help="compare the usual ways of loading (and llmprof's fast path), ranked",
    )
    how.add_argument(
        "--device-map",
        nargs="?",
        const=True,
        default=False,
        metavar="MAP",
        help="alone: native view uses from_pretrained(device_map=DEVICE) instead of "
        ".to(); with MAP (auto, balanced, sequential, a JSON object or a JSON file): "
        "profile a load split across devices, per device",
    )
    how.add_argument(
        "--max-memory",
        metavar="DEV=SIZE,...",
        help="with --device-map MAP: memory each device may take (0=70GiB,cpu=100GB)",
    )
    how.add_argument(
        "--tp",
        action="store_true",
        help="tensor parallel (tp_plan=auto) under torchrun: "
        "torchrun --nproc-per-node N -m profiler load MODEL --tp",
    )
    src = p.add_argument_group("synthetic models")
    src.add_argument(
        "--format",
        dest="fmt",
        choices=("safetensors", "bin"),
        default="safetensors",
        help="checkpoint format a synthetic preset is saved in [safetensors]",
    )
    src.add_argument(
        "--max-shard-size", metavar="SIZE", help="shard synthetic checkpoints (e.g. 2GB)"
    )
    add_ceilings_arguments(p)
    add_decode_arguments(p)


def add_ceilings_arguments(p: argparse.ArgumentParser) -> None:
    """``--ceilings``: what `load` and `decode` judge their figures against."""
    g = p.add_argument_group("ceilings")
    g.add_argument(
        "--ceilings",
        choices=("auto", "quick", "off"),
        default="auto",
        help="judge the run against this machine's measured limits: measured once "
        "per machine and cached (auto), a smaller quick probe, or off (no ceilings, "
        "no diagnosis) [auto]",
    )


def add_decode_arguments(p: argparse.ArgumentParser, default_on: bool = True) -> None:
    g = p.add_argument_group("decode")
    if default_on:
        g.add_argument("--no-decode", action="store_true", help="skip the decode phase")
    g.add_argument(
        "--new-tokens",
        type=int,
        default=64,
        metavar="N",
        help="tokens generated per call, forced (min = max) [64]",
    )
    g.add_argument("--prompt", help="prompt text [a fixed English sentence]")
    g.add_argument(
        "--prompt-tokens",
        metavar="N[,N...]",
        help="use exactly N prompt tokens; several lengths sweep TTFT and step time over them",
    )
    g.add_argument("--chat", action="store_true", help="wrap the prompt in the chat template")
    g.add_argument("--batch", default="1", metavar="B[,B...]", help="batch sizes to sweep [1]")
    g.add_argument("--temperature", type=float, default=0.0, help="0 = greedy [0]")
    g.add_argument("--seed", type=int, default=0, help="sampling seed [0]")
    g.add_argument(
        "--warm-calls",
        type=int,
        default=3,
        metavar="N",
        help="measured generate() calls after the first one [3]",
    )


def parse_states(text: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    if not text:
        return default
    states = tuple(s.strip() for s in text.split(",") if s.strip())
    for s in states:
        if s not in PAGE_STATES:
            raise UserError(f"unknown cache state {s!r}: use cold, warm (or uncontrolled)")
    return states


def parse_batches(text: str) -> tuple[int, ...]:
    """``--batch 1,4,16`` as numbers; their values are checked with the rest of the spec."""
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise UserError(f"--batch {text!r}: give whole numbers such as 1,4,16") from None


def parse_prompt_lengths(text: str | None) -> tuple[int, ...]:
    """``--prompt-tokens 32,512,2048`` as numbers; their values are checked with the spec."""
    if text is None:
        return ()
    if isinstance(text, int):  # a caller that still passes one number
        return (text,)
    try:
        return tuple(int(x) for x in str(text).split(",") if x.strip())
    except ValueError:
        raise UserError(
            f"--prompt-tokens {text!r}: give whole numbers such as 32,512,2048"
        ) from None


def decode_spec(args: argparse.Namespace, enabled: bool) -> DecodeSpec:
    """The decode part of the request, checked before any child process starts."""
    from profiler.decode.options import validate_decode_spec

    lengths = parse_prompt_lengths(args.prompt_tokens)
    spec = DecodeSpec(
        enabled=enabled,
        batch_sizes=parse_batches(args.batch),
        new_tokens=args.new_tokens,
        prompt=args.prompt,
        prompt_tokens=lengths[0] if lengths else None,
        prompt_sweep=lengths if len(lengths) > 1 else (),
        chat=args.chat,
        temperature=args.temperature,
        seed=args.seed,
        warm_calls=args.warm_calls,
    )
    if enabled:
        validate_decode_spec(spec)
    return spec


def build_request(args: argparse.Namespace, *, native: bool, decode: bool) -> ProfileRequest:
    from profiler.load.common import DTYPES
    from profiler.run.checks import check_run_options
    from profiler.run.request import ProfileRequest

    check_run_options(args)
    check_run_outputs(args)
    if args.dtype not in DTYPES:
        raise UserError(f"unknown dtype {args.dtype!r}: use one of {', '.join(DTYPES)}")
    if args.device != "cpu" and not args.device.startswith("cuda"):
        raise UserError(f"unknown device {args.device!r}: use cpu, cuda or cuda:N")
    page = parse_states(args.page or args.cache, ("uncontrolled",))
    hub = args.hub
    if hub is None and args.cache and "," not in args.cache:
        hub = args.cache
    return ProfileRequest(
        spec=args.model,
        dtype=args.dtype,
        device=args.device,
        repeat=args.repeat,
        page_states=page,
        hub_state=hub or "user",
        in_process=args.in_process,
        native=native,
        native_device_map=getattr(args, "device_map", False) is True,
        decode=decode_spec(args, decode),
        timeout_s=args.timeout,
        read_threads=getattr(args, "read_threads", 4),
        pinned=getattr(args, "pinned", False),
        fmt=getattr(args, "fmt", "safetensors"),
        max_shard_size=getattr(args, "max_shard_size", None),
    )


def check_run_outputs(args: argparse.Namespace) -> None:
    """``--json`` and ``--report`` checked before any work (:mod:`profiler.files`):
    never a folder, a device, a FIFO, a file of the model, or one another."""
    from pathlib import Path

    from profiler.files import check_output, check_outputs_differ

    model = Path(args.model)
    inputs = [p for p in model.iterdir()] if model.is_dir() else [model]
    if args.json:
        check_output(args.json, option="--json", inputs=inputs)
    if getattr(args, "report", None):
        check_output(args.report, option="--report", inputs=inputs)
        check_outputs_differ(("--json", args.json), ("--report", args.report))


def log(msg: str) -> None:
    print(f"llmprof: {msg}", file=sys.stderr, flush=True)


def show(args: argparse.Namespace, session: Session, *, variants: bool = False) -> int:
    """Save, print and report a finished session; the exit status of the command."""
    from profiler.caches.unsaved import save_or_fallback

    runs = list(session.runs)
    saved = True
    if args.json:
        # Printed before the tables, the tables still follow: nothing measured is lost.
        saved, line = save_or_fallback(args.json, runs)
        log(line)
    if variants:
        from profiler.render.variants import render_variants

        print(render_variants(runs))
    else:
        from profiler.render.console import render_console, render_diagnosis

        print(render_console(runs))
        if session.diagnosis:
            print("\n" + render_diagnosis(session.diagnosis))
    if getattr(args, "report", None):
        from profiler.render.report_files import write_report

        try:
            written = write_report(runs, args.report, title=f"llmprof: {args.model}", skipped=[])
            log(f"wrote report {written[0]}")
        except UserError as e:
            log(f"{e} (the tables above hold the figures)")
            saved = False
    if not saved:
        return 2
    return 0 if any(r.status == "ok" for r in runs) else 1
