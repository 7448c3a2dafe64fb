"""``llmprof load HUB_ID`` end to end against the loopback hub server.

The real command runs in a subprocess with ``HF_ENDPOINT`` pointing at
tests/support/hubserver.py and the "user's" hub cache (``HF_HOME``,
``HF_HUB_CACHE``) under ``tmp_path``, never the real one. The served repo is a
tiny float32 llama plus two files a load must not fetch (a README and a ``.bin``
twin of the weights), so "downloaded bytes" can be checked to the byte.

Separating the parent's prefetch (``--hub warm``) from the measured children in
the server's log needs no clock: every ``download()`` starts with exactly one
model-info request (``GET /api/models/REPO?...``), and the parent runs its
prefetch and the children strictly one after another, so the log splits at those
requests into [prefetch, child 1, child 2, ...].
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from profiler.caches.page import COLD_MAX_FRACTION, WARM_MIN_FRACTION
from profiler.records.run import CacheState
from tests.support.hubserver import HubServer
from tests.support.tiny import make_tiny_model

REPO = "llmprof-test/tiny"
BASE = ("--ceilings", "off", "--no-decode", "--no-native")
NOT_NEEDED = ("README.md", "pytorch_model.bin")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    """The repo folder, and the files a load needs (name -> size)."""
    folder = make_tiny_model(
        tmp_path_factory.mktemp("served") / "tiny", arch="llama", dtype="float32"
    )
    needed = {p.name: p.stat().st_size for p in folder.iterdir() if p.is_file()}
    assert "model.safetensors" in needed and "config.json" in needed
    assert "tokenizer.json" in needed
    (folder / "README.md").write_text("# tiny\n")
    (folder / "pytorch_model.bin").write_bytes(os.urandom(64 * 1024))  # safetensors wins
    return folder, needed


def llmprof(env: dict[str, str], cwd: Path, *args: str) -> subprocess.Popen[str]:
    """Start ``python -m profiler load ARGS`` (wait on it with ``.communicate()``)."""
    return subprocess.Popen(
        [sys.executable, "-m", "profiler", "load", *args, *BASE],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


def user_cache(root: Path, marker: bool = True) -> Path:
    """A user's hub cache root: ``hub/`` holding a marker file and another model."""
    hub = root / "hub"
    hub.mkdir(parents=True)
    if marker:
        (hub / "MARKER.txt").write_text("the user's cache: never touch\n")
        other = hub / "models--someone--else" / "snapshots" / ("a" * 40)
        other.mkdir(parents=True)
        (other / "config.json").write_text('{"model_type": "gpt2"}')
    return root


