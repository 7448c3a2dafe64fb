"""Download a model from a Hugging Face hub: the work of the ``hub_download`` stage.

:func:`download` fetches what a load needs (config, tokenizer files, weights) with
``huggingface_hub.snapshot_download``, the library everyone uses, and reports what
was really fetched: ``bytes_downloaded`` is measured from the blobs that are new in
the cache folder afterwards, not assumed from the cache state. The caller times it.

What it asks the hub, in order: the model info at the revision (one call, with a
timeout, giving the commit sha and the file list that decides safetensors vs
``.bin``), then ``snapshot_download`` pinned to that sha (tree listing, one ``HEAD``
per file not yet cached, one ``GET`` per file to fetch). Pinning to the sha means a
push between the two calls cannot mix two revisions; the ``refs/<branch>`` file that
``snapshot_download`` would have written for a branch name is written here, so
offline use and ``from_pretrained`` find the snapshot afterwards.

Environment (read by ``huggingface_hub`` once, at import; set it before importing):
``HF_ENDPOINT`` (the hub), ``HF_HUB_CACHE`` (the cache), ``HF_HUB_OFFLINE=1`` (use
the cache only). Every HTTP call made during :func:`download` is bounded by
``timeout_s`` (connect, each read, pool wait), including calls the library makes
without a timeout of its own; the library's own retries still apply on top.

Failures become one-line :class:`~profiler.errors.UserError` messages with a fix.
The user's cache is never deleted or rewritten, apart from new files and the ref.
"""

from __future__ import annotations

import fnmatch
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from profiler.errors import UserError
from profiler.records.io import write_atomic
from profiler.sources.hub_errors import HubContext, map_error, reason, unreachable

# Everything a load reads besides the weights: config, generation config, tokenizer
# (json/txt vocabularies, sentencepiece and tiktoken models, chat templates), and
# the weight index (``model.safetensors.index.json``).
META_PATTERNS: tuple[str, ...] = ("*.json", "*.txt", "*.model", "*.tiktoken", "*.jinja")

_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_REPO_PART_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$")
# Names that are files, not repos, when the path does not exist (a typo'd path).
_FILE_SUFFIXES = (".gguf", ".safetensors", ".bin", ".pt", ".pth", ".json", ".onnx")
_NOT_WEIGHTS = ("training_args.bin", "optimizer.bin", "scheduler.bin")


@dataclass(frozen=True)
class DownloadResult:
    """What one download fetched and where it put it.

    ``bytes_total`` is the size of ``files`` in the snapshot; ``bytes_downloaded``
    the size of the cache blobs that did not exist before the call (0 for a warm
    cache). ``offline`` is true when the hub was not asked (``HF_HUB_OFFLINE=1``, or
    it could not be reached and the cached snapshot was used: see ``notes``).
    """

    repo_id: str
    revision: str | None  # resolved 40-hex commit
    path: Path  # snapshot folder
    files: tuple[str, ...]
    bytes_total: int
    bytes_downloaded: int
    from_cache: bool
    offline: bool
    notes: tuple[str, ...] = ()


def looks_like_hub_id(spec: str) -> bool:
    """Whether ``spec`` reads as a hub model id (``distilgpt2``, ``Qwen/Qwen2-0.5B``).

    Not an existing path, no ``scheme:`` prefix (``synthetic:``, ``gguf:``,
    ``https:``), no path syntax (``./``, ``~``, trailing ``/``), at most one ``/``,
    hub naming rules (letters, digits, ``-``, ``_``, ``.``; no ``--`` or ``..``).
    """
    if not spec or ":" in spec or "\\" in spec or spec.startswith(("~", ".", "/")):
        return False
    if os.path.exists(spec):
        return False
    parts = spec.split("/")
    if len(parts) > 2 or "--" in spec or ".." in spec:
        return False
    if spec.lower().endswith(_FILE_SUFFIXES):
        return False
    return all(_REPO_PART_RE.match(p) for p in parts)


