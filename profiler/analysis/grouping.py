"""Group run records and summarize each group: pure functions, records in, dataclasses out.

Runs that measured the same thing (model, device, resolved dtype, cache state, and
machine) form a group; its repetitions are summarized per stage with
:func:`profiler.analysis.stats.summarize` (median, and the MAD as spread). Groups that differ
only in their cache state give the cold-versus-warm comparison.

Failed repetitions are kept out of the statistics (their stages stop early and would
drag the medians) and are listed on their own with their exit status and error.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from profiler.records.run import Environment, RunRecord

# Order of cache states inside one subject: cold first, the way a reader compares.
_TEMPERATURE_RANK = {"cold": 0, "not-cold": 1, "warm": 2, "uncontrolled": 3}


KEY_FIELDS: tuple[str, ...] = ("model", "device", "dtype", "variant", "cache", "machine")


Subject = tuple[str, str, str, str, str]


@dataclass(frozen=True)
class GroupKey:
    """What must match for runs to be repetitions of one measurement."""

    model: str  # ModelInfo.spec
    device: str
    dtype: str  # dtype_resolved
    cache: str  # CacheState.label
    machine: str  # canonical text of Environment.machine_key()
    variant: str = ""  # RunRecord.variant (`llmprof load --variants`), "" when none

    @property
    def subject(self) -> Subject:
        """The key without the cache state: groups sharing it compare cold with warm."""
        return (self.model, self.device, self.dtype, self.variant, self.machine)


@dataclass(frozen=True)
class RunGroup:
    key: GroupKey
    runs: tuple[RunRecord, ...]


def machine_id(env: Environment) -> str:
    """Canonical text of what makes two machines the same (see Environment.machine_key)."""
    return json.dumps(env.machine_key(), sort_keys=True, default=str)


def machine_label(env: Environment) -> str:
    """Short human name of a machine: its GPU when it has one, else its CPU."""
    if env.gpu_name:
        return env.gpu_name
    return f"{env.cpu_model} ({env.cpu_count} cores)"


def cache_temperature(label: str) -> str:
    """The page-cache part of a cache label: cold | not-cold | warm | uncontrolled."""
    parts = [p for p in label.split("/") if p and not p.startswith("hub-") and p != "in-process"]
    return parts[0] if parts else label


def key_of(run: RunRecord) -> GroupKey:
    return GroupKey(
        model=run.model.spec,
        device=run.device,
        dtype=run.dtype_resolved,
        cache=run.cache.label,
        machine=machine_id(run.environment),
        variant=run.variant or "",
    )


def group_runs(runs: Iterable[RunRecord]) -> list[RunGroup]:
    """Group runs by :class:`GroupKey`.

    Subjects keep the order in which they first appear; inside a subject, cache
    states go cold, not-cold, warm, uncontrolled. Repetitions keep their order.
    """
    buckets: dict[GroupKey, list[RunRecord]] = {}
    for run in runs:
        buckets.setdefault(key_of(run), []).append(run)
    subject_order: dict[Subject, int] = {}
    for k in buckets:
        subject_order.setdefault(k.subject, len(subject_order))

    def order(k: GroupKey) -> tuple[int, int, str]:
        rank = _TEMPERATURE_RANK.get(cache_temperature(k.cache), len(_TEMPERATURE_RANK))
        return (subject_order[k.subject], rank, k.cache)

    return [
        RunGroup(k, tuple(sorted(buckets[k], key=lambda r: r.repetition)))
        for k in sorted(buckets, key=order)
    ]


def varying_fields(keys: Sequence[GroupKey]) -> tuple[str, ...]:
    """The key fields whose value differs between groups (at least ``cache`` if one group)."""
    out = tuple(f for f in KEY_FIELDS if len({getattr(k, f) for k in keys}) > 1)
    return out or ("cache",)
