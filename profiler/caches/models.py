"""llmprof's own cache folder: where built and converted models (and ceilings) live.

The root is ``$LLMPROF_CACHE`` when set, else ``~/.cache/llmprof``. Nothing here
touches the Hugging Face cache. Everything llmprof writes into ``models/`` is built
in a temporary sibling folder and renamed into place when complete
(:func:`atomic_folder`), so a folder that exists under its final name is whole.

This module imports nothing heavy: ``llmprof models`` lists the cache without torch.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from profiler.errors import UserError
from profiler.render.format import human_bytes

ENV_VAR = "LLMPROF_CACHE"
SOURCE_FILE = "llmprof_source.json"  # marks a folder as built by llmprof
_TMP_MARK = ".tmp-"  # temporary build folders: ".<name>.tmp-<pid>-<hex>"
_LOCK_SUFFIX = ".lock"


def cache_root() -> Path:
    """The root of llmprof's cache (not created)."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "llmprof"


def models_dir() -> Path:
    """Folder of built synthetic models and converted bundled models (not created)."""
    return cache_root() / "models"


def ceilings_dir() -> Path:
    """Folder of measured hardware ceilings (not created)."""
    return cache_root() / "ceilings"


def folder_size(path: Path) -> int:
    """Bytes of the regular files under ``path`` (apparent size, links not followed)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue  # removed while we walked
            if not os.path.islink(os.path.join(root, name)):
                total += st.st_size
    return total


def check_free_space(folder: Path, needed_bytes: int, what: str) -> None:
    """Raise UserError unless the file system of ``folder`` has ``needed_bytes`` free."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent  # disk_usage needs an existing path on the same file system
    free = shutil.disk_usage(probe).free
    if free < needed_bytes:
        raise UserError(
            f"not enough disk space for {what}: needs {human_bytes(needed_bytes)} in {folder}, "
            f"{human_bytes(free)} free: free some space or set {ENV_VAR} to a folder on a "
            "bigger disk"
        )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tmp_owner(name: str) -> int | None:
    """The pid encoded in a temporary folder name, or None when it is not one of ours."""
    if not name.startswith(".") or _TMP_MARK not in name:
        return None
    tail = name.rsplit(_TMP_MARK, 1)[1]
    pid = tail.split("-", 1)[0]
    return int(pid) if pid.isdigit() else None


def remove_stale_temps(parent: Path, name: str) -> None:
    """Remove temporary build folders of ``name`` whose building process is gone.

    A build killed by SIGKILL cannot clean up after itself; the next build does.
    """
    if not parent.is_dir():
        return
    prefix = f".{name}{_TMP_MARK}"
    for entry in parent.iterdir():
        if entry.name.startswith(prefix):
            pid = _tmp_owner(entry.name)
            if pid is not None and not _pid_alive(pid):
                shutil.rmtree(entry, ignore_errors=True)


@contextlib.contextmanager
def build_lock(final: Path) -> Iterator[None]:
    """Hold an exclusive lock for building ``final`` so two processes don't build it twice."""
    import fcntl  # POSIX only; llmprof targets Linux

    lock_path = final.parent / f".{final.name}{_LOCK_SUFFIX}"
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        fh = open(lock_path, "a")  # closed by the with block below
    except OSError as e:
        raise UserError(
            f"cannot write to {final.parent}: {e.strerror}: set {ENV_VAR} to a writable folder"
        ) from e
    with fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def atomic_folder(final: Path) -> Iterator[Path]:
    """Yield an empty temporary folder next to ``final``; rename it to ``final`` on success.

    On any exception (KeyboardInterrupt included) the temporary folder is removed and
    ``final`` is left untouched, so no half-written model is ever visible. If
    ``final`` already exists it is replaced (the caller decided it was stale).
    """
    parent = final.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(
            f"cannot create {parent}: {e.strerror}: set {ENV_VAR} to a writable folder"
        ) from e
    tmp = parent / f".{final.name}{_TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        _publish_modes(tmp)
        _fsync_tree(tmp)
        if final.exists():
            # os.replace cannot replace a non-empty folder: move the old one aside first.
            old = parent / f".{final.name}{_TMP_MARK}{os.getpid()}-old-{uuid.uuid4().hex[:8]}"
            os.replace(final, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, final)
        _fsync_dir(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _publish_modes(folder: Path) -> None:
    """Give files the permissions the umask allows.

    Some writers (transformers' ``save_pretrained``) create weight files as 0600
    through temporary files; a cache shared by several users needs them readable.
    """
    mask = os.umask(0)
    os.umask(mask)
    for root, dirs, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, 0o666 & ~mask)
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o777 & ~mask)


def _fsync_tree(folder: Path) -> None:
    """Flush every file under ``folder`` and the folders themselves to disk.

    Without it a crash after the rename could publish a folder whose files are
    still empty on disk. Files already flushed cost nothing here.
    """
    for root, _dirs, files in os.walk(folder):
        for name in files:
            path = Path(root) / name
            if not path.is_symlink():
                fsync_file(path)
        _fsync_dir(Path(root))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.EBADF):  # some file systems refuse: harmless
            raise
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """Flush one written file to disk, so the rename that publishes it is durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_source(folder: Path) -> dict[str, Any] | None:
    """The ``llmprof_source.json`` of a folder llmprof built, or None."""
    try:
        data = json.loads((folder / SOURCE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class CachedModel:
    """One complete model folder in llmprof's cache."""

    name: str
    path: Path
    size_bytes: int
    source: dict[str, Any]


def cached_models() -> list[CachedModel]:
    """The complete model folders in the cache, by name (temporary folders are skipped)."""
    root = models_dir()
    if not root.is_dir():
        return []
    out = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        source = read_source(entry)
        if source is None:
            continue  # not ours
        out.append(CachedModel(entry.name, entry, folder_size(entry), source))
    return out


def clean_models() -> tuple[int, int]:
    """Remove what llmprof built in ``models/``; return (folders removed, bytes freed).

    Only folders carrying llmprof's marker file, llmprof's temporary build folders and
    lock files are removed: a cache root pointed somewhere unexpected by
    ``$LLMPROF_CACHE`` never loses files llmprof did not write.
    """
    root = models_dir()
    if not root.is_dir():
        return 0, 0
    removed = freed = 0
    for entry in sorted(root.iterdir()):
        owner = _tmp_owner(entry.name)
        if entry.name.startswith("."):
            # a temporary folder of a build still running elsewhere is left alone
            ours = owner is not None and not _pid_alive(owner)
        else:
            ours = read_source(entry) is not None
        ours = ours and entry.is_dir() and not entry.is_symlink()
        if ours:
            size = folder_size(entry)
            shutil.rmtree(entry)
            removed += 1
            freed += size
        elif entry.is_file() and entry.name.startswith(".") and entry.name.endswith(_LOCK_SUFFIX):
            entry.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        root.rmdir()  # only succeeds when nothing else is left
    return removed, freed
