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


@dataclass(frozen=True)
class Checkpoint:
    """The weight files of a model folder, in load order."""

    folder: Path
    fmt: str  # safetensors | bin
    files: tuple[Path, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.files)


def find_checkpoint(folder: Path) -> Checkpoint:
    """Locate weights the way ``from_pretrained`` prefers them: safetensors (single or
    sharded by index) first, then ``pytorch_model.bin`` (single or sharded)."""
    folder = Path(folder)
    for index_name, single, fmt in (
        (SAFETENSORS_INDEX, "model.safetensors", "safetensors"),
        (BIN_INDEX, "pytorch_model.bin", "bin"),
    ):
        index = folder / index_name
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (OSError, ValueError, KeyError) as e:
                raise UserError(
                    f"{index}: unreadable shard index ({e}): re-download the model"
                ) from e
            names = list(dict.fromkeys(weight_map.values()))
            files = tuple(folder / n for n in names)
            missing = [f.name for f in files if not f.is_file()]
            if missing:
                raise UserError(
                    f"{folder}: shard(s) {', '.join(missing[:3])} listed in {index_name} are "
                    "missing: re-download the model"
                )
            return Checkpoint(folder, fmt, files)
        if (folder / single).is_file():
            return Checkpoint(folder, fmt, (folder / single,))
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

    A truncated file or a damaged header is reported as one clear error instead of
    surfacing later as a crash inside a tensor view.
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
            header = json.loads(f.read(hlen))
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: corrupt safetensors file ({e}): re-download or rebuild it") from e
    data_offset = 8 + hlen
    tensors: list[TensorEntry] = []
    meta = header.pop("__metadata__", {}) or {}
    for name, info in header.items():
        try:
            begin, end = info["data_offsets"]
            dtype = _ST_DTYPES[info["dtype"]]
            shape = tuple(int(x) for x in info["shape"])
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(
                f"{path}: corrupt safetensors header at {name!r}: re-download it"
            ) from e
        if data_offset + end > size:
            raise UserError(
                f"{path}: truncated safetensors file (tensor {name!r} ends at byte "
                f"{data_offset + end}, file has {size}): re-download or rebuild it"
            )
        tensors.append(TensorEntry(name, dtype, shape, data_offset + begin, data_offset + end))
    return SafetensorsHeader(path, data_offset, tuple(tensors), dict(meta))


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