def tree(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under ``root``: relative path -> (size, mtime_ns, sha1)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            st = p.stat()
            out[p.relative_to(root).as_posix()] = (
                st.st_size,
                st.st_mtime_ns,
                hashlib.sha1(p.read_bytes()).hexdigest(),
            )
    return out


def body_gets(requests: list[tuple[str, str]]) -> collections.Counter[str]:
    """File bodies fetched (``GET .../resolve/REV/FILE``), counted per file name."""
    return collections.Counter(
        path.split("/resolve/", 1)[1].split("/", 1)[1]
        for method, path in requests
        if method == "GET" and "/resolve/" in path
    )


def split_at_model_info(requests: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """The request log cut before each model-info request (one per ``download()``)."""
    info = f"/api/models/{REPO}"
    segments: list[list[tuple[str, str]]] = []
    for method, path in requests:
        if method == "GET" and path.split("?", 1)[0] in (info, f"{info}/revision/main"):
            segments.append([])
        if segments:
            segments[-1].append((method, path))
    return segments


def hub_stage(run: dict[str, Any]) -> dict[str, Any]:
    return next(s for s in run["stages"] if s["name"] == "hub_download")


def load_runs(path: Path) -> list[dict[str, Any]]:
    doc = json.loads(path.read_text())
    assert doc["kind"] == "llmprof.runs"
    return doc["runs"]


def test_hub_cold_downloads_every_needed_byte_into_a_temporary_cache(
    hub_server: Callable[..., HubServer],
    hub_env: Callable[..., dict[str, str]],
    served: tuple[Path, dict[str, int]],
    tmp_path: Path,
) -> None:
    folder, needed = served
    server = hub_server({REPO: folder})
    user = user_cache(tmp_path / "user")
    temp = (tmp_path / "tmp").resolve()
    temp.mkdir()
    env = hub_env(server, user, TMPDIR=str(temp))
    before = tree(user)

    rc, out, err = finish(
        llmprof(env, tmp_path, REPO, "--hub", "cold", "--repeat", "1", "--json", "out.json")
    )
    assert rc == 0, err[-3000:]
    assert "Traceback" not in err

    [run] = load_runs(tmp_path / "out.json")
    assert run["status"] == "ok"
    assert (run["cache"]["hub"], run["cache"]["page"]) == ("cold", "uncontrolled")
    st = hub_stage(run)
    assert st["status"] == "ok" and st["bytes_what"] == "bytes downloaded"
    # every byte a load needs, and nothing else (no README, no .bin twin)
    assert st["bytes"] == sum(needed.values())
    assert st["counters"]["bytes_total"] == st["bytes"]
    assert st["counters"]["files"] == len(needed) > 0
    assert st["counters"]["from_cache"] == 0
    assert st["gbps"] == pytest.approx(st["bytes"] / (st["end_ns"] - st["start_ns"]))
    assert "hub_download" in out  # the stage is in the printed table

    # The server sent each needed file's body exactly once, the weights included.
    assert body_gets(server.requests) == {name: 1 for name in needed}
    assert not set(body_gets(server.requests)) & set(NOT_NEEDED)
    # The model was loaded from the downloaded copy of exactly those weights.
    assert run["model"]["weight_files"] == ["model.safetensors"]
    assert run["model"]["weight_bytes"] == needed["model.safetensors"]

    # The download went into a fresh cache under TMPDIR, removed after the run ...
    snapshot = Path(run["model"]["path"])
    assert snapshot.is_relative_to(temp) and snapshot.name == server.sha(REPO)
    assert snapshot.relative_to(temp).parts[0].startswith("llmprof-hubcache-")
    assert not snapshot.exists()
    assert list(temp.iterdir()) == []
    # ... and the user's cache (HF_HUB_CACHE, HF_HOME) is exactly as it was.
    assert tree(user) == before


def test_hub_warm_prefetches_untimed_then_hub_user_page_cold_warm_downloads_nothing(
    hub_server: Callable[..., HubServer],
    hub_env: Callable[..., dict[str, str]],
    served: tuple[Path, dict[str, int]],
    tmp_path: Path,
) -> None:
    folder, needed = served
    server = hub_server({REPO: folder})
    user = user_cache(tmp_path / "user", marker=False)  # empty: the prefetch must fill it
    env = hub_env(server, user)
    snapshot = (user / "hub").resolve() / "models--llmprof-test--tiny" / "snapshots"
    snapshot = snapshot / server.sha(REPO)

    # 1. --hub warm on an empty cache: downloaded once by the parent, before measuring.
    rc, _out, err = finish(llmprof(env, tmp_path, REPO, "--hub", "warm", "--json", "w.json"))
    assert rc == 0, err[-3000:]
    assert err.count(f"hub-warm requested: downloading {REPO} once before measuring") == 1
    # [parent's prefetch, measured child]: only the prefetch got file bodies.
    prefetch, *children = split_at_model_info(server.requests)
    assert len(children) == 1, "\n".join(map(str, server.requests))
    assert body_gets(prefetch) == {name: 1 for name in needed}
    assert body_gets(children[0]) == {}
    [warm_run] = load_runs(tmp_path / "w.json")
    assert warm_run["status"] == "ok" and warm_run["cache"]["hub"] == "warm"
    assert Path(warm_run["model"]["path"]) == snapshot and snapshot.is_dir()

    # 2. --hub user, the model now cached: nothing fetched, page cache cold then warm.
    server.clear_requests()
    rc, _out, err = finish(llmprof(env, tmp_path, REPO, "--page", "cold,warm", "--json", "u.json"))
    assert rc == 0, err[-3000:]
    assert "downloading" not in err
    assert body_gets(server.requests) == {}
    assert len(split_at_model_info(server.requests)) == 2  # one per child, nothing else
    runs = load_runs(tmp_path / "u.json")
    assert [r["cache"]["page"] for r in runs] == ["cold", "warm"]

    for run in [warm_run, *runs]:
        assert run["status"] == "ok"
        assert run["cache"]["hub"] == "warm"  # --hub user: the cache was found complete
        assert Path(run["model"]["path"]) == snapshot
        st = hub_stage(run)
        # every measured run found everything cached: 0 bytes downloaded
        assert st["status"] == "ok" and st["bytes"] == 0
        assert st["counters"]["from_cache"] == 1
        assert st["counters"]["files"] == len(needed)
        assert st["counters"]["bytes_total"] == sum(needed.values())
        read = next(s for s in run["stages"] if s["name"] == "weight_read")
        assert read["bytes"] == needed["model.safetensors"]

    # Page cache: residency measured before each run, consistent with its label.
    cold, warm = (CacheState.from_dict(r["cache"]) for r in runs)
    assert cold.page_resident_fraction_before is not None
    assert cold.page_verified == (cold.page_resident_fraction_before <= COLD_MAX_FRACTION)
    assert cold.label == ("hub-warm/cold" if cold.page_verified else "hub-warm/not-cold")
    assert warm.page_resident_fraction_before is not None
    assert warm.page_resident_fraction_before >= WARM_MIN_FRACTION and warm.page_verified
    assert warm.label == "hub-warm/warm"


def test_bad_hub_input_is_one_line_exit_2_and_no_output(
    hub_server: Callable[..., HubServer],
    hub_env: Callable[..., dict[str, str]],
    served: tuple[Path, dict[str, int]],
    tmp_path: Path,
) -> None:
    folder, _needed = served
    server = hub_server({REPO: folder}, fail={"model.safetensors": 500})
    temp = tmp_path / "tmp"
    temp.mkdir()
    user = user_cache(tmp_path / "user")
    before = tree(user)
    # Both at once: huggingface_hub retries a 5xx with backoff (~23 s of sleeping)
    # before giving up, time the unknown-repo run can use.
    broken = llmprof(
        hub_env(server, user, TMPDIR=str(temp)), tmp_path, REPO, "--hub", "cold", "--json",
        "broken.json",
    )  # fmt: skip
    nope = llmprof(
        hub_env(server, tmp_path / "user2"), tmp_path, "llmprof-test/nope", "--json", "nope.json"
    )
    results = {"llmprof-test/nope": finish(nope), REPO: finish(broken)}

    expected = {
        "llmprof-test/nope": f"llmprof: model 'llmprof-test/nope' not found on the hub at "
        f"{server.url}: check the id, or pass a local folder",
        REPO: f"llmprof: hub answered 500 for '{REPO}' ({server.url}) and it is not cached: ",
    }
    for model, (rc, out, err) in results.items():
        assert rc == 2, f"{model}: exit {rc}\n{err[-3000:]}"
        assert "Traceback" not in err and out == ""
        lines = err.strip().splitlines()
        assert lines[-1].startswith(expected[model]), lines[-1]
        # one llmprof line names the model: the error, last
        assert [x for x in lines if x.startswith("llmprof: ") and model in x] == [lines[-1]]
    assert not (tmp_path / "nope.json").exists() and not (tmp_path / "broken.json").exists()
    # the fault was really hit: the weights were asked for (and answered 500)
    hit = [p for _, p in server.requests if p.endswith("/model.safetensors")]
    assert hit and all(p.startswith(f"/{REPO}/resolve/") for p in hit)
    # the temporary cold cache is gone even though the run failed; the user's is intact
    assert list(temp.iterdir()) == []
    assert tree(user) == before
