"""Sweep the fast path's reader (threads × chunk size) on a built preset, warm and
cold, on a GPU machine: python scripts/gpu_fastpath_sweep.py synthetic:qwen2-7b"""

from __future__ import annotations

import sys
import time

import torch

from profiler.caches.page import evict, residency, warm
from profiler.load.checkpoint import find_checkpoint
from profiler.load.read import read_to_device
from profiler.sources import resolve_local

spec = sys.argv[1] if len(sys.argv) > 1 else "synthetic:qwen2-7b"
folder = resolve_local(spec).path
files = list(find_checkpoint(folder).files)
total = sum(f.stat().st_size for f in files)
MiB = 1 << 20


def once(threads: int, chunk: int) -> float:
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    bufs = read_to_device(files, "cuda", threads=threads, chunk_bytes=chunk)
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    del bufs
    torch.cuda.empty_cache()
    return total / dt / 1e9


print(f"{spec}: {total / 1e9:.2f} GB in {len(files)} files")
warm(files)
once(16, 16 * MiB)  # allocator and pinned-host caches warm-up
print("warm (page cache resident):")
for threads in (8, 16, 32):
    for chunk in (8 * MiB, 16 * MiB, 64 * MiB):
        rates = sorted(once(threads, chunk) for _ in range(2))
        print(
            f"  threads {threads:2d} chunk {chunk // MiB:3d} MiB: {rates[-1]:6.2f} GB/s "
            f"(2 runs: {rates[0]:.2f}, {rates[1]:.2f})"
        )
print("cold (evicted, residency checked):")
for threads, chunk in ((4, 64 * MiB), (8, 64 * MiB), (16, 32 * MiB)):
    r = evict(files)
    rate = once(threads, chunk)
    print(
        f"  threads {threads:2d} chunk {chunk // MiB:3d} MiB: {rate:6.2f} GB/s "
        f"(resident before: {100 * r.fraction:.1f}%)"
    )
print("residency after:", f"{100 * residency(files).fraction:.1f}%")
