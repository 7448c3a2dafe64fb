"""Checkpoint files: which files hold the weights, and reading their bytes for real.

safetensors files are normally opened with mmap, so "reading" them costs nothing
until a tensor is touched. The staged view instead reads every byte into process
memory with ``pread`` (counted, and checked against ``/proc/self/io``), then builds
tensors as views into that memory: the read has a clean boundary and the later
stages cannot hide disk time.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from profiler.errors import UserError

if TYPE_CHECKING:
    import torch


SAFETENSORS_INDEX = "model.safetensors.index.json"


BIN_INDEX = "pytorch_model.bin.index.json"


# safetensors dtype codes -> torch dtype names (the format's documented codes).
_ST_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "BOOL": "bool",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "U16": "uint16",
    "U32": "uint32",
    "U64": "uint64",
}
# Bytes per element of each safetensors dtype code.
_ST_SIZES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
    "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8,
}  # fmt: skip


@dataclass(frozen=True)
class Checkpoint:
    """The weight files of a model folder, in load order."""

    folder: Path
    fmt: str  # safetensors | bin
    files: tuple[Path, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.files)


def allowed_roots(folder: Path) -> tuple[Path, ...]:
    """Where the files of ``folder`` may really live: the folder itself and, for a
    hub cache snapshot (``.../snapshots/<rev>``), its repo's ``blobs/`` folder, which
    the snapshot's symlinks point into."""
    real = folder.resolve()
    roots = [real]
    if folder.parent.name == "snapshots" and (folder.parent.parent / "blobs").is_dir():
        roots.append((folder.parent.parent / "blobs").resolve())
    return tuple(roots)


def inside_model(folder: Path, name: str, what: str) -> Path:
    """``folder / name``, refused unless it resolves (symlinks followed) inside the
    model folder: an index or a link must not make llmprof read other files. The
    message names the entry, never anything of the outside file."""
    path = folder / name
    real = path.resolve()
    if Path(name).is_absolute() or not any(real.is_relative_to(r) for r in allowed_roots(folder)):
        raise UserError(
            f"{folder}: {what} names {name!r}, which resolves outside the model folder: "
            "llmprof reads only files inside it; fix or re-download the model"
        )
    return path


def _shard_names(index: Path) -> list[str]:
    """The shard file names of an index, checked for type."""
    try:
        doc = json.loads(index.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{index}: unreadable shard index ({e}): re-download the model") from e
    weight_map = doc.get("weight_map") if isinstance(doc, dict) else None
    if not isinstance(weight_map, dict) or not all(
        isinstance(v, str) and v for v in weight_map.values()
    ):
        raise UserError(
            f"{index}: shard index has no weight_map of tensor name -> file name: "
            "re-download the model"
        )
    return list(dict.fromkeys(weight_map.values()))


def find_checkpoint(folder: Path) -> Checkpoint:
    """Locate weights the way ``from_pretrained`` prefers them: safetensors (single or
    sharded by index) first, then ``pytorch_model.bin`` (single or sharded).

    Every file must resolve inside the folder (:func:`inside_model`), whatever the
    index says or a symlink points to.
    """
    folder = Path(folder)
    for index_name, single, fmt in (
        (SAFETENSORS_INDEX, "model.safetensors", "safetensors"),
        (BIN_INDEX, "pytorch_model.bin", "bin"),
    ):
        index = folder / index_name
        if index.is_file():
            inside_model(folder, index_name, "the shard index")
            names = _shard_names(index)
            files = tuple(inside_model(folder, n, index_name) for n in names)
            missing = [f.name for f in files if not f.is_file()]
            if missing:
                raise UserError(
                    f"{folder}: shard(s) {', '.join(missing[:3])} listed in {index_name} are "
                    "missing: re-download the model"
                )
            return Checkpoint(folder, fmt, files)
        if (folder / single).is_file():
            return Checkpoint(folder, fmt, (inside_model(folder, single, "the weights file"),))
    raise UserError(
        f"{folder} has no model weights (model.safetensors, pytorch_model.bin or their "
        "shard indexes): pass a folder saved with save_pretrained()"
    )


@dataclass(frozen=True)
class TensorEntry:
    """One tensor of a safetensors file: dtype, shape and its byte range in the file."""

    name: str
    dtype: str  # torch dtype name
    shape: tuple[int, ...]
    begin: int  # byte offset from the start of the file
    end: int


@dataclass(frozen=True)
class SafetensorsHeader:
    """The parsed header of a safetensors file."""

    path: Path
    data_offset: int
    tensors: tuple[TensorEntry, ...]
    metadata: dict[str, str]


def read_safetensors_header(path: Path) -> SafetensorsHeader:
    """Parse the header of a safetensors file, validating it against the file size.

    A truncated file or a damaged header (wrong JSON types, offsets negative,
    reversed or overlapping, a shape that disagrees with its byte count) is reported
    as one clear error instead of surfacing later as a crash inside a tensor view.
    The message never quotes the file's bytes.
    """
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            raw_len = f.read(8)
            if len(raw_len) < 8:
                raise ValueError("file shorter than the 8-byte header length")
            (hlen,) = struct.unpack("<Q", raw_len)
            if hlen > min(size - 8, 100 * 1024 * 1024):
                raise ValueError(f"header length {hlen} exceeds the file")
            header = json.loads(f.read(hlen).decode("utf-8"))
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: corrupt safetensors header (not UTF-8): re-download it") from e
    except (OSError, ValueError) as e:
        why = str(e).split(":")[0][:80]
        raise UserError(
            f"{path}: corrupt safetensors file ({why}): re-download or rebuild it"
        ) from e
    if not isinstance(header, dict):
        raise UserError(f"{path}: safetensors header is not a JSON object: re-download it")
    data_offset = 8 + hlen
    meta = header.pop("__metadata__", {}) or {}
    if not isinstance(meta, dict):
        raise UserError(f"{path}: safetensors __metadata__ is not an object: re-download it")
    tensors = [_entry(path, name, info, data_offset, size) for name, info in header.items()]
    spans = sorted((t.begin, t.end, t.name) for t in tensors if t.end > t.begin)
    for (_, end_a, a), (begin_b, _, b) in zip(spans, spans[1:], strict=False):
        if begin_b < end_a:
            raise UserError(
                f"{path}: tensors {a!r} and {b!r} overlap in the file: re-download or rebuild it"
            )
    return SafetensorsHeader(
        path, data_offset, tuple(tensors), {str(k): v for k, v in meta.items()}
    )


def _entry(path: Path, name: str, info: object, data_offset: int, size: int) -> TensorEntry:
    """One header entry, checked for types, offsets and shape against its bytes."""

    def bad(what: str) -> UserError:
        return UserError(f"{path}: corrupt safetensors header at {name!r} ({what}): re-download it")

    if not isinstance(info, dict):
        raise bad("entry is not an object")
    offsets, shape, code = info.get("data_offsets"), info.get("shape"), info.get("dtype")
    if not (
        isinstance(offsets, list)
        and len(offsets) == 2
        and all(isinstance(x, int) and not isinstance(x, bool) for x in offsets)
    ):
        raise bad("data_offsets is not a pair of whole numbers")
    begin, end = offsets
    if begin < 0 or end < begin:
        raise bad(f"data_offsets {begin}..{end} are negative or reversed")
    if code not in _ST_DTYPES:
        raise bad(f"unknown dtype {str(code)[:20]!r}")
    if not (
        isinstance(shape, list)
        and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in shape)
    ):
        raise bad("shape is not a list of non-negative whole numbers")
    numel = 1
    for x in shape:
        numel *= x
    if numel * _ST_SIZES[code] != end - begin:
        raise bad(
            f"shape {shape} needs {numel * _ST_SIZES[code]} bytes, offsets give {end - begin}"
        )
    if data_offset + end > size:
        raise UserError(
            f"{path}: truncated safetensors file (tensor {name!r} ends at byte "
            f"{data_offset + end}, file has {size}): re-download or rebuild it"
        )
    return TensorEntry(name, _ST_DTYPES[code], tuple(shape), data_offset + begin, data_offset + end)


