"""A small Hugging Face hub-compatible HTTP server on loopback, for tests.

It serves local folders as model repos and answers what ``huggingface_hub``
(1.33 and 2.4) and ``transformers`` (5.x) really ask (see shared/DESIGN.md,
"Cold and warm"):

- ``GET /api/models/{repo}`` and ``/api/models/{repo}/revision/{rev}``: JSON with
  ``id``, a 40-hex ``sha`` derived from the folder's contents and ``siblings``
  (with ``size``/``blobId``/``lfs`` when ``?blobs=true``);
- ``GET /api/models/{repo}/tree/{rev}[/{path}]?recursive=...``: list of
  ``{type, path, size, oid[, lfs]}``; a missing folder is a 404 ``EntryNotFound``;
- ``HEAD``/``GET /{repo}/resolve/{rev}/{file}`` with ``X-Repo-Commit``, a quoted
  ``ETag``, ``Content-Length`` and, for large ("LFS") files, ``X-Linked-Etag`` and
  ``X-Linked-Size`` as the real hub sends them; ``Range`` is honoured (the client
  uses it to resume). A missing file is a 404 ``EntryNotFound`` that still carries
  ``X-Repo-Commit`` (clients cache the miss and transformers probes optional files
  such as ``tokenizer.model``); an unknown repo is a 404 ``RepoNotFound``, an
  unknown revision a 404 ``RevisionNotFound``.

Standard library only, one thread per connection. File bodies are streamed in
1 MiB chunks straight from disk so a timed download measures the client, not the
server. Fault injection: ``fail`` (path substring -> status, or status and
``X-Error-Code``), ``hang`` (path substring -> seconds to stall before answering)
and :meth:`HubServer.mutate` (new bytes for a file: new etag, new commit sha).

The server only keeps the current state of each repo: after :meth:`mutate`, the
old commit sha is an unknown revision, as if the branch had been force-pushed.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

CHUNK_BYTES = 1 << 20
# The real hub stores these through git-LFS and answers their HEAD with
# X-Linked-Etag (the sha256) and X-Linked-Size; small text files get a git sha1.
LFS_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth", ".h5", ".msgpack", ".onnx")
LFS_MIN_BYTES = 10 * 1024 * 1024

Fault = int | tuple[int, str]


@dataclass(frozen=True)
class _Entry:
    """One file of a repo as served: where its bytes are and its identity."""

    path: str  # repo-relative, '/'-separated
    size: int
    oid: str  # git blob sha1
    sha256: str | None  # set for LFS files
    disk: Path | None  # bytes on disk, or
    data: bytes | None  # bytes in memory (after mutate)

    @property
    def etag(self) -> str:
        return self.sha256 or self.oid


def _git_blob_sha1(size: int, chunks: Any) -> str:
    h = hashlib.sha1(f"blob {size}\0".encode())
    for c in chunks:
        h.update(c)
    return h.hexdigest()


def _file_chunks(path: Path) -> Any:
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            yield chunk


class HubServer:
    """Serve ``repos`` (repo id -> folder) as a hub on ``127.0.0.1``.

    Use as a context manager; ``url`` is the value for ``HF_ENDPOINT``.
    ``requests`` is a copy of the log of ``(method, path)`` seen so far, paths
    percent-decoded with their query string. ``fail``, ``hang`` and the repos may
    be changed while the server runs (under the server's lock).
    """

    def __init__(
        self,
        repos: Mapping[str, Path],
        *,
        fail: Mapping[str, Fault] | None = None,
        hang: Mapping[str, float] | None = None,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> None:
        self._repos: dict[str, Path] = {k: Path(v) for k, v in repos.items()}
        self._overlay: dict[str, dict[str, bytes | None]] = {k: {} for k in self._repos}
        self.fail: dict[str, Fault] = dict(fail or {})
        self.hang: dict[str, float] = dict(hang or {})
        self.chunk_bytes = chunk_bytes
        self._lock = threading.Lock()
        self._log: list[tuple[str, str]] = []
        self._hash_cache: dict[tuple[str, int, int, int], tuple[str, str | None]] = {}
        self._stop = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------
    def start(self) -> HubServer:
        hub = self

        class Handler(_Handler):
            server_hub = hub

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        httpd.block_on_close = False  # a hung handler must not block close
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # wakes handlers stalled by `hang`
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("HubServer is not running")
        port = self._httpd.server_address[1]
        return f"http://127.0.0.1:{port}"

    # -- inspection and faults ------------------------------------------------
    @property
    def requests(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._log)

    def clear_requests(self) -> None:
        with self._lock:
            self._log.clear()

    def mutate(self, repo: str, file: str, new_bytes: bytes | None) -> None:
        """Serve ``new_bytes`` as ``file`` from now on (``None`` removes the file).

        The folder on disk is left untouched; the file's etag and the repo's
        commit sha change, as after a push to the real hub.
        """
        with self._lock:
            if repo not in self._repos:
                raise KeyError(f"unknown repo {repo!r}")
            self._overlay[repo][file] = None if new_bytes is None else bytes(new_bytes)

    def sha(self, repo: str) -> str:
        """The commit sha the server currently reports for ``repo``."""
        return _commit_sha(self._entries(repo))

    def etag(self, repo: str, file: str) -> str:
        """The (unquoted) etag the server currently reports for ``file``."""
        return self._entries(repo)[file].etag

    # -- repo state ---------------------------------------------------------
    def _hashes(self, disk: Path, size: int, lfs: bool) -> tuple[str, str | None]:
        st = disk.stat()
        key = (str(disk), st.st_size, st.st_mtime_ns, st.st_ino)
        with self._lock:
            cached = self._hash_cache.get(key)
        if cached is None:
            oid = _git_blob_sha1(size, _file_chunks(disk))
            sha256 = None
            if lfs:
                h = hashlib.sha256()
                for c in _file_chunks(disk):
                    h.update(c)
                sha256 = h.hexdigest()
            cached = (oid, sha256)
            with self._lock:
                self._hash_cache[key] = cached
        return cached

    def _entries(self, repo: str) -> dict[str, _Entry]:
        """The repo's files now: the folder on disk, with mutations applied."""
        with self._lock:
            root = self._repos[repo]
            overlay = dict(self._overlay[repo])
        out: dict[str, _Entry] = {}
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d != ".git")
            for name in sorted(filenames):
                disk = Path(dirpath, name)
                if not disk.is_file():
                    continue
                rel = disk.relative_to(root).as_posix()
                size = disk.stat().st_size
                lfs = rel.endswith(LFS_SUFFIXES) or size >= LFS_MIN_BYTES
                oid, sha256 = self._hashes(disk, size, lfs)
                out[rel] = _Entry(rel, size, oid, sha256, disk, None)
        for rel, data in overlay.items():
            if data is None:
                out.pop(rel, None)
                continue
            lfs = rel.endswith(LFS_SUFFIXES) or len(data) >= LFS_MIN_BYTES
            oid = _git_blob_sha1(len(data), [data])
            sha256 = hashlib.sha256(data).hexdigest() if lfs else None
            out[rel] = _Entry(rel, len(data), oid, sha256, None, data)
        return dict(sorted(out.items()))

    # -- request handling -----------------------------------------------------
    def _handle(self, h: _Handler, method: str) -> None:
        split = urlsplit(h.path)
        shown = unquote(split.path) + (f"?{split.query}" if split.query else "")
        with self._lock:
            self._log.append((method, shown))
            fail = next((v for k, v in self.fail.items() if k in shown), None)
            hang = next((v for k, v in self.hang.items() if k in shown), None)
        if hang:
            self._stop.wait(hang)
        if fail is not None:
            status, code = fail if isinstance(fail, tuple) else (fail, "")
            h.send_error_json(method, status, code, f"injected fault {status}")
            return
        parts = [unquote(p) for p in split.path.split("/")[1:]]
        query = parse_qs(split.query)
        if parts[:2] == ["api", "models"] and len(parts) > 2:
            self._api(h, method, parts[2:], query)
        elif "resolve" in parts[1:3]:
            self._resolve(h, method, parts)
        else:
            h.send_error_json(method, 404, "", f"no such endpoint: {split.path}")

    def _match_repo(self, segs: list[str]) -> tuple[str | None, list[str]]:
        with self._lock:
            known = set(self._repos)
        if len(segs) >= 2 and "/".join(segs[:2]) in known:
            return "/".join(segs[:2]), segs[2:]
        if segs and segs[0] in known:
            return segs[0], segs[1:]
        return None, segs

    def _check_rev(self, h: _Handler, method: str, repo: str, rev: str, sha: str) -> bool:
        if rev in ("main", sha):
            return True
        h.send_error_json(method, 404, "RevisionNotFound", f"Invalid rev id: {rev}")
        return False

    def _api(self, h: _Handler, method: str, segs: list[str], query: dict[str, list[str]]) -> None:
        repo, tail = self._match_repo(segs)
        if repo is None:
            h.send_error_json(method, 404, "RepoNotFound", "Repository not found")
            return
        entries = self._entries(repo)
        sha = _commit_sha(entries)
        if not tail or (len(tail) == 2 and tail[0] == "revision"):
            rev = tail[1] if tail else "main"
            if not self._check_rev(h, method, repo, rev, sha):
                return
            blobs = query.get("blobs", ["false"])[0].lower() in ("1", "true")
            siblings = []
            for e in entries.values():
                s: dict[str, Any] = {"rfilename": e.path}
                if blobs:
                    s.update(size=e.size, blobId=e.oid)
                    if e.sha256:
                        s["lfs"] = {"sha256": e.sha256, "size": e.size, "pointerSize": 134}
                siblings.append(s)
            info = {
                "_id": sha[:24],
                "id": repo,
                "modelId": repo,
                "sha": sha,
                "private": False,
                "gated": False,
                "disabled": False,
                "tags": [],
                "siblings": siblings,
            }
            h.send_json(method, info)
        elif len(tail) >= 2 and tail[0] == "tree":
            rev, sub = tail[1], "/".join(t for t in tail[2:] if t)
            if not self._check_rev(h, method, repo, rev, sha):
                return
            recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
            listing = _tree(entries, sub, recursive)
            if listing is None:
                h.send_error_json(method, 404, "EntryNotFound", f"{sub} does not exist on {rev}")
            else:
                h.send_json(method, listing)
        else:
            h.send_error_json(method, 404, "", f"no such endpoint for {repo}: {'/'.join(tail)}")

    def _resolve(self, h: _Handler, method: str, parts: list[str]) -> None:
        i = parts.index("resolve", 1)
        repo, rest = self._match_repo(parts[:i])
        if repo is None or rest:
            h.send_error_json(method, 404, "RepoNotFound", "Repository not found")
            return
        if len(parts) < i + 3:
            h.send_error_json(method, 404, "", "resolve needs a revision and a file")
            return
        rev, file = parts[i + 1], "/".join(parts[i + 2 :])
        entries = self._entries(repo)
        sha = _commit_sha(entries)
        if not self._check_rev(h, method, repo, rev, sha):
            return
        entry = entries.get(file)
        if entry is None:
            h.send_error_json(
                method, 404, "EntryNotFound", f"{file} not found", {"X-Repo-Commit": sha}
            )
            return
        h.send_file(method, entry, sha, self.chunk_bytes)


