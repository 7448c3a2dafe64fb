"""TODO: docstring."""

from __future__ import annotations


def is_gpu(device: str) -> bool:
    return device.startswith("cuda")
