"""Model anatomy: the bytes of a loaded model by module group.

Shares (of the load, of a decode step's reads) are computed by
:mod:`profiler.analysis.anatomy`, never stored here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from profiler.records.fields import known_fields

# The groups, in the order a forward pass meets them.
GROUPS = ("embeddings", "attention", "mlp", "norms", "head", "other")


@dataclass(frozen=True)
class AnatomyGroup:
    """One module group: its parameters and bytes, each unique tensor counted once."""

    name: str  # one of GROUPS
    params: int
    load_bytes: int  # bytes of its tensors as loaded (dtype of the run)
    read_bytes: int  # bytes a decode step reads (lookup-only embedding tables: 0)
    tensors: int = 0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AnatomyGroup:
        return cls(**known_fields(cls, data))


@dataclass(frozen=True)
class ModelAnatomy:
    """Bytes by module group; ``tied`` when the head shares the input embedding."""

    groups: tuple[AnatomyGroup, ...]
    tied: bool = False
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "groups": [dataclasses.asdict(g) for g in self.groups],
            "tied": self.tied,
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelAnatomy:
        return cls(
            groups=tuple(AnatomyGroup.from_dict(g) for g in data.get("groups", ())),
            tied=bool(data.get("tied", False)),
            notes=tuple(data.get("notes", ())),
        )
