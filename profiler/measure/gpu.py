"""TODO: docstring."""

from __future__ import annotations

from typing import Any


def nvml_driver_version() -> str | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            v = pynvml.nvmlSystemGetDriverVersion()
        finally:
            pynvml.nvmlShutdown()
        return v.decode() if isinstance(v, bytes) else str(v)
    except Exception:  # no NVML, no driver: the fingerprint just lacks the field
        return None


class GpuProbe:
    """GPU memory of one CUDA device: NVML for the device, torch for this process.

    NVML enumerates devices in PCI bus order while CUDA may not, so the device is
    matched by PCI bus id, never by index (reading the wrong GPU is a known peer bug).
    """

    def __init__(self, device_index: int) -> None:
        import torch

        self.index = device_index
        self._torch = torch
        self._nvml: Any = None
        self._handle: Any = None
        self.pci_bus_id: str | None = None
        self.error: str | None = None
        try:
            import pynvml

            pynvml.nvmlInit()
            props = torch.cuda.get_device_properties(device_index)
            bus = getattr(props, "pci_bus_id", None)
            domain = getattr(props, "pci_domain_id", 0)
            device = getattr(props, "pci_device_id", 0)
            if bus is not None:
                self.pci_bus_id = f"{domain:08X}:{bus:02X}:{device:02X}.0"
                self._handle = pynvml.nvmlDeviceGetHandleByPciBusId(self.pci_bus_id.encode())
            else:  # old torch: fall back to index under CUDA_DEVICE_ORDER=PCI_BUS_ID
                self._handle = pynvml.nvmlDeviceGetHandleByIndex(device_index)
            self._nvml = pynvml
        except Exception as e:  # NVML missing or refused: torch figures still work
            self.error = f"NVML unavailable: {e}"

    def used_bytes(self) -> int | None:
        if self._handle is None:
            return None
        try:
            return int(self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used)
        except Exception:
            return None

    def torch_now(self) -> tuple[int, int]:
        c = self._torch.cuda
        return int(c.memory_allocated(self.index)), int(c.memory_reserved(self.index))

    def reset_peaks(self) -> None:
        self._torch.cuda.reset_peak_memory_stats(self.index)

    def torch_peaks(self) -> tuple[int, int]:
        c = self._torch.cuda
        return int(c.max_memory_allocated(self.index)), int(c.max_memory_reserved(self.index))
