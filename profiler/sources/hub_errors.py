"""What a failed hub call means, as one line with a fix (:func:`map_error`).

``huggingface_hub`` and httpx raise a chain of exceptions (an HTTP error wrapping a
network error wrapping an ``OSError``...). These functions walk the chain and turn
the known failures (gated, not found, offline, disk full, unwritable cache, a
server that is not a hub) into :class:`~profiler.errors.UserError`; anything else
is left as it is, never guessed at. :func:`unreachable` decides when a cached
snapshot may stand in for a hub that did not answer.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from profiler.errors import UserError


@dataclass(frozen=True)
class HubContext:
    """What a download was asked for, to name in its error messages."""

    repo_id: str
    revision: str | None
    endpoint: str
    cache: Path


_NETWORK_ERRORS = {"TimeoutException", "ConnectError", "NetworkError", "TransportError"}


_NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR)


def reason(e: BaseException) -> str:
    """Why the hub could not answer, in a few words (for notes)."""
    for c in chain(e):
        status = http_status(c)
        if status is not None:
            return f"it answered {status}"
        if isinstance(c, TimeoutError) or "Timeout" in type(c).__name__:
            return "timed out"
        if is_network(c):
            return f"{type(c).__name__}: {first_line(c)}"
    return type(e).__name__


def chain(e: BaseException) -> Iterator[BaseException]:
    """``e`` and its causes and contexts, each once."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def is_network(e: BaseException) -> bool:
    """Whether ``e`` is a network failure (httpx's or the standard library's)."""
    names = {c.__name__ for c in type(e).__mro__}
    return bool(names & _NETWORK_ERRORS) or isinstance(e, (TimeoutError, ConnectionError))


def http_status(e: BaseException) -> int | None:
    """The HTTP status of the response ``e`` carries, if any."""
    response = getattr(e, "response", None)
    code = getattr(response, "status_code", None)
    return code if isinstance(code, int) else None


def unreachable(e: BaseException) -> bool:
    """The hub could not answer (network, timeout, 5xx): the cache may stand in."""
    for c in chain(e):
        status = http_status(c)
        if status is not None:
            return status >= 500
        if is_network(c):
            return True
    return False


def map_error(e: BaseException, ctx: HubContext) -> BaseException:
    """A one-line UserError for a known failure, else ``e`` itself."""
    from huggingface_hub import errors as hf

    repo, at = ctx.repo_id, f"the hub at {ctx.endpoint}"
    local = "or pass a local folder"
    for c in chain(e):
        if isinstance(c, UserError):
            return c
        if isinstance(c, hf.GatedRepoError):
            return UserError(
                f"model '{repo}' is gated on {at}: accept its terms on the model page and "
                f"log in (hf auth login, or set HF_TOKEN), {local}"
            )
        if isinstance(c, hf.RepositoryNotFoundError):
            if http_status(c) == 401:
                return UserError(
                    f"model '{repo}' not found on {at}, or private (401): check the id, "
                    f"log in (hf auth login, or set HF_TOKEN) if it is private, {local}"
                )
            return UserError(f"model '{repo}' not found on {at}: check the id, {local}")
        if isinstance(c, hf.RevisionNotFoundError):
            return UserError(
                f"revision '{ctx.revision}' of model '{repo}' not found on {at}: "
                "check the branch, tag or commit"
            )
        if isinstance(c, hf.HfHubHTTPError) and http_status(c) is not None:
            status = http_status(c)
            if status is not None and status >= 500:
                return UserError(
                    f"hub answered {status} for '{repo}' ({ctx.endpoint}) and it is not "
                    f"cached: try again later, or set HF_HUB_OFFLINE=1 with a cached model, "
                    f"{local}"
                )
            if status in (401, 403):
                return UserError(
                    f"{at} refused access to '{repo}' ({status}): log in (hf auth login, "
                    f"or set HF_TOKEN) with an account that can read it, {local}"
                )
            return UserError(f"{at} answered {status} for '{repo}': check the id, {local}")
        if is_network(c) and not isinstance(c, hf.OfflineModeIsEnabled):
            return UserError(
                f"cannot reach {at} ({reason(c)}) and '{repo}' is not cached: connect, or set "
                f"HF_HUB_OFFLINE=1 with a cached model, {local}"
            )
        if isinstance(c, hf.FileMetadataError):
            return UserError(
                f"the server at {ctx.endpoint} does not answer like a Hugging Face hub "
                f"({str(c).splitlines()[0]}): check HF_ENDPOINT"
            )
        if isinstance(c, OSError) and c.errno == errno.ENOSPC:
            return UserError(
                f"disk full while downloading '{repo}' into {ctx.cache}: free some space, "
                "or set HF_HUB_CACHE to a folder on a larger disk"
            )
        if isinstance(c, OSError) and c.errno in _NOT_WRITABLE:
            name = str(c.filename or "")
            if name and not name.startswith(str(ctx.cache)):
                return UserError(f"cannot write {name} ({c.strerror}): check its permissions")
            return UserError(
                f"hub cache {ctx.cache} is not writable ({c.strerror}): set HF_HUB_CACHE "
                "to a writable folder"
            )
        if isinstance(c, OSError) and "Consistency check failed" in str(c):
            return UserError(
                f"a file of '{repo}' changed or was cut short while downloading from "
                f"{ctx.endpoint} ({first_line(c)}): run again"
            )
    for c in chain(e):
        if isinstance(c, hf.LocalEntryNotFoundError):
            return UserError(
                f"model '{repo}' is not (completely) in the hub cache at {ctx.cache} and the "
                f"hub cannot be used: connect and unset HF_HUB_OFFLINE, {local}"
            )
    return e


def first_line(e: BaseException) -> str:
    """The first line of ``e``'s message, or its type's name."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
