"""Energy from NVML's total-energy counter, for load stages and decode calls.

``nvmlDeviceGetTotalEnergyConsumption`` counts millijoules since the driver was
loaded (Volta and later), so the energy of a span is the difference of two reads;
mean power is that energy over the span's wall time. The counter covers the whole
GPU (every process on it), which is why an idle neighbour adds its share. Where
NVML is absent (no ``pynvml``, no driver, a CPU run, an older GPU) the meter reads
None and keeps the reason, so the report can say why energy is missing.
"""

from __future__ import annotations

from typing import Any

from profiler.measure.gpu import nvml_error, nvml_handle

CPU_REASON = "energy not measured: NVML reports GPU energy only and this run is on the CPU"


class EnergyMeter:
    """Reads the GPU's total-energy counter in joules; None (with ``reason``) without it."""

    def __init__(self, device: str) -> None:
        self.reason: str | None = None
        self._nvml: Any = None
        self._handle: Any = None
        if not device.startswith("cuda"):
            self.reason = CPU_REASON
            return
        try:
            import pynvml
            import torch

            index = torch.device(device).index
            index = torch.cuda.current_device() if index is None else index
            pynvml.nvmlInit()
            handle = nvml_handle(pynvml, index, torch.cuda.get_device_properties(index))
            pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)  # refuses on pre-Volta
            self._nvml, self._handle = pynvml, handle
        except Exception as e:  # noqa: BLE001 - no NVML: energy is skipped with the reason
            self.reason = f"energy not measured: {nvml_error(e)}"

    @property
    def available(self) -> bool:
        return self._handle is not None

    def read_j(self) -> float | None:
        """The counter now, in joules; None when unavailable (reason kept)."""
        if self._handle is None:
            return None
        try:
            return float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)) / 1e3
        except Exception as e:  # noqa: BLE001 - one failed read: this span has no energy
            self.reason = f"energy not measured: {nvml_error(e)}"
            return None


def energy_between(before: float | None, after: float | None) -> float | None:
    """Joules between two counter reads; None when either is missing or it went back."""
    if before is None or after is None or after < before:
        return None
    return after - before
