"""A cold hub cache: a fresh, empty cache folder for one run, removed afterwards.

:func:`temporary_hub_cache` makes the folder and removes only that folder, never
the user's cache; :func:`hub_cache_env` gives the environment variables that point a
*child process* at it. ``huggingface_hub`` reads these variables once, when it is
first imported, so they must be in the environment before that import: set them for
a subprocess (``subprocess.run(..., env=...)``), not with ``os.environ`` in a
process that may already have imported ``huggingface_hub`` or ``transformers``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from profiler.errors import UserError


@contextmanager
def temporary_hub_cache(parent: Path | None = None) -> Iterator[Path]:
    """A fresh, empty hub cache folder (with ``hub/`` and ``xet/``), removed afterwards.

    Only the folder created here is removed, never the user's cache. Point a child
    process at it with :func:`hub_cache_env`.
    """
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    try:
        root = Path(tempfile.mkdtemp(prefix="llmprof-hubcache-", dir=parent))
    except OSError as e:
        where = parent if parent is not None else tempfile.gettempdir()
        raise UserError(
            f"cannot create a temporary hub cache in {where}: {e.strerror}: "
            "choose a writable folder with free space"
        ) from e
    try:
        for sub in ("hub", "xet"):
            (root / sub).mkdir()
        yield root
    finally:
        _remove_tree(root)


def _remove_tree(root: Path) -> None:
    def retry_writable(func, path, _exc):  # type: ignore[no-untyped-def]
        # Cached blobs can be read-only; make the parent writable and retry once.
        try:
            os.chmod(os.path.dirname(path), 0o700)
            func(path)
        except OSError:
            pass  # leave it: a leftover temp folder is better than masking an error

    if sys.version_info >= (3, 12):
        shutil.rmtree(root, onexc=retry_writable)
    else:
        shutil.rmtree(root, onerror=retry_writable)


def hub_cache_env(root: Path) -> dict[str, str]:
    """Environment variables that make ``huggingface_hub`` in a child use ``root``.

    ``HF_HUB_CACHE`` (files), ``HF_XET_CACHE`` (xet chunks), ``HF_ASSETS_CACHE``
    and ``HF_MODULES_CACHE`` (transformers' remote-code modules) all go under
    ``root``; ``HUGGINGFACE_HUB_CACHE`` (the legacy name, read when
    ``HF_HUB_CACHE`` is unset) is set to the same folder so that no older client
    falls back to the user's cache. ``HF_HOME`` is deliberately left alone: it also
    locates the user's token, which gated models need. Must be in the child's
    environment before it imports ``huggingface_hub`` (read once, at import).
    """
    root = Path(root).resolve()
    hub = str(root / "hub")
    return {
        "HF_HUB_CACHE": hub,
        "HUGGINGFACE_HUB_CACHE": hub,
        "HF_XET_CACHE": str(root / "xet"),
        "HF_ASSETS_CACHE": str(root / "assets"),
        "HF_MODULES_CACHE": str(root / "modules"),
    }
