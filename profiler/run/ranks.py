"""One rank of a tensor-parallel load under torchrun: ``torchrun --nproc-per-node N
-m profiler load MODEL --tp``.

torchrun starts N fresh processes and tells each its ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; llmprof has no launcher of its own. Each rank times its own stages
(imports, ``pg_init`` for the process group, tokenizer, config, ``from_pretrained``
with ``tp_plan="auto"``, eval, then ``load_barrier``: the collective that waits
for every rank), sets and verifies the page cache itself, decodes with the sharded
model, and sends its record to rank 0 through ``torch.distributed.gather_object``.
Rank 0 returns every rank's record; the others return nothing.

The page cache is one per host: the first rank of each host (``LOCAL_RANK`` 0)
evicts or warms the files, every rank then measures residency before its load.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from profiler.errors import UserError
from profiler.records.run import CacheState, RunRecord
from profiler.run.request import ProfileRequest

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class RankEnv:
    """Where this process sits in the torchrun job."""

    rank: int
    world_size: int
    local_rank: int

    def device(self, requested: str) -> str:
        """The device of this rank: ``cuda:LOCAL_RANK`` on GPUs, ``cpu`` otherwise."""
        return f"cuda:{self.local_rank}" if requested.startswith("cuda") else "cpu"


def torchrun_env(environ: Mapping[str, str] | None = None) -> RankEnv | None:
    """The torchrun variables of this process, or None when it was not started by torchrun."""
    env = os.environ if environ is None else environ
    if not all(v in env for v in TORCHRUN_VARS):
        return None
    try:
        rank, world, local = (int(env[v]) for v in TORCHRUN_VARS)
    except ValueError:
        raise UserError(
            "RANK, WORLD_SIZE and LOCAL_RANK must be whole numbers: start with torchrun"
        ) from None
    if world < 1 or not 0 <= rank < world or local < 0:
        raise UserError(f"torchrun variables out of range (RANK={rank}, WORLD_SIZE={world})")
    return RankEnv(rank, world, local)


def check_tp_request(req: ProfileRequest, env: RankEnv | None) -> RankEnv:
    """Refuse what a tensor-parallel profile cannot do, before any work."""
    if env is None:
        raise UserError(
            "--tp needs torchrun: run `torchrun --nproc-per-node N -m profiler load MODEL --tp`"
        )
    if len(req.page_states) != 1:
        raise UserError(
            "--tp takes one page-cache state per torchrun (every rank is a fresh process "
            "once): run torchrun once with --page cold and once with --page warm"
        )
    if req.repeat != 1:
        raise UserError("--tp measures one repetition per torchrun: drop --repeat, run it again")
    if req.in_process:
        raise UserError("--tp already runs in the torchrun processes: drop --in-process")
    return env


def profile_tp(req: ProfileRequest, env: RankEnv, log: Callable[[str], None]) -> list[RunRecord]:
    """Run this rank; rank 0 gets every rank's record (rank order), the others ``[]``."""
    from profiler.measure.recorder import Recorder

    device = env.device(req.device)
    rec = Recorder(progress=False)
    with rec.stage("import") as st:
        import torch
        import torch.distributed as dist
        import transformers  # noqa: F401  (its import is a cost every rank pays)

        st.note("torch and transformers, imported by this rank")
    # Only now can the recorder synchronize the rank's GPU and read its memory
    # (NVML and torch), without billing torch's import to a GPU probe.
    rec.sync = _sync(device)
    if device.startswith("cuda"):
        from profiler.measure.gpu import GpuProbe

        rec.gpu = GpuProbe(env.local_rank)
    backend = "nccl" if device.startswith("cuda") else "gloo"
    with rec.stage("pg_init") as st:
        if device.startswith("cuda"):
            torch.cuda.set_device(device)
        dist.init_process_group(backend)
        st.counters["backend"] = backend
    try:
        folder, model_info = _source_on_every_rank(req, env, dist, log)
        cache = _page_cache(req.page_states[0], folder, env, dist)
        run = _load_and_decode(req, env, rec, folder, device, cache, model_info)
        ids: list[Any] = [uuid.uuid4().hex[:12] if env.rank == 0 else None]
        dist.broadcast_object_list(ids, src=0)
        run = dataclasses.replace(run, run_id=str(ids[0]))
        gathered: list[Any] | None = [None] * env.world_size if env.rank == 0 else None
        dist.gather_object(run.to_dict(), gathered, dst=0)
    finally:
        dist.destroy_process_group()
    if gathered is None:
        return []
    return [RunRecord.from_dict(d) for d in gathered]


def _sync(device: str) -> Callable[[], None] | None:
    if not device.startswith("cuda"):
        return None
    import torch

    return torch.cuda.synchronize


