"""The machine key of cached ceilings, and the folder measured by default.

Ceilings depend on the hardware and on the filesystem the weights are read from, so
the key names both; GPU identity comes from :mod:`profiler.measure.gpu`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from profiler.machine.plan import GIB
from profiler.measure.gpu import nvml_driver_version
from profiler.run.device_kind import is_gpu


def default_folder() -> Path:
    """The Hugging Face hub cache (where models land), or its nearest existing parent."""
    hub = os.environ.get("HF_HUB_CACHE")
    if hub:
        p = Path(hub)
    else:
        home = os.environ.get("HF_HOME")
        p = Path(home) / "hub" if home else Path.home() / ".cache" / "huggingface" / "hub"
    p = p.expanduser()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def machine_fingerprint(folder: str | os.PathLike[str], device: str) -> dict[str, Any]:
    """What must match for cached ceilings to apply: CPU model and cores, RAM, GPU
    name/driver/CUDA (of ``device``), torch version, and the filesystem (device id and
    type) holding ``folder``."""
    import psutil
    import torch

    from profiler.measure.environment import cpu_model, filesystem_of

    st = os.stat(folder)
    fs_type, fs_source = filesystem_of(folder)
    fp: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count() or 0,
        # Whole GiB: MemTotal moves by a few MiB between boots of one machine.
        "ram_gib": round(psutil.virtual_memory().total / GIB),
        "torch": str(torch.__version__),
        "cuda": torch.version.cuda,
        "device": device,
        "gpu_name": None,
        "gpu_driver": None,
        "fs_device": f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}",
        "fs_type": fs_type,
        "fs_source": fs_source,
    }
    if is_gpu(device):
        idx = int(device.split(":", 1)[1]) if ":" in device else 0
        fp["gpu_name"] = torch.cuda.get_device_name(idx)
        fp["gpu_driver"], _why = nvml_driver_version()
    return fp


def fingerprint_hash(fingerprint: Mapping[str, Any]) -> str:
    """A short, stable hash of a fingerprint (the cache file's name)."""
    blob = json.dumps(dict(fingerprint), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
