"""Output paths: checked before any work, written without ever replacing what is not
a regular file.

An atomic write renames a temporary file over its target. Over a character device
(``/dev/null``), a FIFO or a symlink that rename replaces the device, pipe or link
itself, system-wide when run as root. So every output path is looked at first:
a folder, an input of the same command, an unwritable or full folder, a FIFO or
a socket are refused with one line; a symlink is followed and its target written;
a character device is written into directly where the command allows it.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

from profiler.errors import UserError

# Every temporary file or folder llmprof creates starts with this: tests (and users)
# can tell llmprof's leftovers from anything else.
TEMP_PREFIX = "llmprof-"


def _kind(mode: int) -> str | None:
    """What a special file is, in words; None for a regular file or folder."""
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return None


def _mode(path: Path) -> int | None:
    """The mode of what ``path`` leads to (links followed: ``/dev/stdout`` may be a
    pipe whose "real path" names no file), None when nothing is there."""
    try:
        return os.stat(path).st_mode
    except OSError:
        return None


def _nearest_existing(path: Path) -> Path:
    p = path
    while not os.path.lexists(p) and p != p.parent:
        p = p.parent
    return p


def check_output(
    path: str | os.PathLike[str],
    *,
    option: str,
    inputs: Iterable[str | os.PathLike[str]] = (),
    size: int | None = None,
    devices: bool = False,
    example: str = "results.json",
) -> Path:
    """Refuse an output path that cannot (or must not) be written; return the real
    target (symlinks followed). ``devices``: a character device is written into
    directly (else refused). ``size``: bytes the file will hold, checked against
    the free space of its filesystem."""
    given = Path(path)
    target = Path(os.path.realpath(given))
    if target.is_dir():
        raise UserError(f"{option} {given} is a folder: give a file name, e.g. {given / example}")
    mode = _mode(given)
    if mode is not None:
        kind = _kind(mode)
        if kind and not (devices and stat.S_ISCHR(mode)):
            raise UserError(
                f"{option} {given} is {kind}: llmprof writes regular files only "
                "(it would not replace it): give a file path"
            )
        for inp in inputs:
            try:
                same = os.path.samefile(target, inp)
            except OSError:
                continue
            if same:
                raise UserError(
                    f"{option} {given} is also an input of this command: "
                    "write the output to another file"
                )
    parent = _nearest_existing(target.parent)
    if not parent.is_dir():
        raise UserError(f"cannot write {given}: {parent} is not a folder: choose a writable path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"cannot write {given}: {parent} is not writable: choose a writable path")
    if size is not None:
        free = shutil.disk_usage(parent).free
        if free < size:
            raise UserError(
                f"cannot write {given}: {size} bytes needed, {free} free in {parent}: "
                "free space or choose another path"
            )
    return target


def check_outputs_differ(*pairs: tuple[str, str | os.PathLike[str] | None]) -> None:
    """Two outputs of one command must not be the same file."""
    seen: dict[str, str] = {}
    for option, p in pairs:
        if p is None:
            continue
        real = os.path.realpath(p)
        if real in seen:
            raise UserError(f"{option} and {seen[real]} name the same file {p}: give two paths")
        seen[real] = option


def _write_device(target: Path, data: bytes, given: Path) -> None:
    try:
        with open(target, "wb", buffering=0) as f:
            f.write(data)
    except OSError as e:
        raise UserError(f"cannot write {given}: {e.strerror}: choose a writable path") from e


def write_file(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` so that the file is either complete or absent.

    A symlink is followed and its target written (the link stays); a character
    device is written into (never renamed over); a FIFO or socket is refused.
    """
    given = Path(path)
    target = Path(os.path.realpath(given))
    mode = _mode(given)
    if mode is not None:
        if stat.S_ISCHR(mode):
            _write_device(given, data, given)
            return
        kind = _kind(mode)
        if kind:
            raise UserError(f"cannot write {given}: it is {kind}: give a file path")
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(parent).free
        if free < len(data):
            raise UserError(
                f"cannot write {given}: {len(data)} bytes needed, {free} free in {parent}: "
                "free space or choose another path"
            )
        fd, tmp = tempfile.mkstemp(
            prefix=f".{target.name}.{TEMP_PREFIX}", suffix=".tmp", dir=parent
        )
    except OSError as e:
        raise UserError(f"cannot write {given}: {e.strerror}: choose a writable path") from e
    try:
        # mkstemp creates 0600 files; results are ordinary files, so honour the umask.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except OSError as e:
        _remove(tmp)
        raise UserError(f"cannot write {given}: {e.strerror}: choose a writable path") from e
    except BaseException:
        _remove(tmp)
        raise


def _remove(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except OSError:
        pass
