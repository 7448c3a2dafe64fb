"""Environment fingerprint: what a run was measured on."""

from __future__ import annotations

import os
import platform
import socket
import sys
from importlib import metadata
from pathlib import Path

import psutil

from profiler import __version__
from profiler.measure.gpu import nvml_driver_version, pci_bus_id
from profiler.records.run import Environment
from profiler.run.device_kind import is_gpu


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo, else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def filesystem_of(path: str | os.PathLike[str]) -> tuple[str | None, str | None]:
    """(filesystem type, device) of the mount holding ``path``: the longest mount
    point that is a prefix of the resolved path."""
    try:
        target = str(Path(path).resolve())
        best: tuple[str, str, str] | None = None
        for part in psutil.disk_partitions(all=True):
            mp = part.mountpoint
            inside = target == mp or target.startswith(mp.rstrip("/") + "/")
            if inside and (best is None or len(mp) > len(best[0])):
                best = (mp, part.fstype, part.device)
        if best:
            return best[1], best[2]
    except (OSError, RuntimeError):
        pass
    return None, None


def fingerprint(
    weights_path: str | os.PathLike[str] | None = None, device: str = "cpu"
) -> Environment:
    """Fingerprint this machine. Imports torch only if it is already imported (the
    caller decides when the import cost is paid)."""
    fs_type, fs_dev = filesystem_of(weights_path) if weights_path else (None, None)
    torch_v = cuda = gpu_name = driver = pci = None
    gpu_mem = None
    torch = sys.modules.get("torch")
    if torch is not None:
        torch_v = str(torch.__version__)
        cuda = torch.version.cuda
        if is_gpu(device) and torch.cuda.is_available():
            idx = torch.device(device).index or 0
            props = torch.cuda.get_device_properties(idx)
            gpu_name = props.name
            gpu_mem = int(props.total_memory)
            driver, _why = nvml_driver_version()  # the why reaches the run via GpuProbe
            pci = pci_bus_id(props)
    else:
        torch_v = _version("torch")
    return Environment(
        python=platform.python_version(),
        platform=platform.platform(),
        cpu_model=cpu_model(),
        cpu_count=os.cpu_count() or 0,
        ram_bytes=int(psutil.virtual_memory().total),
        torch=torch_v,
        transformers=_version("transformers"),
        huggingface_hub=_version("huggingface_hub"),
        safetensors=_version("safetensors"),
        cuda=cuda,
        gpu_name=gpu_name,
        gpu_driver=driver,
        gpu_memory_bytes=gpu_mem,
        gpu_pci_bus_id=pci,
        weights_filesystem=fs_type,
        weights_device=fs_dev,
        hostname=socket.gethostname(),
        tool_version=__version__,
    )
