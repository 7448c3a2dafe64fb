"""What the user asked a profile to do: the model, how to place it, which cache states,
how often. Built by the commands from arguments and by suite files."""

from __future__ import annotations

from dataclasses import dataclass, field

from profiler.records.job import DecodeSpec

PAGE_STATES = ("cold", "warm", "uncontrolled")


HUB_STATES = ("cold", "warm", "user")


@dataclass(frozen=True)
class ProfileRequest:
    """One profile to run: see ``llmprof load --help`` for what each field means."""

    spec: str
    dtype: str = "auto"
    device: str = "cpu"
    repeat: int = 1
    page_states: tuple[str, ...] = ("uncontrolled",)
    hub_state: str = "user"  # user: the standard hub cache, whatever is in it
    in_process: bool = False
    native: bool = True
    native_device_map: bool = False
    decode: DecodeSpec = field(default_factory=DecodeSpec)
    timeout_s: float | None = None
    read_threads: int = 4
    pinned: bool = False
    fmt: str = "safetensors"
    max_shard_size: str | None = None
    suite: str | None = None