def default_patterns(files: Sequence[str]) -> tuple[str, ...]:
    """``allow_patterns`` for a load, from the repo's file list.

    Config and tokenizer files by pattern, plus the weights transformers would
    read, named one by one: top-level ``model*.safetensors`` (else any top-level
    ``*.safetensors``); only when the repo has no safetensors at all,
    ``pytorch_model*.bin`` (else top-level ``*.bin``). Naming the weight files
    keeps out duplicates such as Mistral's ``consolidated.safetensors`` and
    weights in subfolders (ONNX exports, adapters).
    """
    top = sorted(f for f in files if "/" not in f)
    choices: tuple[Callable[[str], bool], ...] = (
        lambda f: fnmatch.fnmatchcase(f, "model*.safetensors"),
        lambda f: f.endswith(".safetensors"),
        lambda f: fnmatch.fnmatchcase(f, "pytorch_model*.bin"),
        lambda f: f.endswith(".bin") and f not in _NOT_WEIGHTS,
    )
    has_safetensors = any(f.endswith(".safetensors") for f in files)
    for i, pick in enumerate(choices):
        if i >= 2 and has_safetensors:
            break  # .bin only for repos without any safetensors
        weights = [f for f in top if pick(f)]
        if weights:
            return META_PATTERNS + tuple(_escape_glob(w) for w in weights)
    return META_PATTERNS


