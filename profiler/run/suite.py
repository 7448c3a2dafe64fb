"""Suite files: what to profile, for CI regression checks, in TOML.

    [suite]
    name = "smoke"
    repeat = 5                 # default for every profile

    [[profile]]
    model = "synthetic:tiny"
    dtype = "float32"          # one or a list
    device = "cpu"             # one or a list
    cache = ["warm"]           # page-cache states (cold, warm, uncontrolled)
    batch = [1, 2]
    new_tokens = 16
    native = true
    decode = true

Each profile expands to one ProfileRequest per (dtype, device) pair.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from profiler.decode.options import validate_decode_spec
from profiler.errors import UserError
from profiler.records.job import DecodeSpec
from profiler.run.request import ProfileRequest

_PROFILE_KEYS = {
    "model",
    "dtype",
    "device",
    "cache",
    "hub",
    "repeat",
    "batch",
    "new_tokens",
    "prompt",
    "prompt_tokens",
    "chat",
    "temperature",
    "seed",
    "warm_calls",
    "native",
    "decode",
    "device_map",
    "pinned",
    "read_threads",
    "format",
    "max_shard_size",
    "timeout",
}


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    requests: tuple[ProfileRequest, ...]
    description: str = ""


def _as_list(value: Any, key: str, where: str) -> list[Any]:
    if isinstance(value, list):
        if not value:
            raise UserError(f"{where}: '{key}' is an empty list")
        return value
    return [value]


def load_suite(path: str | Path) -> Suite:
    """Parse and validate a suite file; every problem is one UserError naming the file."""
    p = Path(path)
    try:
        return _load_suite(p)
    except (ValueError, TypeError, AttributeError) as e:
        raise UserError(f"{p}: bad value in suite file ({e}): see suites/smoke.toml") from e


def _load_suite(path: Path) -> Suite:
    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text())
    except OSError as e:
        raise UserError(f"{p}: cannot read suite file ({e.strerror})") from e
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{p}: not valid TOML ({e})") from e
    head = doc.get("suite", {})
    unknown_head = set(head) - {"name", "repeat", "description"}
    if unknown_head:
        raise UserError(
            f"{p}: unknown key(s) in [suite]: {', '.join(sorted(unknown_head))}; "
            "known: name, repeat, description"
        )
    name = str(head.get("name", p.stem))
    default_repeat = int(head.get("repeat", 3))
    profiles = doc.get("profile")
    if not isinstance(profiles, list) or not profiles:
        raise UserError(f"{p}: no [[profile]] entries: add at least one")
    requests: list[ProfileRequest] = []
    for i, prof in enumerate(profiles):
        where = f"{p} profile {i + 1}"
        if not isinstance(prof, dict):
            raise UserError(f"{where}: each [[profile]] must be a table")
        unknown = set(prof) - _PROFILE_KEYS
        if unknown:
            raise UserError(
                f"{where}: unknown key(s) {', '.join(sorted(unknown))}; known: "
                f"{', '.join(sorted(_PROFILE_KEYS))}"
            )
        if "model" not in prof:
            raise UserError(f"{where}: missing 'model'")
        decode = DecodeSpec(
            enabled=bool(prof.get("decode", True)),
            batch_sizes=tuple(int(b) for b in _as_list(prof.get("batch", 1), "batch", where)),
            new_tokens=int(prof.get("new_tokens", 32)),
            prompt=prof.get("prompt"),
            prompt_tokens=prof.get("prompt_tokens"),
            chat=bool(prof.get("chat", False)),
            temperature=float(prof.get("temperature", 0.0)),
            seed=prof.get("seed", 0),
            warm_calls=int(prof.get("warm_calls", 3)),
        )
        states = tuple(_as_list(prof.get("cache", "uncontrolled"), "cache", where))
        for state in states:
            if state not in ("cold", "warm", "uncontrolled"):
                raise UserError(f"{where}: cache {state!r}: use cold, warm or uncontrolled")
        if decode.enabled:
            try:
                validate_decode_spec(decode)
            except UserError as e:
                raise UserError(f"{where}: {e}") from None
        for dtype in _as_list(prof.get("dtype", "auto"), "dtype", where):
            for device in _as_list(prof.get("device", "cpu"), "device", where):
                requests.append(
                    ProfileRequest(
                        spec=str(prof["model"]),
                        dtype=str(dtype),
                        device=str(device),
                        repeat=int(prof.get("repeat", default_repeat)),
                        page_states=states,
                        hub_state=str(prof.get("hub", "user")),
                        native=bool(prof.get("native", True)),
                        native_device_map=bool(prof.get("device_map", False)),
                        decode=decode,
                        timeout_s=prof.get("timeout"),
                        read_threads=int(prof.get("read_threads", 4)),
                        pinned=bool(prof.get("pinned", False)),
                        fmt=str(prof.get("format", "safetensors")),
                        max_shard_size=prof.get("max_shard_size"),
                        suite=name,
                    )
                )
    return Suite(name, p, tuple(requests), str(head.get("description", "")))


def result_name(req: ProfileRequest) -> str:
    """File name for one request's records: readable and unique within a suite."""
    import dataclasses
    import hashlib
    import json

    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in req.spec)
    # Two profiles of one model may differ only in cache states, batch sizes, ...:
    # a short digest of every setting keeps their files apart, and stays the same
    # from run to run so base and head results line up.
    settings = json.dumps(dataclasses.asdict(req), sort_keys=True, default=str)
    digest = hashlib.sha1(settings.encode()).hexdigest()[:6]
    return f"{safe}__{req.device.replace(':', '')}__{req.dtype}__{digest}.json"


def filter_requests(requests: Sequence[ProfileRequest], only: str | None) -> list[ProfileRequest]:
    if not only:
        return list(requests)
    return [r for r in requests if only in r.spec]
