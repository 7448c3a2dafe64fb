"""Synthetic models: a published architecture with random weights, as real files.

``synthetic:qwen2-7b`` becomes a folder that looks like the hub checkpoint to every
loader: ``config.json``, ``generation_config.json``, a tokenizer with the real
vocabulary size, and weights in safetensors (or ``pytorch_model.bin``) at the
checkpoint's storage dtype, split into shards the way the hub splits them. Only the
values are made up, so load time, memory and decode speed are those of the real
model, and nothing has to be downloaded.

Building is cheap for big presets: the model is created on the meta device (no
memory), and each tensor is materialised at its storage dtype by copying from one
small pool of random numbers, one shard at a time, so memory never holds more than
about one shard. Folders are built once per (preset, dtype, format, shard size)
into llmprof's cache and published by an atomic rename.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from profiler import __version__
from profiler.caches.models import (
    SOURCE_FILE,
    atomic_folder,
    build_lock,
    check_free_space,
    fsync_file,
    models_dir,
    read_source,
    remove_stale_temps,
)
from profiler.errors import UserError
from profiler.render.format import human_bytes
from profiler.sources.presets import (
    DTYPE_BYTES,
    Preset,
    count_parameters,
    get_preset,
    normalize_dtype,
)
from profiler.sources.sizes import parse_size, size_label

if TYPE_CHECKING:
    import torch
    from transformers import PretrainedConfig

# Bump when what a build writes changes: cached folders of older builds are rebuilt.
BUILD_VERSION = 1
FORMATS = ("safetensors", "bin")
_INDEX_NAMES = {
    "safetensors": "model.safetensors.index.json",
    "bin": "pytorch_model.bin.index.json",
}

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BuildSpec:
    """What one synthetic folder holds; its :attr:`folder_name` is the cache key."""

    preset: Preset
    dtype: str  # canonical storage dtype name, e.g. "bfloat16"
    fmt: str  # "safetensors" | "bin"
    max_shard_bytes: int | None  # None: one weight file

    @property
    def folder_name(self) -> str:
        shard = f"-shard{size_label(self.max_shard_bytes)}" if self.max_shard_bytes else ""
        return f"synthetic-{self.preset.name}-{self.dtype}-{self.fmt}{shard}"

    @property
    def weight_bytes(self) -> int:
        return count_parameters(self.preset) * DTYPE_BYTES[self.dtype]


def build_spec(
    name: str,
    *,
    dtype: str | None = None,
    fmt: str = "safetensors",
    max_shard_size: str | None = None,
) -> BuildSpec:
    """Validate the options of a synthetic build; UserError for bad ones.

    ``dtype`` overrides the preset's storage dtype; ``max_shard_size`` (e.g. "2GB")
    overrides how the hub checkpoint is split (default: as on the hub; "none": one
    file).
    """
    preset = get_preset(name)
    if fmt not in FORMATS:
        raise UserError(f"unknown weight format {fmt!r}: use safetensors or bin")
    storage = normalize_dtype(dtype) if dtype and dtype != "auto" else preset.storage_dtype
    size_text = max_shard_size or preset.default_max_shard_size
    if size_text and size_text.strip().lower() == "none":
        size_text = None
    shard = parse_size(size_text) if size_text else None
    return BuildSpec(preset, storage, fmt, shard)


def hf_config(preset: Preset, dtype: str | None = None) -> PretrainedConfig:
    """The transformers config of a preset, with ``dtype`` as its storage dtype."""
    from transformers import AutoConfig

    config = AutoConfig.for_model(
        preset.model_type, dtype=dtype or preset.storage_dtype, **dict(preset.config)
    )
    config.architectures = [preset.architecture]
    return config


def meta_model(preset: Preset, dtype: str | None = None) -> torch.nn.Module:
    """The preset's model on the meta device: real shapes, no memory, no weights."""
    import torch
    from transformers import AutoModelForCausalLM

    config = hf_config(preset, dtype)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(
            config, dtype=getattr(torch, dtype or preset.storage_dtype), trust_remote_code=False
        )


def num_parameters(model: torch.nn.Module) -> int:
    """Parameters of a model, tied (shared) tensors counted once."""
    return sum(p.numel() for p in model.parameters())  # parameters() yields shared ones once


@dataclass(frozen=True)
class TensorSlot:
    """One tensor a checkpoint stores: its name, shape and how to fill it."""

    name: str
    shape: tuple[int, ...]
    numel: int
    ones: bool  # norm weights start at 1, as after a real init; everything else random


