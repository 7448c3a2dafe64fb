"""Shared pytest fixtures.

Hub server: ``hub_server`` starts a loopback hub (tests/support/hubserver.py) and
stops it after the test; ``hub_env`` builds the environment for a *child process*
that talks to it with an isolated cache (huggingface_hub reads its environment
once, at import, so hub tests run the client in a subprocess).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def hub_server() -> Iterator[Callable[..., Any]]:
    """Factory: ``hub_server({"org/name": folder}, fail=..., hang=...)`` -> running server."""
    from tests.support.hubserver import HubServer

    started: list[HubServer] = []

    def start(repos: Mapping[str, Path], **kwargs: Any) -> HubServer:
        server = HubServer(repos, **kwargs).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def hub_env() -> Callable[..., dict[str, str]]:
    """Factory: ``hub_env(server, cache_root, **extra)`` -> env for a hub client child.

    The child sees only this hub (``HF_ENDPOINT``), a cache under ``cache_root``
    (``HF_HUB_CACHE`` and friends, ``HF_HOME`` too so no user token or settings
    leak in), no inherited ``HF_*`` settings, and this checkout on ``PYTHONPATH``.
    """
    from profiler.caches.hub import hub_cache_env

    def build(server: Any, cache_root: Path, **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))
        }
        env.update(hub_cache_env(cache_root))
        env.update(
            HF_ENDPOINT=server.url,
            HF_HOME=str(Path(cache_root) / "home"),
            HF_HUB_DISABLE_PROGRESS_BARS="1",
            HF_HUB_DISABLE_TELEMETRY="1",
            PYTHONPATH=os.pathsep.join(
                p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
            ),
        )
        env.update(extra)
        return env

    return build
