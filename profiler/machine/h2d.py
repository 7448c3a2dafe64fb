"""Host↔device copy ceilings as the best of the ways a loader copies.

A loader copies tensor by tensor, from one or several threads, whole or in pieces;
the driver stages pageable copies through its own pinned buffers, and pieces from
several threads can pipeline better than one large copy (an H100 copied 110% of a
one-copy "ceiling" that way). So ``h2d_pageable`` and ``h2d_pinned`` are each the
best of: one whole copy, the same bytes in 16 MiB pieces from one thread, and from
several threads each on its own stream. Timed by wall clock between device
synchronizations (copies on several streams share no one event pair). Torch is
imported inside.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from profiler.analysis.rates import gbps_of
from profiler.machine.device import cuda_time
from profiler.machine.patterns import best_of, pattern_from_trials
from profiler.machine.plan import MIB
from profiler.records.ceilings import GBPS, Ceiling, Pattern

PIECE_BYTES = 16 * MIB
COPY_THREADS = 4


def _pieces(n: int, piece: int) -> list[tuple[int, int]]:
    return [(off, min(piece, n - off)) for off in range(0, n, piece)]


def _threaded(dst: Any, src: Any, threads: int, piece: int, dev: Any) -> Callable[[], None]:
    """Copy ``src`` into ``dst`` in ``piece``-sized copies handed out to ``threads``
    threads, each on its own stream."""
    import torch

    spans = _pieces(dst.numel(), piece)
    streams = [torch.cuda.Stream(device=dev) for _ in range(threads)]

    def run() -> None:
        def work(k: int) -> None:
            with torch.cuda.stream(streams[k]):
                for off, n in spans[k::threads]:
                    dst[off : off + n].copy_(src[off : off + n], non_blocking=True)
            streams[k].synchronize()

        pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()

    return run


def _wall(fn: Callable[[], None], dev: Any) -> float:
    import torch

    torch.cuda.synchronize(dev)
    t0 = time.perf_counter_ns()
    fn()
    torch.cuda.synchronize(dev)
    return (time.perf_counter_ns() - t0) / 1e9


def _pattern(
    label: str, fn: Callable[[], None], n: int, trials: int, dev: Any, *, events: bool, **kw: Any
) -> Pattern:
    fn()  # warm-up: driver staging buffers, streams, clocks
    import torch

    torch.cuda.synchronize(dev)
    secs = [cuda_time(fn) if events else _wall(fn, dev) for _ in range(trials)]
    return pattern_from_trials(label, [gbps_of(n, s) for s in secs], **kw)


def copy_patterns(dst: Any, src: Any, trials: int, dev: Any, *, pinned: bool) -> list[Pattern]:
    """The ways of copying ``src`` (host) into ``dst`` (device), each measured."""
    n = dst.numel()
    kind = "pinned" if pinned else "pageable"
    nb = pinned  # non_blocking only means something from pinned memory

    def whole() -> None:
        dst.copy_(src, non_blocking=nb)

    def pieces() -> None:
        for off, k in _pieces(n, PIECE_BYTES):
            dst[off : off + k].copy_(src[off : off + k], non_blocking=nb)

    mb = PIECE_BYTES // MIB
    return [
        _pattern(f"{kind} whole {n // MIB} MiB, 1 thread", whole, n, trials, dev,
                 events=True, mode="whole", threads=1, request_bytes=n),
        _pattern(f"{kind} {mb} MiB pieces, 1 thread", pieces, n, trials, dev,
                 events=True, mode="chunked", threads=1, request_bytes=PIECE_BYTES),
        _pattern(f"{kind} {mb} MiB pieces, {COPY_THREADS} threads × own stream",
                 _threaded(dst, src, COPY_THREADS, PIECE_BYTES, dev), n, trials, dev,
                 events=False, mode="chunked", threads=COPY_THREADS, request_bytes=PIECE_BYTES),
    ]  # fmt: skip


def probe_host_device(dev: Any, n: int, trials: int, notes: Sequence[str]) -> list[Ceiling]:
    """h2d_pageable and h2d_pinned (best of :func:`copy_patterns`) and d2h_pinned (one
    copy), of ``n`` bytes. Buffers are freed on return."""
    import torch

    gpu = torch.empty(n, dtype=torch.uint8, device=dev)
    pageable = torch.empty(n, dtype=torch.uint8)
    pageable.fill_(1)  # touch every page: untouched pages all map the zero page
    pinned = torch.empty(n, dtype=torch.uint8, pin_memory=True)
    pinned.fill_(1)
    out = []
    for name, src, is_pinned in (("h2d_pageable", pageable, False), ("h2d_pinned", pinned, True)):
        pats = copy_patterns(gpu, src, trials, dev, pinned=is_pinned)
        out.append(
            best_of(
                name, GBPS, pats, notes=notes, size_bytes=n,
                method=f"best of {len(pats)} ways to copy {n // MIB} MiB to the device, "
                f"median of {trials} after a warm-up",
            )
        )  # fmt: skip

    def d2h() -> None:
        pinned.copy_(gpu, non_blocking=True)

    d2h_pat = _pattern("device → pinned, whole", d2h, n, trials, dev, events=True,
                       mode="whole", threads=1, request_bytes=n)  # fmt: skip
    out.append(
        best_of(
            "d2h_pinned", GBPS, [d2h_pat], notes=notes, size_bytes=n,
            method=f"torch copy_ of {n // MIB} MiB device → pinned host tensor, "
            f"CUDA events; median of {trials} after a warm-up",
        )
    )  # fmt: skip
    return out
