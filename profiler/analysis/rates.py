"""Rates and fractions every measurement shares: GB/s, copy GB/s, TFLOP/s, dtype sizes.

One definition each: a GB is 10⁹ bytes, a copy moves its bytes twice (read and
written), a matmul of n×n by n×n is 2·n³ operations.
"""

from __future__ import annotations


def gbps_of(nbytes: float, seconds: float) -> float:
    """Rate of moving ``nbytes`` in ``seconds``, in GB/s (1e9 bytes per second)."""
    if seconds <= 0:
        raise ValueError(f"time must be positive, got {seconds}")
    return nbytes / seconds / 1e9


def copy_gbps_of(nbytes: float, seconds: float) -> float:
    """Rate of a copy of ``nbytes``: bytes read plus bytes written."""
    return gbps_of(2 * nbytes, seconds)


def fraction_of(achieved: float | None, ceiling: float | None) -> float | None:
    """``achieved / ceiling``, or None when either is missing or the ceiling is 0."""
    if achieved is None or not ceiling:
        return None
    return achieved / ceiling


def matmul_tflops_of(n: int, seconds: float) -> float:
    """Rate of one n×n×n matrix product (2·n³ floating-point operations), TFLOP/s."""
    if seconds <= 0:
        raise ValueError(f"time must be positive, got {seconds}")
    return 2.0 * n**3 / seconds / 1e12


# Bytes per element, by torch name and by safetensors' short name.
ITEMSIZE: dict[str, int] = {
    "float64": 8, "F64": 8, "float32": 4, "F32": 4, "float16": 2, "F16": 2,
    "bfloat16": 2, "BF16": 2, "float8_e4m3fn": 1, "float8_e5m2": 1, "F8_E4M3": 1,
    "F8_E5M2": 1,
}  # fmt: skip


def dtype_size(name: str | None) -> int | None:
    """Bytes per element of a dtype named as torch or safetensors name it."""
    if not name:
        return None
    return ITEMSIZE.get(name.replace("torch.", ""))
