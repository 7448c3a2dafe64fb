"""The matmul rate in a given dtype, measured where a decode runs.

The machine's ``matmul_bf16`` ceiling is measured in bfloat16 only, so a float32
prefill judged against it compares two different arithmetic rates (on a CPU
without bf16 units float32 can be several times faster, or slower). The decode
loop measures the rate in the model's own dtype, in the same process and with the
same threads, so that a prefill MFU and a matmul floor of a step use the rate the
model's matmuls could reach. Torch is imported inside the function.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from profiler.analysis.rates import matmul_tflops_of
from profiler.analysis.stats import median

# Square size per device kind: large enough to leave the per-call overhead behind,
# small enough to take well under a second in float32 on 2 CPU cores.
CPU_N = 1024
GPU_N = 8192


@dataclass(frozen=True)
class MatmulRate:
    """A measured matmul rate and how it was measured."""

    tflops: float
    dtype: str  # torch dtype name without the "torch." prefix
    method: str


def measure_matmul(device: str, dtype: str, n: int | None = None, trials: int = 3) -> MatmulRate:
    """Median TFLOP/s of ``trials`` n×n×n ``torch.matmul`` in ``dtype`` on ``device``.

    One untimed product first (thread pool start, kernel selection). On CUDA each
    trial is timed with CUDA events around 5 products; on CPU with perf_counter.
    """
    import torch

    if trials < 1:
        raise ValueError("trials must be at least 1")
    dev = torch.device(device)
    on_gpu = dev.type == "cuda"
    n = n or (GPU_N if on_gpu else CPU_N)
    torch_dtype = getattr(torch, dtype)
    gen = torch.Generator(device=dev).manual_seed(0)
    a = torch.randn(n, n, dtype=torch_dtype, device=dev, generator=gen)
    b = torch.randn(n, n, dtype=torch_dtype, device=dev, generator=gen)
    c = torch.empty(n, n, dtype=torch_dtype, device=dev)
    torch.matmul(a, b, out=c)
    rates: list[float] = []
    if on_gpu:
        from profiler.machine.device import cuda_time

        def product() -> None:
            torch.matmul(a, b, out=c)

        torch.cuda.synchronize(dev)
        for _ in range(trials):
            rates.append(matmul_tflops_of(n, cuda_time(product, 5)))
        how = f"CUDA events around 5 products on {torch.cuda.get_device_name(dev)}"
    else:
        for _ in range(trials):
            t0 = time.perf_counter_ns()
            torch.matmul(a, b, out=c)
            rates.append(matmul_tflops_of(n, (time.perf_counter_ns() - t0) / 1e9))
        how = f"perf_counter, {torch.get_num_threads()} torch thread(s)"
    return MatmulRate(
        tflops=median(rates),
        dtype=dtype,
        method=f"torch.matmul {dtype} {n}x{n}x{n}, {how}; median of {trials} after a warm-up",
    )
