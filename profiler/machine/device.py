"""The device ceilings: host↔device copies, device memory and the matmul rate.

Copies and matmuls on a GPU are timed with CUDA events around the work on the
current stream (:func:`cuda_time`), after an untimed warm-up. The host↔device
ceilings are the best of several ways to copy (:mod:`profiler.machine.h2d`), so that
no loader's tensor-by-tensor or multi-threaded copies can beat them.
Torch is imported inside the probes only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from profiler.analysis.rates import matmul_tflops_of
from profiler.analysis.stats import median
from profiler.machine.plan import BLOCK_BYTES, MIB, ProbePlan, ceiling_from_trials
from profiler.records.ceilings import GBPS, MATMUL, TFLOPS, Ceiling
from profiler.run.device_kind import is_gpu


def cuda_time(fn: Callable[[], None], repeat: int = 1) -> float:
    """Seconds per call of ``fn`` on the current stream, timed with CUDA events."""
    import torch

    start = torch.cuda.Event(enable_timing=True)
    stop = torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeat):
        fn()
    stop.record()
    stop.synchronize()
    return start.elapsed_time(stop) / 1e3 / repeat


def better_pageable(
    nbytes: int, piece: int, what: str, whole: Sequence[float], pieces: Sequence[float]
) -> tuple[list[float], str]:
    """The trials of the faster way to copy pageable memory to the device (by median:
    one copy of ``nbytes``, or the same bytes in ``piece``-sized copies) and the
    method text, which also gives the other way's median."""
    trials = len(whole)
    if median(pieces) > median(whole):
        method = (
            f"torch copy_ of {nbytes / MIB:.0f} MiB in {piece // MIB} MiB pieces, "
            f"{what}, timed with CUDA events; median of {trials} after a warm-up "
            f"(one {nbytes / MIB:.0f} MiB copy: {median(whole):.2f} GB/s)"
        )
        return list(pieces), method
    method = (
        f"torch copy_ of {nbytes / MIB:.0f} MiB, {what}, timed with CUDA events; "
        f"median of {trials} after a warm-up ({piece // MIB} MiB pieces: "
        f"{median(pieces):.2f} GB/s)"
    )
    return list(whole), method


def probe_gpu(device: str, plan: ProbePlan, say: Callable[[str], None]) -> list[Ceiling]:
    """h2d_pageable, h2d_pinned, d2h_pinned and device_memory of ``device``, with sizes
    cut to what its free memory allows."""
    import torch

    from profiler.machine.bandwidth import measure_memory_bandwidth

    dev = torch.device(device)
    torch.cuda.set_device(dev)
    n = plan.gpu_bytes
    free, _ = torch.cuda.mem_get_info(dev)
    notes: list[str] = []
    if free < 3 * n:
        n = max(BLOCK_BYTES, (free // 4) // BLOCK_BYTES * BLOCK_BYTES)
        notes.append(f"sizes cut to {n // MIB} MiB by free GPU memory")
    out: list[Ceiling] = []
    say(f"h2d/d2h: {plan.trials} x {n / MIB:.0f} MiB")
    from profiler.machine.h2d import probe_host_device

    out.extend(probe_host_device(dev, n, plan.trials, notes))
    torch.cuda.empty_cache()

    say(f"device_memory: {plan.trials} x {n / MIB:.0f} MiB")
    r = measure_memory_bandwidth(device, nbytes=n, trials=plan.trials)
    out.append(
        Ceiling("device_memory", r.gbps, GBPS, tuple(r.trials_gbps), r.method, tuple(notes), n)
    )
    torch.cuda.empty_cache()
    return out


def probe_matmul(device: str, plan: ProbePlan, say: Callable[[str], None]) -> Ceiling:
    """The bf16 matmul rate of ``device`` (CUDA events on a GPU, a rough CPU figure)."""
    import torch

    n = plan.matmul_n
    dev = torch.device(device)
    say(f"matmul: {plan.trials} x bf16 {n}^3 on {device}")
    gen = torch.Generator(device=dev).manual_seed(0)
    # Random operands: a GPU runs measurably faster (less power) on zeros.
    a = torch.randn(n, n, dtype=torch.bfloat16, device=dev, generator=gen)
    b = torch.randn(n, n, dtype=torch.bfloat16, device=dev, generator=gen)
    c = torch.empty(n, n, dtype=torch.bfloat16, device=dev)
    notes: list[str] = []
    if is_gpu(device):
        repeat = 10

        def fn() -> None:
            torch.matmul(a, b, out=c)

        for _ in range(3):
            fn()
        torch.cuda.synchronize(dev)
        trials = [matmul_tflops_of(n, cuda_time(fn, repeat)) for _ in range(plan.trials)]
        method = (
            f"torch.matmul bf16 {n}x{n}x{n} on random data, mean of {repeat} per "
            f"trial timed with CUDA events; median of {plan.trials} after 3 warm-ups"
        )
    else:
        torch.matmul(a, b, out=c)
        trials = []
        for _ in range(plan.trials):
            t0 = time.perf_counter_ns()
            torch.matmul(a, b, out=c)
            trials.append(matmul_tflops_of(n, (time.perf_counter_ns() - t0) / 1e9))
        method = (
            f"torch.matmul bf16 {n}x{n}x{n} on random data, {torch.get_num_threads()} "
            f"torch thread(s), perf_counter; median of {plan.trials} after a warm-up"
        )
        notes.append("CPU matmul at a small size: a rough rate for CPU prefill MFU")
    return ceiling_from_trials(MATMUL, TFLOPS, trials, method, notes, 2 * n * n)