def _source_on_every_rank(
    req: ProfileRequest, env: RankEnv, dist: Any, log: Callable[[str], None]
) -> tuple[Path, Any]:
    """Resolve (build, download) the model on each host's first rank, then the others:
    a synthetic build or a download happens once, and the rest find it cached."""
    from profiler.run.source import resolve_source

    def resolve() -> tuple[Path, Any]:
        src = resolve_source(req, log if env.rank == 0 else lambda _m: None)
        if src.folder is not None:
            return src.folder, src.model
        from profiler.sources.hub import download

        got = download(str(src.hub_repo))
        return Path(got.path), dataclasses.replace(src.model, path=str(got.path))

    result = resolve() if env.local_rank == 0 else None
    dist.barrier()
    return result if result is not None else resolve()


def _page_cache(state: str, folder: Path, env: RankEnv, dist: Any) -> CacheState:
    """Set the page cache once per host, then measure and verify it on this rank."""
    from profiler.caches.page import evict, residency, verify, warm
    from profiler.run.source import model_files

    files = model_files(folder, None)
    if env.local_rank == 0:
        if state == "cold":
            evict(files)
        elif state == "warm":
            warm(files)
    dist.barrier()
    measured = residency(files)
    verified = verify(state, measured)[0] if state in ("cold", "warm") else None  # type: ignore[arg-type]
    return CacheState(
        page=state,
        process="fresh",
        page_resident_fraction_before=measured.fraction,
        page_verified=verified,
    )


def tp_kwargs() -> dict[str, Any]:
    """How to ask transformers for tensor parallelism: ``distributed_config`` from 5.18
    on (where the bare ``tp_plan`` is deprecated), ``tp_plan`` before (the form
    those versions take; the lent GPU machine has 5.17)."""
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    if (major, minor) >= (5, 18):
        from transformers.distributed import DistributedConfig

        return {"distributed_config": DistributedConfig(tp_plan="auto")}
    return {"tp_plan": "auto"}


def local_bytes(model: Any) -> int:
    """Bytes of weights this rank holds: the local shard of each sharded tensor."""
    seen: set[int] = set()
    total = 0
    for t in list(model.parameters()) + list(model.buffers()):
        local = t.to_local() if hasattr(t, "to_local") else t
        if local.data_ptr() in seen:
            continue
        seen.add(local.data_ptr())
        total += local.numel() * local.element_size()
    return total


def _load_and_decode(
    req: ProfileRequest,
    env: RankEnv,
    rec: Any,
    folder: Path,
    device: str,
    cache: CacheState,
    model_info: Any,
) -> RunRecord:
    """Load with tensor parallelism (stages on ``rec``), decode, build this rank's record."""
    import torch
    import torch.distributed as dist
    from transformers import AutoConfig, AutoTokenizer

    from profiler.load.common import model_class, resolve_dtype
    from profiler.measure.environment import fingerprint

    with rec.stage("tokenizer"):
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    with rec.stage("config"):
        config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
    dtype = resolve_dtype(req.dtype, config, None)
    with rec.stage("from_pretrained", "bytes of weights this rank holds") as st:
        model = model_class(config).from_pretrained(
            folder, dtype=getattr(torch, dtype), trust_remote_code=False, **tp_kwargs()
        )
        st.add_bytes(local_bytes(model))
        st.counters["tp_size"] = int(getattr(model, "tp_size", None) or env.world_size)
    with rec.stage("eval"):
        model.eval()
    with rec.stage("load_barrier") as st:
        dist.barrier()  # the job is loaded when the slowest rank is
        st.note("waiting for every rank to finish its load")
    decode, notes = _decode(req, model, tokenizer, device)
    stages = tuple(
        dataclasses.replace(s, rank=env.rank, world_size=env.world_size, device=device)
        for s in rec.records
    )
    return RunRecord(
        model=dataclasses.replace(
            model_info,
            path=str(folder),
            architecture=config.architectures[0] if config.architectures else None,
        ),
        device=device,
        dtype_requested=req.dtype,
        dtype_resolved=dtype,
        cache=cache,
        environment=fingerprint(folder, device),
        stages=stages,
        decode=tuple(decode),
        notes=(f"tensor parallel over {env.world_size} ranks (tp_plan=auto)", *notes),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        variant=f"tp{env.world_size}/rank{env.rank}",
    )


def _decode(
    req: ProfileRequest, model: Any, tokenizer: Any, device: str
) -> tuple[list[Any], list[str]]:
    """Decode with the sharded model; every rank must call ``generate()`` together
    (each step is a collective), so all ranks run the same spec."""
    if not req.decode.enabled:
        return [], []
    from profiler.decode.loop import profile_decode

    return profile_decode(model, tokenizer, req.decode, device=device, bandwidth=None), []
