"""What llmprof's own instrumentation costs: the same staged load, plain and
instrumented, alternated in one process so that both see the same machine."""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from pathlib import Path

from profiler.analysis.stats import median
from profiler.load.common import LoadOptions
from profiler.load.staged import load_staged
from profiler.measure.recorder import NullRecorder, Recorder


@dataclass(frozen=True)
class Overhead:
    plain_s: tuple[float, ...]
    instrumented_s: tuple[float, ...]

    @property
    def fraction(self) -> float:
        """(median instrumented − median plain) / median plain."""
        p = median(self.plain_s)
        return (median(self.instrumented_s) - p) / p

    @property
    def paired_fraction(self) -> float:
        """Median over rounds of (instrumented / plain − 1). Each round ran both loads
        back to back (order alternating), so drift of a shared machine over the run
        cancels within a round: the estimate the 2% budget is checked against."""
        return median([i / p - 1 for p, i in zip(self.plain_s, self.instrumented_s, strict=True)])


def measure_overhead(folder: Path, options: LoadOptions, rounds: int = 5) -> Overhead:
    """Alternate plain and instrumented loads (plain first in even rounds, second in
    odd ones, so order effects cancel). One untimed load first warms the page cache
    and the imports, which would otherwise land on whichever runs first."""
    load_staged(folder, options, NullRecorder())
    plain: list[float] = []
    inst: list[float] = []
    for i in range(rounds):
        order = (False, True) if i % 2 == 0 else (True, False)
        for instrumented in order:
            gc.collect()
            rec = Recorder(progress=False) if instrumented else NullRecorder()
            t0 = time.perf_counter()
            loaded = load_staged(folder, options, rec)
            if options.device.startswith("cuda"):
                import torch

                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            del loaded
            (inst if instrumented else plain).append(dt)
    return Overhead(tuple(plain), tuple(inst))
