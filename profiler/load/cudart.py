"""The CUDA runtime through ctypes: pinned memory, streams, events, async copies.

The fast path issues one host-to-device copy per chunk. Through torch each costs a
dispatch under the GIL; sixteen reader threads then queue on the GIL and small
chunks are slow (H200, 15.2 GB warm: 4 MiB chunks through torch 12–15 GB/s). A
ctypes call into ``libcudart`` releases the GIL and costs microseconds, so the
per-chunk loop stays cheap (same shape through ctypes: 51.8 GB/s,
reports/gpu-h200/fastpath-sweep.md).

The library is the one torch already loaded (found in ``/proc/self/maps`` after
``torch.cuda.init()``), so the runtime, context and device are torch's own and
device pointers of torch tensors are valid here. :func:`runtime` returns None
where there is no CUDA or no such library; callers then use torch.
"""

from __future__ import annotations

import ctypes
import glob
import os
import threading
from pathlib import Path

MEMCPY_HOST_TO_DEVICE = 1  # cudaMemcpyHostToDevice
STREAM_NON_BLOCKING = 1  # cudaStreamNonBlocking: no implicit sync with the default stream
EVENT_DISABLE_TIMING = 2  # cudaEventDisableTiming: cheapest event, for ordering only
HOST_REGISTER_PORTABLE = 1  # cudaHostRegisterPortable

_VP = ctypes.c_void_p
_SZ = ctypes.c_size_t
_SIGNATURES: dict[str, list[type]] = {
    "cudaSetDevice": [ctypes.c_int],
    "cudaGetDevice": [ctypes.POINTER(ctypes.c_int)],
    "cudaHostAlloc": [ctypes.POINTER(_VP), _SZ, ctypes.c_uint],
    "cudaFreeHost": [_VP],
    "cudaHostRegister": [_VP, _SZ, ctypes.c_uint],
    "cudaHostUnregister": [_VP],
    "cudaStreamCreateWithFlags": [ctypes.POINTER(_VP), ctypes.c_uint],
    "cudaStreamSynchronize": [_VP],
    "cudaStreamDestroy": [_VP],
    "cudaEventCreateWithFlags": [ctypes.POINTER(_VP), ctypes.c_uint],
    "cudaEventRecord": [_VP, _VP],
    "cudaEventSynchronize": [_VP],
    "cudaEventDestroy": [_VP],
    "cudaMemcpyAsync": [_VP, _VP, _SZ, ctypes.c_int, _VP],
}


class CudaError(RuntimeError):
    """A CUDA runtime call returned an error."""


class CudaRuntime:
    """Typed entry points of one loaded ``libcudart``."""

    def __init__(self, lib: ctypes.CDLL, path: str) -> None:
        for name, args in _SIGNATURES.items():
            fn = getattr(lib, name)
            fn.argtypes = args
            fn.restype = ctypes.c_int
        lib.cudaGetErrorString.argtypes = [ctypes.c_int]
        lib.cudaGetErrorString.restype = ctypes.c_char_p
        self.lib = lib
        self.path = path

    def check(self, rc: int, what: str) -> None:
        if rc != 0:
            msg = self.lib.cudaGetErrorString(rc) or b"?"
            raise CudaError(f"{what} failed: CUDA error {rc} ({msg.decode(errors='replace')})")

    def set_device(self, index: int) -> None:
        self.check(self.lib.cudaSetDevice(index), "cudaSetDevice")

    def host_alloc(self, nbytes: int) -> int:
        p = _VP()
        self.check(self.lib.cudaHostAlloc(ctypes.byref(p), nbytes, 0), "cudaHostAlloc")
        return int(p.value or 0)

    def free_host(self, ptr: int) -> None:
        self.check(self.lib.cudaFreeHost(ptr), "cudaFreeHost")

    def stream(self) -> int:
        s = _VP()
        self.check(
            self.lib.cudaStreamCreateWithFlags(ctypes.byref(s), STREAM_NON_BLOCKING),
            "cudaStreamCreate",
        )
        return int(s.value or 0)

    def stream_sync(self, stream: int) -> None:
        self.check(self.lib.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    def stream_destroy(self, stream: int) -> None:
        self.lib.cudaStreamDestroy(stream)

    def event(self) -> int:
        e = _VP()
        self.check(
            self.lib.cudaEventCreateWithFlags(ctypes.byref(e), EVENT_DISABLE_TIMING),
            "cudaEventCreate",
        )
        return int(e.value or 0)

    def event_record(self, event: int, stream: int) -> None:
        self.check(self.lib.cudaEventRecord(event, stream), "cudaEventRecord")

    def event_sync(self, event: int) -> None:
        self.check(self.lib.cudaEventSynchronize(event), "cudaEventSynchronize")

    def event_destroy(self, event: int) -> None:
        self.lib.cudaEventDestroy(event)

    def copy_h2d_async(self, dst: int, src: int, nbytes: int, stream: int) -> None:
        rc = self.lib.cudaMemcpyAsync(dst, src, nbytes, MEMCPY_HOST_TO_DEVICE, stream)
        self.check(rc, "cudaMemcpyAsync")


def _loaded_cudart() -> str | None:
    """Path of the libcudart this process already mapped (torch's), if any."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1] if line.strip() else ""
                if "libcudart" in path and path.startswith("/"):
                    return path
    except OSError:
        pass
    return None


def _candidates() -> list[str]:
    import torch

    roots = [Path(torch.__file__).parent / "lib", Path(torch.__file__).parent.parent / "nvidia"]
    found = []
    for root in roots:
        found += sorted(glob.glob(os.path.join(root, "**", "libcudart.so*"), recursive=True))
    return found + ["libcudart.so"]


_LOCK = threading.Lock()
_RUNTIME: list[CudaRuntime | None] = []


def runtime() -> CudaRuntime | None:
    """The CUDA runtime torch uses, or None without CUDA or when it cannot be found
    (a static build). Loaded once per process."""
    with _LOCK:
        if _RUNTIME:
            return _RUNTIME[0]
        rt: CudaRuntime | None = None
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.init()
                for path in [p for p in (_loaded_cudart(),) if p] + _candidates():
                    try:
                        rt = CudaRuntime(ctypes.CDLL(path), path)
                        break
                    except (OSError, AttributeError):
                        continue
        except Exception:  # no usable CUDA: the torch path serves
            rt = None
        _RUNTIME.append(rt)
        return rt