def _escape_glob(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def download(
    repo_id: str,
    *,
    revision: str | None = None,
    allow_patterns: Sequence[str] | None = None,
    timeout_s: float = 30.0,
    cache_dir: Path | None = None,
) -> DownloadResult:
    """Download (or find in the cache) what loading ``repo_id`` needs.

    ``allow_patterns`` defaults to :func:`default_patterns` of the repo's files.
    ``cache_dir`` defaults to ``huggingface_hub``'s ``HF_HUB_CACHE``. With
    ``HF_HUB_OFFLINE=1`` only the cache is used. If the hub cannot be reached (or
    answers 5xx) and the revision is cached, the cached snapshot is used and a note
    says so; if it is not cached, a :class:`UserError` says how to go on.
    """
    if not looks_like_hub_id(repo_id):
        raise UserError(
            f"{repo_id!r} is not a hub model id (like 'org/name'): "
            "pass a model id, or the path of a local folder that exists"
        )
    if timeout_s <= 0:
        raise UserError(f"timeout must be positive, not {timeout_s}: pass a number of seconds")
    from huggingface_hub import constants

    cache = Path(cache_dir) if cache_dir is not None else Path(constants.HF_HUB_CACHE)
    storage = cache / f"models--{repo_id.replace('/', '--')}"
    ctx = HubContext(repo_id, revision, constants.ENDPOINT, cache)
    notes: list[str] = []
    before = _blob_inventory(storage)
    listed = None if constants.is_offline_mode() else _ask_hub(ctx, storage, timeout_s, notes)
    offline = listed is None
    if listed is not None:
        sha, sizes_listed = listed
        names = sorted(sizes_listed)
    else:
        cached = _cached_commit(storage, revision)
        if cached is None:
            raise UserError(
                f"model '{repo_id}' (revision {revision or 'main'}) is not in the hub cache "
                f"at {cache} and HF_HUB_OFFLINE=1 is set: unset HF_HUB_OFFLINE to download "
                "it, or pass a local folder"
            )
        sha = cached
        names = _snapshot_files(storage / "snapshots" / sha)

    patterns = list(allow_patterns) if allow_patterns else list(default_patterns(names))
    path = _snapshot(ctx, sha, patterns, timeout_s, offline)
    if not offline and revision != sha:
        _write_ref(storage, revision or "main", sha)
    files = _matching(names, patterns)
    missing = [f for f in files if not (path / f).is_file()]
    if missing:
        raise UserError(
            f"the cached snapshot of '{repo_id}' at {path} lacks {', '.join(missing[:3])}"
            f"{' ...' if len(missing) > 3 else ''}: connect to the hub and run again "
            "without HF_HUB_OFFLINE, or use a fresh cache"
        )
    sizes = {f: (path / f).stat().st_size for f in files}
    if listed is not None:
        _check_sizes(sizes, listed[1], ctx, path)
    new_bytes = sum(size for key, size in _blob_inventory(storage).items() if key not in before)
    return DownloadResult(
        repo_id=repo_id,
        revision=sha,
        path=path,
        files=tuple(files),
        bytes_total=sum(sizes.values()),
        bytes_downloaded=new_bytes,
        from_cache=new_bytes == 0,
        offline=offline,
        notes=tuple(notes),
    )


def _ask_hub(
    ctx: HubContext, storage: Path, timeout_s: float, notes: list[str]
) -> tuple[str, dict[str, int | None]] | None:
    """(commit sha, repo files -> size) from the hub's model info; None when the hub
    could not answer and the revision is cached (a note then says so)."""
    from huggingface_hub import HfApi

    try:
        with _capped_timeouts(timeout_s):
            info = HfApi(endpoint=ctx.endpoint).model_info(
                ctx.repo_id, revision=ctx.revision, timeout=timeout_s, files_metadata=True
            )
    except Exception as e:  # mapped below, or re-raised as is
        err = map_error(e, ctx)
        if unreachable(e) and _cached_commit(storage, ctx.revision) is not None:
            notes.append(f"hub not used ({reason(e)}): used the cached snapshot")
            return None
        if err is e:
            raise
        raise err from e
    if info.sha is None or not _COMMIT_RE.match(info.sha):
        raise UserError(
            f"the hub at {ctx.endpoint} gave no commit sha for '{ctx.repo_id}': "
            "check that HF_ENDPOINT points at a Hugging Face hub"
        )
    return info.sha, {s.rfilename: s.size for s in (info.siblings or [])}


def _snapshot(
    ctx: HubContext, sha: str, patterns: Sequence[str], timeout_s: float, offline: bool
) -> Path:
    """``snapshot_download`` of ``sha`` (from the cache only when ``offline``)."""
    from huggingface_hub import snapshot_download

    try:
        with _capped_timeouts(timeout_s):
            return Path(
                snapshot_download(
                    ctx.repo_id,
                    revision=sha,
                    allow_patterns=list(patterns),
                    etag_timeout=timeout_s,
                    cache_dir=str(ctx.cache),
                    local_files_only=offline,
                )
            )
    except Exception as e:  # a known failure becomes a UserError, the rest goes on as is
        err = map_error(e, ctx)
        if err is e:
            raise
        raise err from e


# -- cache inspection ---------------------------------------------------------------
def _blob_inventory(storage: Path) -> dict[tuple[int, int], int]:
    """The regular files behind ``storage/blobs``: (device, inode) -> size.

    Blobs that are symlinks into the cache-wide shared store (``huggingface_hub``
    2.x, xet files) are followed, so a blob reused from the store is not new.
    Partial downloads (``*.incomplete``) are left out.
    """
    out: dict[tuple[int, int], int] = {}
    try:
        entries = list(os.scandir(storage / "blobs"))
    except OSError:
        return out
    for entry in entries:
        if entry.name.endswith(".incomplete"):
            continue
        try:
            st = os.stat(entry.path)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            out[(st.st_dev, st.st_ino)] = st.st_size
    return out


def _cached_commit(storage: Path, revision: str | None) -> str | None:
    """The commit of ``revision`` whose snapshot folder is in the cache, if any."""
    rev = revision or "main"
    sha: str | None = rev if _COMMIT_RE.match(rev) else None
    if sha is None:
        try:
            sha = (storage / "refs" / rev).read_text().strip()
        except OSError:
            return None
    return sha if (storage / "snapshots" / sha).is_dir() else None


def _snapshot_files(folder: Path) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in filenames:
            out.append(Path(dirpath, name).relative_to(folder).as_posix())
    return sorted(out)


def _matching(names: Sequence[str], patterns: Sequence[str]) -> list[str]:
    # The same rule as huggingface_hub's filter_repo_objects: fnmatch, where a
    # pattern ending in "/" means everything under that folder.
    pats = [p + "*" if p.endswith("/") else p for p in patterns]
    return sorted(n for n in names if any(fnmatch.fnmatch(n, p) for p in pats))


def _write_ref(storage: Path, revision: str, sha: str) -> None:
    """Record ``revision -> sha`` as huggingface_hub does (``refs/<revision>``)."""
    ref = storage / "refs" / revision
    try:
        if ref.is_file() and ref.read_text().strip() == sha:
            return
        write_atomic(ref, sha.encode())
    except (OSError, UserError):
        pass  # a read-only cache still serves this run; only later lookups by name miss


def _check_sizes(
    sizes: dict[str, int], listed: dict[str, int | None], ctx: HubContext, path: Path
) -> None:
    """A cached file whose size differs from the hub's listing was changed in place.

    Sizes only: hashing every weight file would read it all again (and warm the
    page cache behind the caller's back).
    """
    for name, size in sizes.items():
        expected = listed.get(name)
        if expected is not None and expected != size:
            raise UserError(
                f"cached file {name} of '{ctx.repo_id}' is {size} bytes but the hub lists "
                f"{expected} (changed or damaged in the cache at {path}): delete that "
                "snapshot folder and its blobs, or use a fresh cache (HF_HUB_CACHE)"
            )


# -- timeouts -------------------------------------------------------------------------
class HubStalledError(TimeoutError):
    """A request to the hub got no answer within the timeout and was about to be retried."""


@contextmanager
def _capped_timeouts(timeout_s: float) -> Iterator[None]:
    """Bound every HTTP call of huggingface_hub's shared client by ``timeout_s``.

    Some calls (the tree listing, the model info of older clients) are sent with no
    timeout at all, and a failed HEAD is retried with a 60 s one: a request hook
    caps each timeout (connect, read, write, pool) of every request while we run
    (httpx's documented ``timeout`` request extension). The library retries a
    timed-out request up to 5 times with backoff (~6 timeouts + 23 s in all); a
    request sent again after an earlier one to the same URL got no answer within
    ``timeout_s`` is refused instead, so a hanging hub fails after about one
    timeout. Retries after an answer (5xx, or resuming a stalled body) still run.
    """
    from huggingface_hub.utils import get_session

    client = get_session()
    lock = threading.Lock()
    sent: dict[tuple[str, str], tuple[float, bool]] = {}  # -> (sent at, answered)

    def cap(request: Any) -> None:
        key = (request.method, str(request.url))
        now = time.monotonic()
        with lock:
            prev = sent.get(key)
            if prev is not None and not prev[1] and now - prev[0] >= 0.9 * timeout_s:
                raise HubStalledError(
                    f"{request.method} {request.url} got no answer in {timeout_s:g} s"
                )
            sent[key] = (now, False)
        t = request.extensions.get("timeout")
        if isinstance(t, dict):
            request.extensions["timeout"] = {
                k: timeout_s if v is None else min(float(v), timeout_s) for k, v in t.items()
            }

    def answered(response: Any) -> None:
        key = (response.request.method, str(response.request.url))
        with lock:
            if key in sent:
                sent[key] = (sent[key][0], True)

    hooks = client.event_hooks
    client.event_hooks = {
        "request": [*hooks["request"], cap],
        "response": [*hooks["response"], answered],
    }
    try:
        yield
    finally:
        hooks = client.event_hooks
        client.event_hooks = {
            "request": [h for h in hooks["request"] if h is not cap],
            "response": [h for h in hooks["response"] if h is not answered],
        }
