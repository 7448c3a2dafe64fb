"""Sizes written by people: ``"2GB"``, ``"512MiB"``, ``"1000"``.

One parser for every size llmprof reads (the ceilings' ``--size``, a synthetic
model's shard size). Decimal and binary units are spelled apart, as transformers
spells ``max_shard_size``: ``kB``/``MB``/``GB``/``TB`` are powers of 1000,
``KiB``/``MiB``/``GiB``/``TiB`` powers of 1024, case aside. A bare ``K``, ``M``,
``G`` or ``T`` is refused: tools disagree on what it means, and a size read the
other way is off by 7% at GB scale without any sign of it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType

from profiler.errors import UserError

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)
_UNITS: Mapping[str, int] = MappingProxyType(
    {
        "": 1, "b": 1,
        "kb": 10**3, "kib": 2**10,
        "mb": 10**6, "mib": 2**20,
        "gb": 10**9, "gib": 2**30,
        "tb": 10**12, "tib": 2**40,
    }
)  # fmt: skip
_AMBIGUOUS = ("k", "m", "g", "t")


def parse_size(text: str, what: str = "size") -> int:
    """Bytes in a size such as ``"2GB"`` (2·10⁹), ``"500MiB"`` or ``"1000"``.

    UserError naming ``what`` (e.g. ``"--size"``) for anything that is not a
    positive size, or whose unit is ambiguous.
    """
    m = _SIZE_RE.match(text)
    unit = m.group(2).lower() if m else ""
    if m and unit in _AMBIGUOUS:
        n = m.group(1)
        u = unit.upper()
        raise UserError(
            f"{what} {text!r} is ambiguous: write {n}{u}iB (powers of 1024) or {n}{u}B "
            "(powers of 1000)"
        )
    if m is None or unit not in _UNITS:
        raise UserError(f"{what} {text!r} is not a size: write it like 2GB, 500MB or 4GiB")
    size = int(float(m.group(1)) * _UNITS[unit])
    if size <= 0:
        raise UserError(f"{what} {text!r} is not positive: write it like 2GB")
    return size


def size_label(nbytes: int) -> str:
    """Short, exact label of a byte count for folder names: 4000000000 -> "4GB"."""
    for unit, scale in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if nbytes % scale == 0:
            return f"{nbytes // scale}{unit}"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes % scale == 0:
            return f"{nbytes // scale}{unit}"
    return f"{nbytes}B"
