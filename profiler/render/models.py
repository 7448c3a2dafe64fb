"""What ``llmprof models`` shows: the synthetic presets and llmprof's model cache, as tables.

Pure functions: presets and cache entries in, text out; the command gathers them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from profiler.render.format import MISSING, count, human_bytes, human_seconds

if TYPE_CHECKING:
    from profiler.caches.models import CachedModel
    from profiler.sources.presets import Preset

PRESET_HEADERS = (
    "preset",
    "architecture",
    "parameters",
    "published",
    "dtype",
    "weights on disk",
    "shards of",
)
CACHE_HEADERS = ("folder", "kind", "dtype", "format", "weights", "on disk", "built in")


def _tabulate(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> str:
    from tabulate import tabulate

    return tabulate(rows, headers=headers, disable_numparse=True)


def presets_table(presets: Iterable[Preset]) -> str:
    """One row per synthetic preset: shape, parameter count (computed), size on disk."""
    from profiler.sources.presets import count_parameters, weight_bytes

    rows = [
        [
            f"synthetic:{p.name}",
            p.architecture,
            count(count_parameters(p)),
            p.published_label or MISSING,
            p.storage_dtype,
            human_bytes(weight_bytes(p)),
            p.default_max_shard_size or "one file",
        ]
        for p in presets
    ]
    return _tabulate(rows, PRESET_HEADERS)


def cache_table(cached: Sequence[CachedModel]) -> str:
    """One row per model folder in llmprof's cache: what it is, its size, its build time."""
    rows = []
    for c in cached:
        s = c.source
        build_s = s.get("build_s")
        rows.append(
            [
                c.name,
                s.get("kind", "?"),
                s.get("storage_dtype", "?"),
                s.get("format", "?"),
                "random" if s.get("random_weights") else "real",
                human_bytes(c.size_bytes),
                human_seconds(build_s) if isinstance(build_s, (int, float)) else MISSING,
            ]
        )
    return _tabulate(rows, CACHE_HEADERS)