def _commit_sha(entries: Mapping[str, _Entry]) -> str:
    h = hashlib.sha1()
    for e in entries.values():
        h.update(f"{e.path}\0{e.oid}\n".encode())
    return h.hexdigest()


def _tree(entries: Mapping[str, _Entry], sub: str, recursive: bool) -> list[dict] | None:
    """The tree listing under folder ``sub`` ('' = root), or None if no such folder."""
    prefix = f"{sub}/" if sub else ""
    files = [e for p, e in entries.items() if p.startswith(prefix)]
    if sub and not files:
        return None
    out: list[dict] = []
    dirs: set[str] = set()
    for e in files:
        rest = e.path[len(prefix) :]
        parents = rest.split("/")[:-1]
        for depth in range(1, len(parents) + 1):
            if depth > 1 and not recursive:
                break
            dirs.add(prefix + "/".join(parents[:depth]))
        if recursive or not parents:
            item: dict[str, Any] = {"type": "file", "oid": e.oid, "size": e.size, "path": e.path}
            if e.sha256:
                item["lfs"] = {"oid": e.sha256, "size": e.size, "pointerSize": 134}
            out.append(item)
    for d in sorted(dirs):
        oid = hashlib.sha1(d.encode()).hexdigest()
        out.append({"type": "directory", "oid": oid, "size": 0, "path": d})
    return sorted(out, key=lambda x: x["path"])


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the client reuses connections
    server_hub: HubServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.server_hub._handle(self, "GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self.server_hub._handle(self, "HEAD")

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.server_hub._handle(self, "POST")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # quiet: the request log is HubServer.requests

    # -- responses ------------------------------------------------------------
    def _send(self, method: str, status: int, headers: Mapping[str, str], body: bytes) -> None:
        try:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if method != "HEAD":
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def send_json(self, method: str, obj: Any) -> None:
        body = json.dumps(obj).encode()
        self._send(method, 200, {"Content-Type": "application/json"}, body)

    def send_error_json(
        self,
        method: str,
        status: int,
        code: str,
        message: str,
        extra: Mapping[str, str] | None = None,
    ) -> None:
        headers = {"Content-Type": "application/json", "X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        headers.update(extra or {})
        self._send(method, status, headers, json.dumps({"error": message}).encode())

    def send_file(self, method: str, e: _Entry, sha: str, chunk_bytes: int) -> None:
        start, end = 0, e.size - 1
        status = 200
        rng = self.headers.get("Range")
        headers = {
            "Content-Type": "application/octet-stream",
            "X-Repo-Commit": sha,
            "ETag": f'"{e.etag}"',
            "Accept-Ranges": "bytes",
        }
        if e.sha256:
            headers["X-Linked-Etag"] = f'"{e.sha256}"'
            headers["X-Linked-Size"] = str(e.size)
        if rng and method == "GET":
            parsed = _parse_range(rng, e.size)
            if parsed is None:
                headers["Content-Range"] = f"bytes */{e.size}"
                self._send(method, 416, headers, b"")
                return
            start, end = parsed
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{e.size}"
        length = max(0, end - start + 1)
        try:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(length))
            self.end_headers()
            if method == "HEAD" or length == 0:
                return
            if e.data is not None:
                view = memoryview(e.data)[start : end + 1]
                for i in range(0, length, chunk_bytes):
                    self.wfile.write(view[i : i + chunk_bytes])
                return
            assert e.disk is not None
            with open(e.disk, "rb", buffering=0) as f:
                f.seek(start)
                left = length
                buf = bytearray(min(chunk_bytes, left))
                view = memoryview(buf)
                while left > 0:
                    n = f.readinto(view[: min(chunk_bytes, left)])
                    if not n:
                        break  # file shrank under us: the client sees a short body
                    self.wfile.write(view[:n])
                    left -= n
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


def _parse_range(value: str, size: int) -> tuple[int, int] | None:
    """Parse a single ``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` range."""
    if not value.startswith("bytes=") or "," in value:
        return None
    a, _, b = value[len("bytes=") :].strip().partition("-")
    try:
        if a == "":
            n = int(b)
            start, end = max(0, size - n), size - 1
        else:
            start = int(a)
            end = int(b) if b else size - 1
    except ValueError:
        return None
    end = min(end, size - 1)
    if start > end or start >= size:
        return None
    return start, end
