"""Memory bandwidth of a device, measured with one large copy.

The figure is the denominator of memory-bandwidth utilisation (MBU): how close a
decode step comes to the speed at which the device can move bytes at all. It is
measured in the same run as the decode it is compared with, never looked up from a
datasheet, because the attainable number depends on the machine, its clocks, the
NUMA placement and the torch build.

What is counted: a copy ``dst.copy_(src)`` of ``n`` bytes reads ``n`` bytes and
writes ``n`` bytes, so the rate is ``2 * n / time``. Vendors quote device bandwidth
the same way (read + write), which makes the figure comparable with a datasheet.

Torch is imported inside the function: this module stays importable from the CLI
without paying for torch.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

from profiler.errors import UserError

MIB = 1 << 20
DEFAULT_CPU_BYTES = 512 * MIB
DEFAULT_GPU_BYTES = 2048 * MIB


@dataclass(frozen=True)
class BandwidthResult:
    """A measured memory bandwidth.

    ``gbps`` is the median over ``trials_gbps`` in 1e9 bytes per second, counting the
    bytes read plus the bytes written by the copy. ``method`` says how it was taken
    (device, size, threads, timer) so a reader can judge the number.
    """

    gbps: float
    method: str
    trials_gbps: tuple[float, ...]
    nbytes: int = 0  # size of one copy's source (the copy moves twice this)
    threads: int | None = None  # torch intra-op threads on CPU; None on GPU


def copy_gbps(nbytes: int, seconds: float) -> float:
    """Rate of a copy of ``nbytes`` taking ``seconds``: bytes read + bytes written."""
    if seconds <= 0:
        raise ValueError(f"copy time must be positive, got {seconds}")
    return 2 * nbytes / seconds / 1e9


def measure_memory_bandwidth(
    device: str, nbytes: int | None = None, trials: int = 5
) -> BandwidthResult:
    """Time ``trials`` copies of ``nbytes`` on ``device`` and return the median rate.

    ``nbytes`` defaults to 512 MiB on CPU and 2 GiB on a GPU: far larger than any
    cache, so the copy runs at memory speed. One untimed copy comes first (it faults
    in the destination pages and wakes clocks). On CUDA each trial is timed with CUDA
    events around the copy; on CPU with ``time.perf_counter_ns``. On CPU, torch runs
    the copy on its intra-op thread pool, so the figure is what
    ``torch.get_num_threads()`` threads reach together, recorded in ``threads``.
    """
    import torch

    if trials < 1:
        raise UserError(f"bandwidth trials must be >= 1, got {trials}: pass trials=1 or more")
    dev = torch.device(device)
    on_gpu = dev.type == "cuda"
    if nbytes is None:
        nbytes = DEFAULT_GPU_BYTES if on_gpu else DEFAULT_CPU_BYTES
    if nbytes < MIB:
        raise UserError(
            f"bandwidth copy of {nbytes} bytes is too small to leave the caches: use >= 1 MiB"
        )
    if on_gpu and not torch.cuda.is_available():
        raise UserError(f"device {device} asked for but CUDA is not available: use --device cpu")
    try:
        src = torch.empty(nbytes, dtype=torch.uint8, device=dev)
        # Untouched anonymous CPU pages all map the kernel's shared zero page, which
        # reads from cache: fill the source so the copy reads real memory.
        src.fill_(1)
        dst = torch.empty_like(src)
    except (RuntimeError, MemoryError) as e:
        raise UserError(
            f"cannot allocate 2 x {nbytes / MIB:.0f} MiB on {device} for the bandwidth copy "
            f"({type(e).__name__}): pass a smaller size"
        ) from e

    try:
        seconds = _time_copies(src, dst, trials, on_gpu)
    finally:
        del src, dst
        if on_gpu:
            torch.cuda.empty_cache()

    rates = tuple(copy_gbps(nbytes, s) for s in seconds)
    threads = None if on_gpu else torch.get_num_threads()
    if on_gpu:
        name = torch.cuda.get_device_name(dev)
        how = f"device-to-device copy_ on {name}, timed with CUDA events"
    else:
        how = (
            f"torch copy_ in host memory on {threads} torch thread(s) "
            "(torch.get_num_threads(); torch splits the copy across them), "
            "timed with perf_counter"
        )
    method = (
        f"{how}; {nbytes / MIB:.0f} MiB uint8, bytes read + written, "
        f"median of {trials} after 1 warm-up copy"
    )
    return BandwidthResult(
        gbps=statistics.median(rates),
        method=method,
        trials_gbps=rates,
        nbytes=nbytes,
        threads=threads,
    )


def _time_copies(src: Any, dst: Any, trials: int, on_gpu: bool) -> list[float]:
    """Seconds of each of ``trials`` copies ``dst.copy_(src)`` after one untimed copy
    (it faults the destination pages in, warms clocks and the allocator)."""
    from profiler.machine.device import cuda_time

    dst.copy_(src)
    if on_gpu:
        import torch

        torch.cuda.synchronize(src.device)
        return [cuda_time(lambda: dst.copy_(src)) for _ in range(trials)]
    seconds = []
    for _ in range(trials):
        t0 = time.perf_counter_ns()
        dst.copy_(src)
        seconds.append((time.perf_counter_ns() - t0) / 1e9)
    return seconds