def stored_tensors(model: torch.nn.Module) -> list[TensorSlot]:
    """The tensors a checkpoint of ``model`` holds, in state-dict order.

    Tied tensors are stored once under their first name (``lm_head.weight`` is left
    out when it shares the embedding), as ``save_pretrained`` and the hub do.
    """
    norm_params = set()
    for mod_name, module in model.named_modules():
        if "norm" in type(module).__name__.lower():
            prefix = f"{mod_name}." if mod_name else ""
            norm_params.add(f"{prefix}weight")
    seen: set[int] = set()
    out = []
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        out.append(TensorSlot(name, tuple(tensor.shape), tensor.numel(), name in norm_params))
    return out


def plan_shards(sizes: Sequence[tuple[str, int]], max_bytes: int | None) -> list[list[str]]:
    """Group tensors, in order, into shards of at most ``max_bytes`` each.

    A tensor bigger than ``max_bytes`` gets a shard of its own (as in transformers).
    ``max_bytes=None`` puts everything in one shard.
    """
    shards: list[list[str]] = []
    current: list[str] = []
    current_bytes = 0
    for name, nbytes in sizes:
        if current and max_bytes is not None and current_bytes + nbytes > max_bytes:
            shards.append(current)
            current, current_bytes = [], 0
        current.append(name)
        current_bytes += nbytes
    if current:
        shards.append(current)
    return shards


def shard_file_names(fmt: str, n_shards: int) -> list[str]:
    """File names of the weight files, as transformers names them."""
    stem, ext = ("model", "safetensors") if fmt == "safetensors" else ("pytorch_model", "bin")
    if n_shards == 1:
        return [f"{stem}.{ext}"]
    return [f"{stem}-{i:05d}-of-{n_shards:05d}.{ext}" for i in range(1, n_shards + 1)]


class _RandomPool:
    """Cheap random values: copies from one pool of normal(0, 0.02) numbers.

    Drawing fresh random numbers runs at ~0.2 GB/s per core for bf16, copying at
    several GB/s; each tensor starts at a different pool offset so tensors differ.
    """

    _SIZE = (1 << 22) + 7  # odd length: successive tensors do not line up with the pool

    def __init__(self, dtype: torch.dtype, seed: int = 0) -> None:
        import torch

        gen = torch.Generator().manual_seed(seed)
        pool = torch.empty(self._SIZE, dtype=torch.float32).normal_(0.0, 0.02, generator=gen)
        self._pool = pool.to(dtype)
        self._offset = 0

    def fill(self, tensor: torch.Tensor) -> None:
        flat = tensor.view(-1)
        n, pos, src = flat.numel(), 0, self._offset
        size = self._pool.numel()
        while pos < n:
            k = min(n - pos, size - src)
            flat[pos : pos + k].copy_(self._pool[src : src + k])
            pos += k
            src = 0
        self._offset = (self._offset + 104_729) % size


def _materialize(
    slots: Sequence[TensorSlot], dtype: torch.dtype, pool: _RandomPool
) -> dict[str, torch.Tensor]:
    import torch

    out = {}
    for slot in slots:
        t = torch.empty(slot.shape, dtype=dtype)
        if slot.ones:
            t.fill_(1.0)
        else:
            pool.fill(t)
        out[slot.name] = t
    return out


def _write_shard(tensors: dict[str, torch.Tensor], path: Path, fmt: str) -> None:
    """Write one weight file and flush it to disk."""
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file(tensors, str(path), metadata={"format": "pt"})
    else:
        import torch

        torch.save(tensors, str(path))
    fsync_file(path)


