"""What a measured repetition is asked to do: a plain, JSON-able spec.

The parent process builds jobs; a child process (``python -m profiler.run.child``) runs
one and writes its result. Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from profiler.records.run import CacheState, ModelInfo


@dataclass(frozen=True)
class DecodeSpec:
    """What to generate: batch sizes, prompt, length, sampling and repetitions.

    ``enabled`` switches the decode phase of a load on or off. ``prompt`` and
    ``prompt_tokens`` are exclusive; with neither, a fixed English prompt is used.
    ``temperature == 0`` means greedy decoding; above 0, sampling seeded with
    ``seed`` before every call so all calls do the same work. ``warm_calls`` timed
    calls with the hook (and as many without it) follow one first call at each batch
    size. Data only: :func:`profiler.decode.options.validate_decode_spec` checks it.
    """

    enabled: bool = True
    batch_sizes: tuple[int, ...] = (1,)
    new_tokens: int = 64
    prompt: str | None = None
    prompt_tokens: int | None = None
    chat: bool = False
    temperature: float = 0.0
    seed: int | None = 0
    warm_calls: int = 3
    # --prompt-tokens 32,512,2048: profile each length in turn (prompt_tokens is the first)
    prompt_sweep: tuple[int, ...] = ()


@dataclass(frozen=True)
class LoadJob:
    model: ModelInfo  # what is known before loading (spec, kind, path, revision)
    folder: str  # folder to load from ("" for hub models still to download)
    hub_repo: str | None = None  # set: the child downloads it (timed hub_download)
    hub_revision: str | None = None
    gguf_file: str | None = None
    view: str = "staged"  # staged | native | native-device-map
    dtype: str = "auto"
    device: str = "cpu"
    read_threads: int = 4
    pinned: bool = False
    decode: DecodeSpec = field(default_factory=DecodeSpec)
    cache: CacheState = field(default_factory=CacheState)
    repetition: int = 0
    spawn_ns: int | None = None  # parent's clock when it started the child
    decode_variant: str | None = None  # set: decode this way (`llmprof decode --variants`)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["model"] = self.model.to_dict()
        d["cache"] = self.cache.to_dict()
        d["decode"]["batch_sizes"] = list(self.decode.batch_sizes)
        d["decode"]["prompt_sweep"] = list(self.decode.prompt_sweep)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LoadJob:
        d = dict(data)
        d["model"] = ModelInfo.from_dict(d["model"])
        d["cache"] = CacheState.from_dict(d.get("cache", {}))
        dec = dict(d.get("decode", {}))
        dec["batch_sizes"] = tuple(dec.get("batch_sizes", (1,)))
        dec["prompt_sweep"] = tuple(dec.get("prompt_sweep", ()))
        d["decode"] = DecodeSpec(**dec)
        return cls(**d)
