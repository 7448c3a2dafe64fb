"""The disk probe's scratch file: sized from the model, free space checked first,
removed on every exit path.

A 2 GiB probe file for a 3 MB model wastes a minute and a disk's free space; a file
smaller than the device's caches measures the caches. The size follows the model's
weights, between :data:`MIN_SCRATCH` and :data:`MAX_SCRATCH` (large enough to pass
a drive's own cache, small enough to write in seconds). The file is removed in a
``finally``, at interpreter exit and on SIGTERM/SIGINT/SIGHUP, whichever comes first.
"""

from __future__ import annotations

import atexit
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from profiler.errors import UserError
from profiler.machine.plan import BLOCK_BYTES, GIB, MIB

MIN_SCRATCH = 64 * MIB
MAX_SCRATCH = GIB
QUICK_MAX_SCRATCH = 256 * MIB

# Room left on the filesystem beyond the scratch file itself: the probe must never
# be what fills a disk.
FREE_MARGIN = 256 * MIB

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")

_LIVE: set[Path] = set()
_LOCK = threading.Lock()
_HANDLERS_SET = False


def model_bytes(folder: Path) -> int | None:
    """Bytes of the weight files directly in ``folder`` (None when it holds none)."""
    try:
        sizes = [
            p.stat().st_size
            for p in folder.iterdir()
            if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES)
        ]
    except OSError:
        return None
    return sum(sizes) if sizes else None


def scratch_size(weights: int | None, *, quick: bool) -> int:
    """Scratch bytes for a model of ``weights`` bytes: its size, clamped to
    [MIN_SCRATCH, MAX_SCRATCH] (QUICK_MAX_SCRATCH with ``quick``), whole blocks.
    Unknown weights (no model in the folder) take the upper bound."""
    top = QUICK_MAX_SCRATCH if quick else MAX_SCRATCH
    size = top if weights is None else min(top, max(MIN_SCRATCH, weights))
    return -(-size // BLOCK_BYTES) * BLOCK_BYTES


def check_free(folder: Path, size: int, free: int) -> None:
    """UserError unless ``free`` bytes hold the scratch file and the margin."""
    if free < size + FREE_MARGIN:
        raise UserError(
            f"{folder}: {free / GIB:.2f} GiB free, the disk probe needs "
            f"{size / GIB:.2f} GiB + {FREE_MARGIN / GIB:.2f} GiB: free space or pass a "
            "smaller --size"
        )


def _remove_all() -> None:
    with _LOCK:
        paths = list(_LIVE)
        _LIVE.clear()
    for p in paths:
        try:
            p.unlink()
        except OSError:
            pass


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    _remove_all()
    # Then die of the same signal, as the default action would have.
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_handlers() -> None:
    global _HANDLERS_SET
    if _HANDLERS_SET:
        return
    _HANDLERS_SET = True
    atexit.register(_remove_all)
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread
    for sig in (signal.SIGTERM, signal.SIGHUP):
        # Only where nobody else handles it: a caller's own handler wins.
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, _on_signal)


def live_scratch() -> tuple[Path, ...]:
    """Scratch files not yet removed (for tests)."""
    with _LOCK:
        return tuple(_LIVE)


@contextmanager
def scratch_file(folder: Path, size: int, free: int | None = None) -> Iterator[Path]:
    """A path for a new scratch file in ``folder``, removed on every exit path.

    ``free`` overrides the measured free space (tests). The caller writes it."""
    import shutil

    check_free(folder, size, shutil.disk_usage(folder).free if free is None else free)
    path = folder / f".llmprof-ceilings-{os.getpid()}-{threading.get_ident()}.tmp"
    _install_handlers()
    with _LOCK:
        _LIVE.add(path)
    try:
        yield path
    finally:
        with _LOCK:
            _LIVE.discard(path)
        try:
            path.unlink()
        except OSError:
            pass
