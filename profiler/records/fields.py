"""What every record file shares: the schema version, the units its field suffixes
name, and the tolerant field filter that lets a reader skip fields it does not know."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

# 2: stages carry their lazy imports (import_s, import_modules, import_packages, gc_s)
#    and rank / world_size / device; runs carry the native trace, decode variants,
#    step profiles, energy, prompt sweeps and the model anatomy. Every field added in 2
#    has a default, so version-1 files still read.
SCHEMA_VERSION = 2


UNITS: dict[str, str] = {
    "_ns": "nanoseconds (CLOCK_MONOTONIC)",
    "_s": "seconds",
    "_bytes": "bytes",
    "_gbps": "gigabytes (1e9 bytes) per second",
    "_fraction": "fraction of 1 (0.25 = 25%)",
    "_per_s": "per second",
}


def known_fields(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``data`` that ``cls`` has fields for (newer files may hold more)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}
