"""Hub downloads (profiler/sources/hub.py) against the loopback hub server.

huggingface_hub reads HF_ENDPOINT / HF_HUB_CACHE once, at import, so every client
here runs in a child process with its own environment (conftest.hub_env).
"""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from profiler.errors import UserError
from profiler.sources import hub, hub_errors
from tests.support.hubserver import HubServer

REPO = "org/tiny"

CHILD = r"""
import dataclasses, json, sys, time
from profiler.errors import UserError
from profiler.sources.hub import download
results = []
for kwargs in json.loads(sys.argv[1]):
    t0 = time.monotonic()
    try:
        r = download(**kwargs)
    except UserError as e:
        out = {"error": str(e)}
    else:
        d = dataclasses.asdict(r)
        d["path"] = str(r.path)
        out = {"ok": d}
    out["elapsed_s"] = time.monotonic() - t0
    results.append(out)
print(json.dumps(results))
"""


def run_downloads(env: dict[str, str], calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``download(**kw)`` for each kw, in turn, in one child process.

    Each result is {"ok": DownloadResult as a dict} or {"error": message}, with
    "elapsed_s" (time of that call inside the child).
    """
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(calls)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_download(env: dict[str, str], **kwargs: Any) -> dict[str, Any]:
    """``download(**kwargs)`` in a fresh child process (see run_downloads)."""
    return run_downloads(env, [kwargs])[0]


def resolve_calls(server: HubServer, method: str) -> list[str]:
    """Files the client asked ``/resolve/`` for with ``method``, in order."""
    out = []
    for m, path in server.requests:
        if m == method and "/resolve/" in path:
            out.append(path.split("/resolve/", 1)[1].split("/", 1)[1])
    return out


@pytest.fixture
def repo_dir(tmp_path: Path) -> Path:
    """A small repo: config, tokenizer, safetensors weights, and files not to fetch."""
    d = tmp_path / "repo"
    (d / "onnx").mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_embd": 8}))
    (d / "tokenizer.json").write_text(json.dumps({"version": "1.0", "model": {}}))
    (d / "model.safetensors").write_bytes(os.urandom(2 * 1024 * 1024 + 17))
    (d / "pytorch_model.bin").write_bytes(os.urandom(4096))  # repo has safetensors
    (d / "onnx" / "model.onnx").write_bytes(os.urandom(1000))
    (d / "README.md").write_text("# tiny\n")
    return d


WANTED = ["config.json", "model.safetensors", "tokenizer.json"]


def test_child_env_points_huggingface_hub_at_the_cache(
    hub_server: Callable[..., HubServer], hub_env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    server = hub_server({REPO: tmp_path})
    env = hub_env(server, tmp_path / "c")
    code = (
        "import json; from huggingface_hub import constants as c; "
        "print(json.dumps([c.HF_HUB_CACHE, c.HF_XET_CACHE, c.ENDPOINT]))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert json.loads(out.stdout) == [
        str((tmp_path / "c" / "hub").resolve()),
        str((tmp_path / "c" / "xet").resolve()),
        server.url,
    ]


def test_cold_then_warm_then_offline(
    hub_server: Callable[..., HubServer],
    hub_env: Callable[..., dict[str, str]],
    repo_dir: Path,
    tmp_path: Path,
) -> None:
    server = hub_server({REPO: repo_dir})
    env = hub_env(server, tmp_path / "cache")
    sizes = {f: (repo_dir / f).stat().st_size for f in WANTED}

    cold = run_download(env, repo_id=REPO)["ok"]
    assert cold["revision"] == server.sha(REPO)
    assert cold["files"] == WANTED  # no .bin (safetensors exist), no README, no onnx/
    assert cold["bytes_total"] == sum(sizes.values())
    assert cold["bytes_downloaded"] == cold["bytes_total"]
    assert (cold["from_cache"], cold["offline"]) == (False, False)
    assert sorted(resolve_calls(server, "GET")) == WANTED
    snap = Path(cold["path"])
    for f in WANTED:
        assert (snap / f).read_bytes() == (repo_dir / f).read_bytes()

    server.clear_requests()
    warm = run_download(env, repo_id=REPO)["ok"]
    assert (warm["revision"], warm["path"], warm["files"]) == (
        cold["revision"],
        cold["path"],
        WANTED,
    )
    assert (warm["bytes_downloaded"], warm["from_cache"]) == (0, True)
    assert warm["bytes_total"] == cold["bytes_total"]
    assert resolve_calls(server, "GET") == []  # no file body fetched again
    assert resolve_calls(server, "HEAD") == []

    server.clear_requests()
    offline = run_download(hub_env(server, tmp_path / "cache", HF_HUB_OFFLINE="1"), repo_id=REPO)
    offline = offline["ok"]
    assert server.requests == []  # offline means not one request
    assert (offline["offline"], offline["bytes_downloaded"]) == (True, 0)
    assert (offline["revision"], offline["files"]) == (cold["revision"], WANTED)


def test_changed_file_on_the_hub_is_fetched_again_alone(
    hub_server: Callable[..., HubServer],
    hub_env: Callable[..., dict[str, str]],
    repo_dir: Path,
    tmp_path: Path,
) -> None:
    server = hub_server({REPO: repo_dir})
    env = hub_env(server, tmp_path / "cache")
    first = run_download(env, repo_id=REPO)["ok"]
    new = json.dumps({"model_type": "gpt2", "n_embd": 16, "n_layer": 3}).encode()
    old_etag = server.etag(REPO, "config.json")
    server.mutate(REPO, "config.json", new)
    assert server.etag(REPO, "config.json") != old_etag
    server.clear_requests()

    second = run_download(env, repo_id=REPO)["ok"]
    assert second["revision"] == server.sha(REPO) != first["revision"]
    assert resolve_calls(server, "GET") == ["config.json"]
    assert second["bytes_downloaded"] == len(new)
    assert Path(second["path"], "config.json").read_bytes() == new
    # the earlier snapshot is still there, untouched
    assert (
        Path(first["path"], "config.json").read_bytes() == (repo_dir / "config.json").read_bytes()
    )


def test_cached_file_changed_in_place_is_reported(
    hub_server: Callable[..., HubServer],
    hub_env: Callable[..., dict[str, str]],
    repo_dir: Path,
    tmp_path: Path,
) -> None:
    server = hub_server({REPO: repo_dir})
    env = hub_env(server, tmp_path / "cache")
    snap = Path(run_download(env, repo_id=REPO)["ok"]["path"])
    with open(snap / "model.safetensors", "ab") as f:  # writes through to the blob
        f.write(b"junk")
    err = run_download(env, repo_id=REPO)["error"]
    size = (repo_dir / "model.safetensors").stat().st_size
    assert err.startswith(
        f"cached file model.safetensors of '{REPO}' is {size + 4} bytes but the hub lists {size}"
    )
    assert (snap / "model.safetensors").exists()  # reported, not deleted


def test_unknown_repo(
    hub_server: Callable[..., HubServer], hub_env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    server = hub_server({REPO: tmp_path})
    err = run_download(hub_env(server, tmp_path / "c"), repo_id="org/nope")["error"]
    assert err == (
        f"model 'org/nope' not found on the hub at {server.url}: "
        "check the id, or pass a local folder"
    )


FAULTS = {
    "org/e500": (500, "hub answered 500 for 'org/e500'"),
    "org/gated": ((401, "GatedRepo"), "model 'org/gated' is gated on the hub at"),
    "org/private": ((401, "RepoNotFound"), "model 'org/private' not found on the hub at"),
    "org/e403": (403, "the hub at"),
}


def test_hub_errors_become_one_line(
    hub_server: Callable[..., HubServer],
    hub_env: Callable[..., dict[str, str]],
    repo_dir: Path,
    tmp_path: Path,
) -> None:
    server = hub_server(
        {repo: repo_dir for repo in FAULTS},
        fail={f"/api/models/{repo}": fault for repo, (fault, _) in FAULTS.items()},
    )
    results = run_downloads(hub_env(server, tmp_path / "c"), [{"repo_id": r} for r in FAULTS])
    for (_, (fault, expected)), res in zip(FAULTS.items(), results, strict=True):
        err = res["error"]
        assert err.startswith(expected), (fault, err)
        assert "\n" not in err and ": " in err  # one line: problem, then the fix
    assert resolve_calls(server, "GET") == []


def test_5xx_with_a_cached_snapshot_uses_it_and_says_so(
    hub_server: Callable[..., HubServer],
    hub_env: Callable[..., dict[str, str]],
    repo_dir: Path,
    tmp_path: Path,
) -> None:
    server = hub_server({REPO: repo_dir})
    env = hub_env(server, tmp_path / "cache")
    cold = run_download(env, repo_id=REPO)["ok"]
    server.fail["/api/models/"] = 503
    res = run_download(env, repo_id=REPO)["ok"]
    assert (res["path"], res["offline"], res["bytes_downloaded"]) == (cold["path"], True, 0)
    assert res["notes"] == ["hub not used (it answered 503): used the cached snapshot"]


HANGS = {
    "org/h-info": "/api/models/org/h-info",
    "org/h-tree": "/api/models/org/h-tree/tree/",
    "org/h-file": "/org/h-file/resolve/",
}


def test_a_hanging_hub_ends_in_about_one_timeout(
    hub_server: Callable[..., HubServer],
    hub_env: Callable[..., dict[str, str]],
    repo_dir: Path,
    tmp_path: Path,
) -> None:
    # A stall at each step: model info, tree listing, file HEAD. Without the cap
    # the library waits forever on the tree listing and retries a stalled HEAD
    # 5 times with a 60 s timeout.
    server = hub_server({r: repo_dir for r in HANGS}, hang={w: 30 for w in HANGS.values()})
    calls = [{"repo_id": r, "timeout_s": 1} for r in HANGS]
    for repo, res in zip(HANGS, run_downloads(hub_env(server, tmp_path / "c"), calls), strict=True):
        err = res["error"]
        assert err.startswith(f"cannot reach the hub at {server.url} (timed out) and '{repo}'")
        assert err.endswith("or pass a local folder")
        assert res["elapsed_s"] < 8, f"{repo}: {res['elapsed_s']:.1f} s with timeout_s=1"
    asked = [p for _, p in server.requests]
    assert all(any(w in p for p in asked) for w in HANGS.values())


def test_nothing_listening(
    hub_server: Callable[..., HubServer], hub_env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    server = hub_server({REPO: tmp_path})
    with socket.socket() as s:  # a port that was free a moment ago
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = hub_env(server, tmp_path / "c", HF_ENDPOINT=f"http://127.0.0.1:{port}")
    err = run_download(env, repo_id=REPO, timeout_s=2)["error"]
    assert err.startswith(f"cannot reach the hub at http://127.0.0.1:{port} (")
    assert "is not cached: connect, or set HF_HUB_OFFLINE=1" in err


def test_offline_and_not_cached(
    hub_server: Callable[..., HubServer], hub_env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    server = hub_server({REPO: tmp_path})
    env = hub_env(server, tmp_path / "c", HF_HUB_OFFLINE="1")
    err = run_download(env, repo_id=REPO)["error"]
    assert err.startswith(f"model '{REPO}' (revision main) is not in the hub cache at")
    assert "HF_HUB_OFFLINE=1 is set: unset HF_HUB_OFFLINE" in err
    assert server.requests == []


def test_cache_that_cannot_be_written(
    hub_server: Callable[..., HubServer],
    hub_env: Callable[..., dict[str, str]],
    repo_dir: Path,
    tmp_path: Path,
) -> None:
    # A cache path under a regular file fails for root too (chmod would not).
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    server = hub_server({REPO: repo_dir})
    env = hub_env(server, tmp_path / "c", HF_HUB_CACHE=str(blocker / "hub"))
    err = run_download(env, repo_id=REPO)["error"]
    assert err == (
        f"hub cache {blocker / 'hub'} is not writable (Not a directory): "
        "set HF_HUB_CACHE to a writable folder"
    )


TRANSFORMERS_CHILD = r"""
import json, sys
from pathlib import Path
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoConfig, AutoTokenizer, PreTrainedTokenizerFast

folder = Path(sys.argv[1])  # served by the hub as org/tiny; empty until now
words = ["<unk>", "<eos>", "hello", "world", "the", "cat", "sat"]
tok = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="<unk>"))
tok.pre_tokenizer = pre_tokenizers.Whitespace()
PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>").save_pretrained(
    folder
)
config = {"model_type": "gpt2", "n_embd": 8, "n_layer": 1, "n_head": 2, "n_positions": 16,
          "vocab_size": len(words), "bos_token_id": 1, "eos_token_id": 1}
