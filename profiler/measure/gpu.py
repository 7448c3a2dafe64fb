"""GPU identity and GPU memory, in one place.

NVML enumerates devices in PCI bus order while CUDA may not, so a CUDA device is
matched to its NVML handle by PCI bus id (:func:`pci_bus_id`), never by index:
reading the memory of the wrong GPU is a known bug of other profilers. The run's
environment, the ceilings' machine fingerprint and the per-stage memory probe all
take the bus id and the driver version from here.

NVML can be missing (no ``pynvml``, no driver library) or refuse (containers): the
figures it would give are then absent, and the reason is kept (:attr:`GpuProbe.error`,
:func:`nvml_driver_version`) so that a run can say why a GPU column is empty.
"""

from __future__ import annotations

from typing import Any


def format_pci_bus_id(domain: int, bus: int, device: int) -> str:
    """The bus id as NVML spells it: ``"00000000:1A:00.0"`` (function 0)."""
    return f"{domain:08X}:{bus:02X}:{device:02X}.0"


def pci_bus_id(props: Any) -> str | None:
    """The PCI bus id of a device from ``torch.cuda.get_device_properties``; None for a
    torch too old to report it."""
    bus = getattr(props, "pci_bus_id", None)
    if bus is None:
        return None
    return format_pci_bus_id(
        getattr(props, "pci_domain_id", 0), bus, getattr(props, "pci_device_id", 0)
    )


def nvml_error(e: BaseException) -> str:
    """One line saying why NVML gave nothing, for a run's notes."""
    text = str(e).strip().splitlines()
    return f"NVML unavailable ({type(e).__name__}: {text[0] if text else 'no message'})"


def nvml_driver_version() -> tuple[str | None, str | None]:
    """(driver version, None), or (None, why NVML could not tell)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            v = pynvml.nvmlSystemGetDriverVersion()
        finally:
            pynvml.nvmlShutdown()
        return (v.decode() if isinstance(v, bytes) else str(v)), None
    except Exception as e:  # no NVML, no driver: the field stays empty, with the reason
        return None, nvml_error(e)


def nvml_handle(pynvml: Any, device_index: int, props: Any) -> Any:
    """The NVML handle of CUDA device ``device_index``: by PCI bus id; by index only
    when torch cannot tell the bus id (then right under ``CUDA_DEVICE_ORDER=PCI_BUS_ID``,
    which llmprof's child sets)."""
    bus_id = pci_bus_id(props)
    if bus_id is not None:
        return pynvml.nvmlDeviceGetHandleByPciBusId(bus_id.encode())
    return pynvml.nvmlDeviceGetHandleByIndex(device_index)


class GpuProbe:
    """GPU memory of one CUDA device: NVML for the device, torch for this process.

    ``error`` holds the first reason NVML gave nothing (at start or on a later
    query); the torch figures work without NVML.
    """

    def __init__(self, device_index: int) -> None:
        import torch

        self.index = device_index
        self._torch = torch
        self._nvml: Any = None
        self._handle: Any = None
        self.error: str | None = None
        props = torch.cuda.get_device_properties(device_index)
        self.pci_bus_id = pci_bus_id(props)
        try:
            import pynvml

            pynvml.nvmlInit()
            self._handle = nvml_handle(pynvml, device_index, props)
            self._nvml = pynvml
        except Exception as e:  # NVML missing or refused: torch figures still work
            self.error = nvml_error(e)

    @property
    def note(self) -> str | None:
        """The run note when NVML gave nothing (None when it worked throughout)."""
        if self.error is None:
            return None
        return f"{self.error}: GPU memory in use and the driver version are not recorded"

    def used_bytes(self) -> int | None:
        """Memory in use on the device (all processes), per NVML; None without NVML."""
        if self._handle is None:
            return None
        try:
            return int(self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used)
        except Exception as e:  # keep the first reason; the sample is just missing
            if self.error is None:
                self.error = nvml_error(e)
            return None

    def energy_j(self) -> float | None:
        """NVML's total-energy counter of the device in joules (since the driver
        loaded); None without NVML or on a GPU older than Volta."""
        if self._handle is None:
            return None
        try:
            return float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)) / 1e3
        except Exception:  # noqa: BLE001 - no counter on this GPU: the stage has no energy
            return None

    def torch_now(self) -> tuple[int, int]:
        """(allocated, reserved) bytes of torch's allocator on the device, now."""
        c = self._torch.cuda
        return int(c.memory_allocated(self.index)), int(c.memory_reserved(self.index))

    def reset_peaks(self) -> None:
        """Start a new peak window for :meth:`torch_peaks`."""
        self._torch.cuda.reset_peak_memory_stats(self.index)

    def torch_peaks(self) -> tuple[int, int]:
        """(allocated, reserved) peaks of torch's allocator since :meth:`reset_peaks`."""
        c = self._torch.cuda
        return int(c.max_memory_allocated(self.index)), int(c.max_memory_reserved(self.index))
