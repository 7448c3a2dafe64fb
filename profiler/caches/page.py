"""Control and verify the page cache a model load reads through (no root needed).

- :func:`residency` measures how much of each file the kernel holds in memory, with
  ``mincore(2)`` over a read-only shared mapping of the file;
- :func:`evict` asks the kernel to drop a file's pages (``fsync`` then
  ``posix_fadvise(POSIX_FADV_DONTNEED)``) and measures again;
- :func:`warm` reads every file once and measures again;
- :func:`verify` turns a measurement into "is this really cold/warm" and a note,
  with the one pair of thresholds (``COLD_MAX_FRACTION``, ``WARM_MIN_FRACTION``).

:func:`resident_in_fd` and :func:`evict_fd` do the same on an open file; the
ceilings' disk probe uses them on its unlinked scratch file.

Eviction is a request, not a guarantee: the kernel keeps pages that another process
still maps, and some filesystems (tmpfs, some overlays, FUSE) ignore the advice. The
caller decides what "cold" means from the *measured* fraction, never from the call.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from profiler.errors import UserError
from profiler.load.read import read_scratch
from profiler.render.format import human_bytes

# The one definition of "cold" and "warm" for a measured residency: every verdict
# on page-cache state (a run's label, the ceilings' disk and page-cache probes)
# compares against these. A small margin on each side, so that a few pages read
# back (or dropped) between the eviction or warm-up and the measurement do not flip
# the verdict.
COLD_MAX_FRACTION = 0.02


WARM_MIN_FRACTION = 0.98


PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


# mincore needs one status byte per page; measuring a file window by window keeps
# that vector small (256 KiB for a 1 GiB window with 4 KiB pages) for any file size.
_WINDOW_BYTES = 1 << 30


@dataclass(frozen=True)
class FileResidency:
    """How many bytes of one file were in the page cache when measured."""

    path: str
    size_bytes: int
    resident_bytes: int

    @property
    def fraction(self) -> float:
        return self.resident_bytes / self.size_bytes if self.size_bytes else 1.0


@dataclass(frozen=True)
class Residency:
    """Page-cache residency of a set of files, measured at one moment."""

    files: tuple[FileResidency, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.size_bytes for f in self.files)

    @property
    def resident_bytes(self) -> int:
        return sum(f.resident_bytes for f in self.files)

    @property
    def fraction(self) -> float:
        """Resident bytes over total bytes; 1.0 when there is nothing to hold."""
        total = self.total_bytes
        return self.resident_bytes / total if total else 1.0


# -- libc -----------------------------------------------------------------------
_PROT_READ = 0x1


_MAP_SHARED = 0x01


_MAP_FAILED = ctypes.c_void_p(-1).value


_LOW_BIT = bytes(b & 1 for b in range(256))


def _load_libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = (
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    )
    libc.munmap.restype = ctypes.c_int
    libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
    libc.mincore.restype = ctypes.c_int
    libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte))
    return libc


_libc: ctypes.CDLL | None = None


def _c() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = _load_libc()
    return _libc


def resident_in_fd(fd: int, size: int) -> int:
    """Bytes of the first ``size`` bytes of the open file ``fd`` in the page cache.

    A page counts for the file bytes it covers, so the last, partial page of a file
    counts only up to the end of the file and a fully cached file gives ``size``.
    OSError when the file cannot be mapped (some FUSE filesystems).
    """
    libc = _c()
    resident = 0
    for offset in range(0, size, _WINDOW_BYTES):
        length = min(_WINDOW_BYTES, size - offset)
        # mmap(2) with our own libc call rather than Python's mmap module: we need
        # the address for mincore and a mapping we are sure to unmap right away,
        # since a live mapping would keep the pages from being evicted.
        addr = libc.mmap(None, length, _PROT_READ, _MAP_SHARED, fd, offset)
        if addr is None or addr == _MAP_FAILED:
            err = ctypes.get_errno()
            raise OSError(err, f"mmap failed: {os.strerror(err)}")
        try:
            pages = (length + PAGE_SIZE - 1) // PAGE_SIZE
            vec = (ctypes.c_ubyte * pages)()
            if libc.mincore(addr, length, vec) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"mincore failed: {os.strerror(err)}")
            data = bytes(vec)
        finally:
            libc.munmap(addr, length)
        # Only bit 0 of each status byte is defined ("resident"); count it in C.
        bits = data.translate(_LOW_BIT)
        full = bits.count(1, 0, pages - 1) * PAGE_SIZE
        last = (length - (pages - 1) * PAGE_SIZE) if bits[-1] else 0
        resident += full + last
    return resident


def _expand(paths: Sequence[Path | str]) -> list[Path]:
    """Files as given and the regular files under any folder, each inode once.

    Folders are walked following symlinks to files (a hub snapshot is a folder of
    symlinks into ``blobs/``); two names for one inode are measured once so that
    totals are not counted twice.
    """
    out: list[Path] = []
    seen: set[tuple[int, int]] = set()

    def add(p: Path) -> None:
        try:
            st = p.stat()
        except OSError as e:
            raise UserError(
                f"cannot measure page-cache residency of {p}: {e.strerror}: "
                "check that the model files exist and are readable"
            ) from e
        if not stat.S_ISREG(st.st_mode):
            return
        key = (st.st_dev, st.st_ino)
        if key not in seen:
            seen.add(key)
            out.append(p)

    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for dirpath, dirnames, filenames in os.walk(p):
                dirnames.sort()
                for name in sorted(filenames):
                    add(Path(dirpath, name))
        else:
            add(p)
    return out


def _measure(p: Path) -> FileResidency:
    try:
        fd = os.open(p, os.O_RDONLY)
    except OSError as e:
        raise UserError(
            f"cannot open {p} to measure its page-cache residency: {e.strerror}: "
            "check that the file exists and is readable"
        ) from e
    try:
        size = os.fstat(fd).st_size
        resident = resident_in_fd(fd, size) if size else 0
    except OSError as e:
        raise UserError(
            f"cannot measure page-cache residency of {p} ({e.strerror or e}): "
            "put the model on a local disk, or run without a page-cache state"
        ) from e
    finally:
        os.close(fd)
    return FileResidency(path=str(p), size_bytes=size, resident_bytes=resident)


def residency(paths: Sequence[Path | str]) -> Residency:
    """Measure how much of each file is in the page cache now (``mincore(2)``).

    ``paths`` may hold files and folders (walked recursively). Empty files count as
    0 bytes. Every mapping is closed before this returns.
    """
    return Residency(files=tuple(_measure(p) for p in _expand(paths)))


def evict(paths: Sequence[Path | str]) -> Residency:
    """Ask the kernel to drop the files' pages, then measure what is left.

    For each file: ``fsync`` (dirty pages cannot be dropped), then
    ``posix_fadvise(POSIX_FADV_DONTNEED)``. Pages mapped by a live process and
    filesystems that ignore the advice leave pages resident: check the result.
    """
    files = _expand(paths)
    for p in files:
        try:
            fd = os.open(p, os.O_RDONLY)
        except OSError as e:
            raise UserError(f"cannot open {p} to evict it from the page cache: {e.strerror}") from e
        try:
            evict_fd(fd)
        finally:
            os.close(fd)
    return Residency(files=tuple(_measure(p) for p in files))


def evict_fd(fd: int) -> None:
    """Ask the kernel to drop the pages of the open file ``fd`` (see :func:`evict`)."""
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on read-only fds; advise anyway
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


def warm(paths: Sequence[Path | str], chunk_bytes: int = 16 * 1024 * 1024) -> Residency:
    """Read every file once, so its pages are cached, then measure residency.

    Reads go into one reusable buffer (llmprof's reader, :func:`read_scratch`):
    warming a 15 GB model allocates ``chunk_bytes``, not 15 GB.
    """
    files = _expand(paths)
    buf = bytearray(chunk_bytes)
    for p in files:
        try:
            fd = os.open(p, os.O_RDONLY)
            try:
                read_scratch(fd, os.fstat(fd).st_size, [buf])
            finally:
                os.close(fd)
        except (OSError, EOFError) as e:
            why = getattr(e, "strerror", None) or str(e)
            raise UserError(f"cannot read {p} to warm the page cache: {why}") from e
    return Residency(files=tuple(_measure(p) for p in files))


def verify(requested: Literal["cold", "warm"], r: Residency) -> tuple[bool, str]:
    """Whether measured residency ``r`` matches the requested page-cache state.

    Cold allows at most ``COLD_MAX_FRACTION`` resident, warm needs at least
    ``WARM_MIN_FRACTION``. Returns ``(ok, note)``; the note states the measurement
    either way, e.g. ``"not cold: 37.0% of 537 MB resident before the run"``.
    With no bytes to measure both states hold trivially.
    """
    if requested not in ("cold", "warm"):
        raise ValueError(f"requested must be 'cold' or 'warm', not {requested!r}")
    total = r.total_bytes
    if total == 0:
        return True, f"{requested}: no file bytes to measure"
    frac = r.fraction
    ok = frac <= COLD_MAX_FRACTION if requested == "cold" else frac >= WARM_MIN_FRACTION
    state = requested if ok else f"not {requested}"
    return ok, f"{state}: {frac * 100:.1f}% of {human_bytes(total)} resident before the run"
