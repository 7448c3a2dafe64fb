"""GGUF metadata without parsing the whole file, and whether transformers loads it.

A GGUF file opens with its metadata (architecture, quantisation, tokenizer tables);
these functions read the few keys llmprof needs and stop there, where the ``gguf``
package's reader would decode every string of the vocabulary first. Layout and type
codes follow the GGUF specification as published with the ``gguf`` package.
"""

from __future__ import annotations

import contextlib
import struct
from pathlib import Path
from typing import Any, BinaryIO

from profiler.errors import UserError

# GGUF architecture names that transformers spells differently in its tables.
_ARCH_ALIASES = {
    "qwen2moe": "qwen2_moe",
    "qwen3moe": "qwen3_moe",
    "gpt-oss": "gpt_oss",
    "minimax-m2": "minimax_m2",
    "t5encoder": "t5",
}
_NOT_ARCHITECTURES = {"general", "tokenizer"}  # keys of transformers' table that are sections


_SCALARS = {  # GGUFValueType value -> struct format
    0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d",
}  # fmt: skip
_STRING, _ARRAY = 8, 9


def bad_file(path: Path, why: str) -> UserError:
    """The one-line error for a file that is not a readable GGUF."""
    return UserError(
        f"{path} is not a readable GGUF file ({why}): check the path or re-download it"
    )


def read_gguf_metadata(path: str | Path, keys: set[str] | None = None) -> dict[str, Any]:
    """Scalar and string metadata of a GGUF file, stopping once ``keys`` are all found.

    Arrays (the tokenizer's vocabulary, merges, ...) are skipped, recording only their
    length under ``"<key>#len"``; that is what makes this cheap where the ``gguf``
    package's reader decodes every string of them. Layout and type codes follow the
    GGUF specification as published with the ``gguf`` package.
    """
    import gguf

    path = Path(path)
    keys = set(keys) if keys else None
    out: dict[str, Any] = {}
    try:
        f = open(path, "rb")
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}: check the path") from e
    with f:
        head = f.read(24)
        if len(head) < 24 or struct.unpack("<I", head[:4])[0] != gguf.GGUF_MAGIC:
            raise bad_file(path, "no GGUF magic number")
        order = "<"
        version = struct.unpack("<I", head[4:8])[0]
        if version > 0xFFFF:  # written on a big-endian machine
            order = ">"
            version = struct.unpack(">I", head[4:8])[0]
        if version < 2:
            raise bad_file(path, f"GGUF version {version} is too old")
        tensor_count, kv_count = struct.unpack(order + "QQ", head[8:24])
        # Each entry takes bytes of the file (a key/value pair at least 12, a tensor
        # description at least 24): counts beyond that are damage, not models.
        size = path.stat().st_size
        if kv_count * 12 > size or tensor_count * 24 > size:
            raise bad_file(path, f"absurd counts ({tensor_count} tensors, {kv_count} keys)")
        out["GGUF.version"] = version
        try:
            for _ in range(kv_count):
                key = _read_str(f, order)
                vtype = _read(f, order + "I")
                if vtype == _ARRAY:
                    item_type = _read(f, order + "I")
                    count = _read(f, order + "Q")
                    _skip_array(f, order, item_type, count)
                    out[f"{key}#len"] = count
                else:
                    out[key] = _read_value(f, order, vtype)
                if keys is not None and keys <= out.keys():
                    break
        except (struct.error, UnicodeDecodeError, ValueError) as e:
            raise bad_file(path, f"corrupt metadata: {e}") from e
    return out


def _read(f: BinaryIO, fmt: str) -> Any:
    size = struct.calcsize(fmt)
    data = f.read(size)
    if len(data) != size:
        raise ValueError("file ends inside the metadata")
    return struct.unpack(fmt, data)[0]


# No key or value string of a real GGUF comes near this; a larger length is damage,
# and reading it would try to allocate that many bytes.
MAX_STRING = 16 * 1024 * 1024


def _read_str(f: BinaryIO, order: str) -> str:
    n = _read(f, order + "Q")
    if n > MAX_STRING:
        raise ValueError(f"string length {n} is absurd")
    data = f.read(n)
    if len(data) != n:
        raise ValueError("file ends inside a string")
    return data.decode("utf-8")


def _read_value(f: BinaryIO, order: str, vtype: int) -> Any:
    if vtype == _STRING:
        return _read_str(f, order)
    if vtype not in _SCALARS:
        raise ValueError(f"unknown value type {vtype}")
    return _read(f, order + _SCALARS[vtype])


def _skip_array(f: BinaryIO, order: str, item_type: int, count: int) -> None:
    if item_type == _STRING:
        for _ in range(count):
            f.seek(_read(f, order + "Q"), 1)
    elif item_type == _ARRAY:
        for _ in range(count):
            sub_type = _read(f, order + "I")
            _skip_array(f, order, sub_type, _read(f, order + "Q"))
    elif item_type in _SCALARS:
        f.seek(struct.calcsize(_SCALARS[item_type]) * count, 1)
    else:
        raise ValueError(f"unknown array item type {item_type}")


def gguf_architecture(path: str | Path) -> str:
    """The ``general.architecture`` of a GGUF file (reads only the start of the file)."""
    meta = read_gguf_metadata(path, keys={"general.architecture"})
    arch = meta.get("general.architecture")
    if not isinstance(arch, str):
        raise bad_file(Path(path), "no general.architecture in its metadata")
    return arch


def gguf_file_type(path: str | Path) -> str | None:
    """The file's quantisation as llama.cpp names it, e.g. ``MOSTLY_Q4_1``, or None."""
    import gguf

    value = read_gguf_metadata(path, keys={"general.file_type"}).get("general.file_type")
    if value is None:
        return None
    try:
        return gguf.LlamaFileType(int(value)).name
    except ValueError:
        return str(value)


def supported_architectures() -> list[str]:
    """GGUF architectures the installed transformers can load, sorted."""
    names: set[str] = set()
    with contextlib.suppress(ImportError):
        from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

        names.update(GGUF_SUPPORTED_ARCHITECTURES)
    with contextlib.suppress(ImportError):  # newer loader path (transformers >= 5.17)
        from transformers.integrations.gguf import GGUF_ARCHS

        names.update(GGUF_ARCHS)
    return sorted(names - _NOT_ARCHITECTURES)


def check_supported(arch: str, path: str | Path | None = None) -> None:
    """UserError naming ``arch`` and the supported ones unless transformers loads it."""
    supported = supported_architectures()
    if arch in supported or _ARCH_ALIASES.get(arch) in supported:
        return
    where = f"{path}: " if path else ""
    raise UserError(
        f"{where}GGUF architecture {arch!r} cannot be loaded by transformers: use a GGUF of "
        f"one of {', '.join(supported)}"
    )
