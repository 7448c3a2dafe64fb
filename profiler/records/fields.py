"""TODO: docstring."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

SCHEMA_VERSION = 1


UNITS: dict[str, str] = {
    "_ns": "nanoseconds (CLOCK_MONOTONIC)",
    "_s": "seconds",
    "_bytes": "bytes",
    "_gbps": "gigabytes (1e9 bytes) per second",
    "_fraction": "fraction of 1 (0.25 = 25%)",
    "_per_s": "per second",
}


def known_fields(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}