(folder / "config.json").write_text(json.dumps(config))

cfg = AutoConfig.from_pretrained("org/tiny")
t = AutoTokenizer.from_pretrained("org/tiny")
print(json.dumps({"model_type": cfg.model_type, "n_embd": cfg.n_embd, "n_layer": cfg.n_layer,
                  "ids": t("the cat sat hello dog")["input_ids"], "eos": t.eos_token}))
"""


def test_transformers_loads_config_and_tokenizer_through_the_server(
    hub_server: Callable[..., HubServer], hub_env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    folder = tmp_path / "tiny"
    folder.mkdir()
    server = hub_server({REPO: folder})
    proc = subprocess.run(
        [sys.executable, "-c", TRANSFORMERS_CHILD, str(folder)],
        env=hub_env(server, tmp_path / "c"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {
        "model_type": "gpt2",
        "n_embd": 8,
        "n_layer": 1,
        "ids": [4, 5, 6, 2, 0],  # "dog" is not in the vocabulary: <unk>
        "eos": "<eos>",
    }
    fetched = set(resolve_calls(server, "GET"))
    assert {"config.json", "tokenizer.json", "tokenizer_config.json"} <= fetched
    # transformers probes optional files; the 404 EntryNotFound answers let it go on
    assert "tokenizer.model" in resolve_calls(server, "HEAD")
    assert "tokenizer.model" not in fetched


# -- the server itself ------------------------------------------------------------------
def fetch(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> Any:
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        return urllib.request.urlopen(req, timeout=10)
    except urllib.error.HTTPError as e:
        return e


def test_server_answers_like_the_hub(hub_server: Callable[..., HubServer], repo_dir: Path) -> None:
    server = hub_server({REPO: repo_dir, "solo": repo_dir})
    sha = server.sha(REPO)
    assert len(sha) == 40 and int(sha, 16) >= 0
    assert server.sha(REPO) == sha  # stable

    info = json.load(fetch(f"{server.url}/api/models/{REPO}/revision/main?blobs=true"))
    assert (info["id"], info["sha"]) == (REPO, sha)
    sizes = {s["rfilename"]: s["size"] for s in info["siblings"]}
    assert sizes["model.safetensors"] == (repo_dir / "model.safetensors").stat().st_size
    assert json.load(fetch(f"{server.url}/api/models/solo"))["id"] == "solo"

    top = json.load(fetch(f"{server.url}/api/models/{REPO}/tree/{sha}"))
    assert [(e["type"], e["path"]) for e in top if e["type"] == "directory"] == [
        ("directory", "onnx")
    ]
    deep = json.load(fetch(f"{server.url}/api/models/{REPO}/tree/main?recursive=true"))
    assert "onnx/model.onnx" in {e["path"] for e in deep}
    lfs = next(e for e in deep if e["path"] == "model.safetensors")["lfs"]
    assert len(lfs["oid"]) == 64

    url = f"{server.url}/{REPO}/resolve/main/model.safetensors"
    head = fetch(url, "HEAD")
    assert head.headers["X-Repo-Commit"] == sha
    assert head.headers["ETag"] == f'"{lfs["oid"]}"' == head.headers["X-Linked-Etag"]
    assert int(head.headers["Content-Length"]) == int(head.headers["X-Linked-Size"])
    part = fetch(url, headers={"Range": "bytes=10-19"})
    assert (
        part.status == 206 and part.read() == (repo_dir / "model.safetensors").read_bytes()[10:20]
    )
    assert part.headers["Content-Range"].endswith(f"/{sizes['model.safetensors']}")


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/org/tiny/resolve/main/tokenizer.model", 404, "EntryNotFound"),
        ("/api/models/org/tiny/tree/main/additional_chat_templates", 404, "EntryNotFound"),
        ("/org/nope/resolve/main/config.json", 404, "RepoNotFound"),
        ("/api/models/org/nope/revision/main", 404, "RepoNotFound"),
        ("/api/models/org/tiny/revision/" + "0" * 40, 404, "RevisionNotFound"),
        ("/org/tiny/resolve/main/config.json", 500, None),
    ],
)
def test_server_errors(
    hub_server: Callable[..., HubServer],
    repo_dir: Path,
    path: str,
    status: int,
    code: str | None,
) -> None:
    server = hub_server({REPO: repo_dir}, fail={"/org/tiny/resolve/main/config.json": 500})
    r = fetch(server.url + path)
    assert r.status == status
    assert r.headers.get("X-Error-Code") == code
    if code == "EntryNotFound" and "/resolve/" in path:
        assert r.headers["X-Repo-Commit"] == server.sha(REPO)  # clients cache the miss
    assert server.requests[-1] == ("GET", path)


# -- pure parts ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "ok"),
    [
        ("distilgpt2", True),
        ("Qwen/Qwen2-0.5B-Instruct", True),
        ("HuggingFaceTB/SmolLM2-135M-Instruct", True),
        ("synthetic:llama-tiny", False),
        ("gguf:foo", False),
        ("./model", False),
        ("/abs/path", False),
        ("~/models/x", False),
        ("a/b/c", False),
        ("org/", False),
        ("bad--name", False),
        ("model.gguf", False),
        ("", False),
    ],
)
def test_looks_like_hub_id(spec: str, ok: bool) -> None:
    assert hub.looks_like_hub_id(spec) is ok


def test_looks_like_hub_id_is_false_for_an_existing_path(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "distilgpt2").mkdir()
    assert not hub.looks_like_hub_id("distilgpt2")


def test_default_patterns_prefer_safetensors() -> None:
    meta = hub.META_PATTERNS
    files = ["config.json", "model.safetensors", "pytorch_model.bin", "onnx/model.safetensors"]
    assert hub.default_patterns(files) == (*meta, "model.safetensors")
    sharded = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
               "consolidated.safetensors", "model.safetensors.index.json"]  # fmt: skip
    assert hub.default_patterns(sharded) == (
        *meta,
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    )
    assert hub.default_patterns(["weights.safetensors"]) == (*meta, "weights.safetensors")
    bins = ["pytorch_model.bin", "training_args.bin", "config.json"]
    assert hub.default_patterns(bins) == (*meta, "pytorch_model.bin")
    assert hub.default_patterns(["other.bin", "training_args.bin"]) == (*meta, "other.bin")
    assert hub.default_patterns(["sub/model.safetensors", "x.bin"]) == meta  # no top-level
    assert hub.default_patterns(["tokenizer.json"]) == meta


def test_failures_inside_a_download_map_to_one_line() -> None:
    ctx = hub_errors.HubContext("org/m", None, "http://hub", Path("/cache/hub"))
    full = hub_errors.map_error(OSError(errno.ENOSPC, "No space left on device"), ctx)
    assert isinstance(full, UserError)
    assert str(full) == (
        "disk full while downloading 'org/m' into /cache/hub: free some space, "
        "or set HF_HUB_CACHE to a folder on a larger disk"
    )
    short = OSError(
        "Consistency check failed: file should be of size 10 but has size 7 (model.bin).\n"
        "This is usually due to network issues while downloading the file."
    )
    cut = hub_errors.map_error(short, ctx)
    assert str(cut) == (
        "a file of 'org/m' changed or was cut short while downloading from http://hub "
        "(Consistency check failed: file should be of size 10 but has size 7 (model.bin).)"
        ": run again"
    )
    denied = PermissionError(errno.EACCES, "Permission denied", "/cache/hub/models--org--m")
    assert "hub cache /cache/hub is not writable" in str(hub_errors.map_error(denied, ctx))
    other = PermissionError(errno.EACCES, "Permission denied", "/home/u/.cache/hf/token")
    assert str(hub_errors.map_error(other, ctx)).startswith("cannot write /home/u/.cache/hf/token")
    wrapped = RuntimeError("outer")
    wrapped.__cause__ = OSError(errno.ENOSPC, "No space left on device")
    assert str(hub_errors.map_error(wrapped, ctx)).startswith("disk full")
    unknown = ValueError("something else")
    assert hub_errors.map_error(unknown, ctx) is unknown  # not guessed at


def test_download_refuses_non_ids_before_importing_anything() -> None:
    with pytest.raises(UserError, match="not a hub model id"):
        hub.download("synthetic:llama-tiny")
