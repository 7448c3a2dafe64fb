"""What kind of device a normalised device string names (no torch needed)."""

from __future__ import annotations


def is_gpu(device: str) -> bool:
    """Whether ``device`` (``cpu``, ``cuda`` or ``cuda:N``) is a CUDA GPU."""
    return device.startswith("cuda")
