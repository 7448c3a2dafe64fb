"""Where a profile's weights come from: the user's MODEL turned into files, before any child runs.

Local sources (folders, .gguf files, presets, the bundled model) are resolved, built
or converted here, in the parent; a hub model stays a repo id until a child
downloads it (or the hub cache already holds it).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from profiler.errors import UserError
from profiler.records.run import ModelInfo
from profiler.render.format import human_seconds
from profiler.run.request import ProfileRequest


@dataclass(frozen=True)
class Source:
    """Where the weights are, as known before any child runs."""

    model: ModelInfo
    folder: Path | None  # None: hub model not yet in the cache used
    hub_repo: str | None = None
    gguf_file: str | None = None
    build_s: float | None = None


def resolve_source(req: ProfileRequest, log: Callable[[str], None]) -> Source:
    """Turn the user's MODEL into files (building or converting local sources)."""
    from profiler.sources import resolve_local

    local = resolve_local(req.spec, fmt=req.fmt, max_shard_size=req.max_shard_size, progress=log)
    if local is not None:
        notes = list(local.notes)
        if local.build_s is not None:
            took = human_seconds(local.build_s)
            notes.append(f"built in {took} before profiling (not part of any stage)")
            log(f"built {req.spec} in {took} → {local.path}")
        info = ModelInfo(
            spec=req.spec,
            source_kind=local.kind,
            path=str(local.path),
            random_weights=local.random_weights,
            notes=tuple(notes),
        )
        return Source(info, local.path, None, local.gguf_file, local.build_s)

    from profiler.sources.hub import looks_like_hub_id

    if not looks_like_hub_id(req.spec):
        raise UserError(
            f"{req.spec!r} is neither a local model folder, a .gguf file, a preset "
            "(synthetic:NAME, smollm2-135m) nor a hub id: see `llmprof models`"
        )
    info = ModelInfo(spec=req.spec, source_kind="hub", path="")
    return Source(info, None, hub_repo=req.spec)


def cached_snapshot(repo: str, env: dict[str, str]) -> Path | None:
    """The snapshot folder of ``repo`` in the hub cache named by ``env``, if it holds
    every file a load needs (the same rule as the child's download), else None.

    Asked in a subprocess because huggingface_hub reads its cache location once,
    at import, from the environment; offline, so the hub is never contacted. Not a
    bare ``snapshot_download(local_files_only=True)``: huggingface_hub 2.x keeps the
    repo's whole file list and calls a snapshot without README.md, .gitattributes
    and the like incomplete, which every download made by llmprof is.
    """
    code = (
        "import sys\n"
        "from profiler.sources.hub import download\n"
        "try:\n"
        f"    print(download({repo!r}).path)\n"
        "except Exception:\n"
        "    sys.exit(1)\n"
    )
    env = {**env, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if proc.returncode != 0 or not proc.stdout.strip():
        return None
    return Path(proc.stdout.strip().splitlines()[-1])


def preflight(folder: Path, chat: bool = False) -> None:
    """Fail fast, before any child starts, on a model that cannot load: a bad config,
    custom code, damaged weights or a broken tokenizer give one clear line instead
    of N failed repetitions (:mod:`profiler.run.preflight`)."""
    from profiler.run.preflight import check_model

    check_model(folder, chat=chat)


def model_files(folder: Path, gguf_file: str | None) -> list[Path]:
    """The files a load reads: weights, configs and tokenizer files."""
    if gguf_file:
        return [folder / gguf_file]
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