def write_weights(
    model: torch.nn.Module,
    folder: Path,
    *,
    dtype: str,
    fmt: str,
    max_shard_bytes: int | None,
    progress: Progress | None = None,
) -> tuple[list[str], int]:
    """Write random weights for ``model`` (on meta) into ``folder``.

    Returns the weight file names and the total tensor bytes. Holds one shard in
    memory at a time; writes the standard ``*.index.json`` when there are several.
    """
    import torch

    torch_dtype = getattr(torch, dtype)
    itemsize = DTYPE_BYTES[dtype]
    slots = stored_tensors(model)
    by_name = {s.name: s for s in slots}
    shards = plan_shards([(s.name, s.numel * itemsize) for s in slots], max_shard_bytes)
    names = shard_file_names(fmt, len(shards))
    pool = _RandomPool(torch_dtype)
    weight_map: dict[str, str] = {}
    total = 0
    for i, (members, file_name) in enumerate(zip(shards, names, strict=True), 1):
        tensors = _materialize([by_name[n] for n in members], torch_dtype, pool)
        nbytes = sum(t.numel() * itemsize for t in tensors.values())
        if progress:
            progress(f"writing {file_name} ({human_bytes(nbytes)}, shard {i}/{len(shards)})")
        _write_shard(tensors, folder / file_name, fmt)
        del tensors  # free the shard before the next one is materialised
        total += nbytes
        weight_map.update({n: file_name for n in members})
    if len(shards) > 1:
        index_name = _INDEX_NAMES[fmt]
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (folder / index_name).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return names, total


def _tokenizer_budget(preset: Preset) -> int:
    # tokenizer.json runs at ~45 bytes per vocabulary entry; round up generously.
    return preset.vocab_size * 128 + (1 << 20)


def build_into(spec: BuildSpec, folder: Path, progress: Progress | None = None) -> dict[str, Any]:
    """Write the whole synthetic model of ``spec`` into an existing empty ``folder``.

    Returns the contents of ``llmprof_source.json`` (without the build time).
    """
    from transformers import GenerationConfig

    from profiler.sources.tokenizer_gen import save_tokenizer

    preset = spec.preset
    config = hf_config(preset, spec.dtype)
    config.save_pretrained(str(folder))
    GenerationConfig.from_model_config(config).save_pretrained(str(folder))
    if progress:
        progress(f"generating a tokenizer of {preset.vocab_size} tokens")
    max_len = preset.config.get("max_position_embeddings") or preset.config.get("n_positions")
    save_tokenizer(preset.tokenizer, preset.vocab_size, folder, model_max_length=max_len)
    model = meta_model(preset, spec.dtype)
    files, total = write_weights(
        model,
        folder,
        dtype=spec.dtype,
        fmt=spec.fmt,
        max_shard_bytes=spec.max_shard_bytes,
        progress=progress,
    )
    import torch
    import transformers

    return {
        "kind": "synthetic",
        "preset": preset.name,
        "original": preset.original,
        "architecture": preset.architecture,
        "random_weights": True,
        "storage_dtype": spec.dtype,
        "format": spec.fmt,
        "max_shard_size": size_label(spec.max_shard_bytes) if spec.max_shard_bytes else None,
        "weight_files": files,
        "weight_bytes": total,
        "num_parameters": num_parameters(model),
        "build_version": BUILD_VERSION,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "llmprof": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


def is_complete(folder: Path, build_version: int = BUILD_VERSION) -> bool:
    """Whether ``folder`` is a finished build of the current build version."""
    source = read_source(folder)
    return source is not None and source.get("build_version") == build_version


def ensure_synthetic(
    name: str,
    *,
    dtype: str | None = None,
    fmt: str = "safetensors",
    max_shard_size: str | None = None,
    progress: Progress | None = None,
) -> tuple[Path, float | None]:
    """The folder of a synthetic model, built first if it is not cached.

    Returns ``(folder, build_s)``; ``build_s`` is None when the cached folder was
    used, so a profile can leave the build out of what it measures.
    """
    spec = build_spec(name, dtype=dtype, fmt=fmt, max_shard_size=max_shard_size)
    final = models_dir() / spec.folder_name
    if is_complete(final):
        return final, None
    with build_lock(final):
        if is_complete(final):  # built by another process while we waited
            return final, None
        remove_stale_temps(final.parent, final.name)
        needed = spec.weight_bytes + _tokenizer_budget(spec.preset)
        check_free_space(final.parent, needed, f"synthetic:{spec.preset.name}")
        if progress:
            progress(
                f"building synthetic:{spec.preset.name} ({spec.dtype}, {spec.fmt}, "
                f"{human_bytes(spec.weight_bytes)} of weights) into {final}"
            )
        start = time.perf_counter()
        with atomic_folder(final) as tmp:
            source = build_into(spec, tmp, progress)
            source["build_s"] = round(time.perf_counter() - start, 3)
            (tmp / SOURCE_FILE).write_text(json.dumps(source, indent=1) + "\n")
        build_s = time.perf_counter() - start
    return final, build_s
