"""The fast path's figures from a ``--variants`` run: pure functions.

Per cache state: the fast path's ``read_copy`` rate (checkpoint bytes read and on
the device per second), as a fraction of the pinned host-to-device ceiling and of
the ceiling its stage was judged against, and its whole load (tokenizer → eval)
against plain ``from_pretrained`` + ``.to()`` measured in the same session.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from profiler.analysis.stats import median
from profiler.records.ceilings import Ceilings
from profiler.records.run import RunRecord

FAST = "llmprof fast path"
TUTORIAL = "from_pretrained + .to()"


@dataclass(frozen=True)
class FastPathFigures:
    """Medians over the repetitions of one cache state; None where not measured."""

    cache: str
    read_copy_gbps: float | None
    pinned_gbps: float | None
    ceiling_name: str | None
    ceiling_fraction: float | None
    fast_load_s: float | None
    tutorial_load_s: float | None
    runs: int

    @property
    def pinned_fraction(self) -> float | None:
        if self.read_copy_gbps is None or not self.pinned_gbps:
            return None
        return self.read_copy_gbps / self.pinned_gbps

    @property
    def speedup(self) -> float | None:
        if not self.fast_load_s or self.tutorial_load_s is None:
            return None
        return self.tutorial_load_s / self.fast_load_s


def _med(xs: Sequence[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return median(vals) if vals else None


def fastpath_figures(runs: Sequence[RunRecord], ceilings: Ceilings | None) -> list[FastPathFigures]:
    """One :class:`FastPathFigures` per cache state in which the fast path ran."""
    caches: list[str] = []
    for r in runs:
        if r.variant == FAST and r.status == "ok" and r.cache.label not in caches:
            caches.append(r.cache.label)
    pinned = ceilings.value("h2d_pinned") if ceilings is not None else None
    out = []
    for cache in caches:
        fast = [
            r for r in runs if r.variant == FAST and r.status == "ok" and r.cache.label == cache
        ]
        tut = [
            r for r in runs if r.variant == TUTORIAL and r.status == "ok" and r.cache.label == cache
        ]
        stages = [s for s in (r.stage("read_copy") for r in fast) if s is not None]
        names = {s.ceiling_name for s in stages if s.ceiling_name}
        out.append(
            FastPathFigures(
                cache=cache,
                read_copy_gbps=_med([s.gbps for s in stages]),
                pinned_gbps=pinned,
                ceiling_name=names.pop() if len(names) == 1 else None,
                ceiling_fraction=_med([s.ceiling_fraction for s in stages]),
                fast_load_s=_med([r.load_total_s for r in fast]),
                tutorial_load_s=_med([r.load_total_s for r in tut]),
                runs=len(fast),
            )
        )
    return out
