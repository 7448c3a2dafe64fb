"""The ``--device`` option: ``cpu``, ``cuda`` or ``cuda:N``, checked against this machine."""

from __future__ import annotations

from profiler.errors import UserError


def parse_device(device: str) -> str:
    """Normalise ``cpu`` | ``cuda`` | ``cuda:N``; UserError for anything else or for a
    CUDA device that is not there."""
    d = device.strip().lower()
    if d == "cpu":
        return "cpu"
    if d == "cuda" or (d.startswith("cuda:") and d[5:].isdigit()):
        import torch

        if not torch.cuda.is_available():
            raise UserError(
                f"--device {device}: no CUDA device is available "
                "(torch.cuda.is_available() is False): use --device cpu"
            )
        index = int(d[5:]) if ":" in d else torch.cuda.current_device()
        count = torch.cuda.device_count()
        if index >= count:
            raise UserError(
                f"--device {device}: this machine has {count} CUDA device(s): "
                f"use cuda:0..cuda:{count - 1}"
            )
        return f"cuda:{index}"
    raise UserError(f"unknown device {device!r}: use cpu, cuda or cuda:N")