def tensors_from_buffer(
    header: SafetensorsHeader, buffer: torch.Tensor
) -> tuple[dict[str, torch.Tensor], int]:
    """Zero-copy tensor views into a buffer holding the whole file; returns the views
    and how many bytes had to be copied because a tensor was misaligned."""
    import torch

    out: dict[str, torch.Tensor] = {}
    copied = 0
    for t in header.tensors:
        dtype = getattr(torch, t.dtype)
        raw = buffer[t.begin : t.end]
        itemsize = torch.empty((), dtype=dtype).element_size()
        if t.begin % itemsize:
            raw = raw.clone()  # views need element alignment; rare in practice
            copied += t.end - t.begin
        out[t.name] = raw.view(dtype).reshape(t.shape)
    return out, copied


def state_from_buffers(
    headers: Sequence[SafetensorsHeader], buffers: Sequence[torch.Tensor]
) -> tuple[dict[str, torch.Tensor], int]:
    """Tensors of every file as views into its buffer (:func:`tensors_from_buffer`);
    returns them and the bytes copied because a tensor was misaligned."""
    state: dict[str, torch.Tensor] = {}
    copied = 0
    for h, buf in zip(headers, buffers, strict=True):
        views, c = tensors_from_buffer(h, buf)
        state.update(views)
        copied += c
    return state, copied


def misaligned_note(copied: int) -> list[str]:
    """The run note for :func:`state_from_buffers`' copied bytes (none when 0)."""
    return [f"{copied} bytes of misaligned tensors were copied during the read"] if copied else []


def dominant_dtype(headers: Sequence[SafetensorsHeader]) -> str | None:
    """The dtype most weight bytes are stored in."""
    by_dtype: dict[str, int] = {}
    for h in headers:
        for t in h.tensors:
            by_dtype[t.dtype] = by_dtype.get(t.dtype, 0) + (t.end - t.begin)
    return max(by_dtype, key=lambda k: by_dtype[k]) if by_dtype else None


def storage_dtype(folder: Path) -> str | None:
    """The dtype most weight bytes are stored in (from headers only, no data read)."""
    try:
        ckpt = find_checkpoint(folder)
    except UserError:
        return None
    if ckpt.fmt != "safetensors":
        return None
    return dominant_dtype([read_safetensors_header(f) for f in ckpt.files])
