"""Repetitions: set each cache to the state asked for, prove it, run, collect.

Every repetition runs in a fresh subprocess (unless ``in_process``), so import
time, CUDA context creation and allocator state are paid honestly and one
repetition cannot warm the next. A child that crashes, times out or is killed is
reported for that repetition with its exit status and last error lines; the other
repetitions still count. A child that exits with code 2 hit bad input: that stops
the whole command with the child's one-line message.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from profiler.errors import UserError
from profiler.job import DecodeSpec, LoadJob
from profiler.records import CacheState, ModelInfo, NativeView, RunRecord

PAGE_STATES = ("cold", "warm", "uncontrolled")
HUB_STATES = ("cold", "warm", "user")


@dataclass(frozen=True)
class ProfileRequest:
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


@dataclass(frozen=True)
class Source:
    """Where the weights are, as known before any child runs."""

    model: ModelInfo
    folder: Path | None  # None: hub model not yet in the cache used
    hub_repo: str | None = None
    gguf_file: str | None = None
    build_s: float | None = None


def resolve_source(req: ProfileRequest, log: Callable[[str], None]) -> Source:
    """Turn the user's MODEL into files (building or converting local sources)."""
    from profiler.sources import resolve_local

    local = resolve_local(req.spec, fmt=req.fmt, max_shard_size=req.max_shard_size, progress=log)
    if local is not None:
        notes = list(local.notes)
        if local.build_s is not None:
            notes.append(f"built in {local.build_s:.1f} s before profiling (not part of any stage)")
            log(f"built {req.spec} in {local.build_s:.1f} s → {local.path}")
        info = ModelInfo(
            spec=req.spec,
            source_kind=local.kind,
            path=str(local.path),
            random_weights=local.random_weights,
            notes=tuple(notes),
        )
        return Source(info, local.path, None, local.gguf_file, local.build_s)

    from profiler.sources.hub import looks_like_hub_id

    if not looks_like_hub_id(req.spec):
        raise UserError(
            f"{req.spec!r} is neither a local model folder, a .gguf file, a preset "
            "(synthetic:NAME, smollm2-135m) nor a hub id: see `llmprof models`"
        )
    info = ModelInfo(spec=req.spec, source_kind="hub", path="")
    return Source(info, None, hub_repo=req.spec)


def _cached_snapshot(repo: str, env: dict[str, str]) -> Path | None:
    """The snapshot folder of ``repo`` in the hub cache named by ``env``, if it holds
    every file a load needs (the same rule as the child's download), else None.

    Asked in a subprocess because huggingface_hub reads its cache location once,
    at import, from the environment; offline, so the hub is never contacted. Not a
    bare ``snapshot_download(local_files_only=True)``: huggingface_hub 2.x keeps the
    repo's whole file list and calls a snapshot without README.md, .gitattributes
    and the like incomplete, which every download made by llmprof is.
    """
    code = (
        "import sys\n"
        "from profiler.sources.hub import download\n"
        "try:\n"
        f"    print(download({repo!r}).path)\n"
        "except Exception:\n"
        "    sys.exit(1)\n"
    )
    env = {**env, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if proc.returncode != 0 or not proc.stdout.strip():
        return None
    return Path(proc.stdout.strip().splitlines()[-1])


def preflight(folder: Path) -> None:
    """Fail fast, before any child starts, on weights that cannot load: a missing or
    damaged checkpoint gives one clear line instead of N failed repetitions."""
    from profiler.checkpoint import find_checkpoint, read_safetensors_header

    ckpt = find_checkpoint(folder)
    if ckpt.fmt == "safetensors":
        for f in ckpt.files:
            read_safetensors_header(f)


def model_files(folder: Path, gguf_file: str | None) -> list[Path]:
    """The files a load reads: weights, configs and tokenizer files."""
    if gguf_file:
        return [folder / gguf_file]
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def prepare_page_cache(files: list[Path], state: str) -> CacheState:
    """Evict, warm, or just measure; the measured residency is what the record says."""
    from profiler import caches

    if state == "cold":
        res = caches.evict(files)
        ok, note = caches.verify("cold", res)
        return CacheState(page="cold", page_resident_fraction_before=res.fraction, page_verified=ok)
    if state == "warm":
        res = caches.warm(files)
        ok, note = caches.verify("warm", res)
        return CacheState(page="warm", page_resident_fraction_before=res.fraction, page_verified=ok)
    res = caches.residency(files)
    return CacheState(page="uncontrolled", page_resident_fraction_before=res.fraction)


@contextmanager
def hub_cache_for(state: str) -> Iterator[dict[str, str]]:
    """Environment for a child: a fresh, empty hub cache when cold (removed after,
    and never the user's), the user's cache otherwise."""
    from profiler import caches

    if state != "cold":
        yield {}
        return
    with caches.temporary_hub_cache() as root:
        yield caches.hub_cache_env(root)


class ChildFailed(Exception):
    def __init__(self, exit_code: int | None, tail: str) -> None:
        super().__init__(tail)
        self.exit_code = exit_code
        self.tail = tail


def _describe_exit(code: int) -> str:
    if code < 0:
        sig = signal.Signals(-code).name
        hint = " (out of memory? the kernel's OOM killer sends SIGKILL)" if sig == "SIGKILL" else ""
        return f"killed by {sig}{hint}"
    return f"exited with code {code}"


def run_child(
    job: LoadJob, env_extra: dict[str, str], timeout_s: float | None, relay: bool = True
) -> dict:
    """Run one job in a fresh interpreter; return its result document."""
    with tempfile.TemporaryDirectory(prefix="llmprof-job-") as tmp:
        job_path, out_path = Path(tmp, "job.json"), Path(tmp, "out.json")
        env = {
            **os.environ,
            **env_extra,
            "PYTHONUNBUFFERED": "1",
            "TRANSFORMERS_VERBOSITY": "error",
            "TOKENIZERS_PARALLELISM": "false",
        }
        spawn_ns = time.monotonic_ns()
        job = dataclasses.replace(job, spawn_ns=spawn_ns)
        job_path.write_text(json.dumps(job.to_dict()))
        proc = subprocess.Popen(
            [sys.executable, "-m", "profiler.child", str(job_path), str(out_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
        tail: collections.deque[str] = collections.deque(maxlen=20)

        def pump() -> None:
            assert proc.stderr is not None
            for raw in iter(proc.stderr.readline, b""):
                line = raw.decode(errors="replace")
                tail.append(line.rstrip("\n").split("\r")[-1])
                # libkineto announces every torch.profiler session on stderr ("USDT:
                # ... profiler_start"): noise, not a message for the user.
                if relay and not line.startswith(("llmprof: ", "USDT:")):
                    sys.stderr.write(line)
                    sys.stderr.flush()

        t = threading.Thread(target=pump, daemon=True)
        t.start()
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            t.join(timeout=5)
            raise ChildFailed(
                None, f"timed out after {timeout_s:g} s and was killed\n" + "\n".join(tail)
            ) from None
        t.join(timeout=5)
        if code == 2:
            msg = next((x for x in reversed(tail) if x.startswith("llmprof: ")), None)
            raise UserError(msg[len("llmprof: ") :] if msg else "child reported bad input")
        if code != 0 or not out_path.is_file():
            raise ChildFailed(code, _describe_exit(code) + "\n" + "\n".join(tail))
        return json.loads(out_path.read_text())


def run_in_process(job: LoadJob) -> dict:
    from profiler.child import run_job

    try:
        return run_job(job, in_process=True)
    except UserError:
        raise
    except Exception as e:  # one repetition failed; the others still count
        raise ChildFailed(1, f"{type(e).__name__}: {e}") from e


def _failed_record(
    src: Source, req: ProfileRequest, cache: CacheState, rep: int, err: ChildFailed
) -> RunRecord:
    from profiler.environment import fingerprint

    return RunRecord(
        model=src.model,
        device=req.device,
        dtype_requested=req.dtype,
        dtype_resolved="",
        cache=cache,
        environment=fingerprint(src.folder, "cpu"),
        repetition=rep,
        status="failed",
        error=err.tail[-4000:],
        exit_code=err.exit_code,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        run_id=uuid.uuid4().hex[:12],
        suite=req.suite,
    )


def profile(req: ProfileRequest, log: Callable[[str], None] = lambda s: None) -> list[RunRecord]:
    """Run every repetition in every requested cache state, interleaved (cold, warm,
    cold, warm, ...) so that drift of the machine hits both states alike."""
    if req.repeat < 1:
        raise UserError(f"--repeat must be at least 1, got {req.repeat}")
    for s in req.page_states:
        if s not in PAGE_STATES:
            raise UserError(f"unknown page-cache state {s!r}: use cold, warm or uncontrolled")
    src = resolve_source(req, log)
    if src.folder is not None and not src.gguf_file:
        preflight(src.folder)
    execute = (
        (lambda job, env: run_in_process(job))
        if req.in_process
        else (lambda job, env: run_child(job, env, req.timeout_s))
    )
    if req.in_process and req.hub_state == "cold":
        raise UserError(
            "--in-process cannot give a cold hub cache (huggingface_hub reads its "
            "cache location once per process): drop --in-process"
        )
    runs: list[RunRecord] = []
    for rep in range(req.repeat):
        for page_state in req.page_states:
            runs.append(_one_repetition(req, src, rep, page_state, execute, log))
    return runs


def _one_repetition(
    req: ProfileRequest,
    src: Source,
    rep: int,
    page_state: str,
    execute: Callable[[LoadJob, dict[str, str]], dict],
    log: Callable[[str], None],
) -> RunRecord:
    hub_state = req.hub_state if src.hub_repo else "n/a"
    process = "in-process" if req.in_process else "fresh"
    with hub_cache_for(hub_state) as hub_env:
        folder = src.folder
        if src.hub_repo:
            folder = _cached_snapshot(src.hub_repo, {**os.environ, **hub_env})
            if hub_state == "warm" and folder is None:
                log(f"hub-warm requested: downloading {src.hub_repo} once before measuring")
                from profiler.sources.hub import download

                folder = download(src.hub_repo).path
        files = model_files(folder, src.gguf_file) if folder else []
        if files:
            cache = prepare_page_cache(files, page_state)
        else:
            cache = CacheState(page="uncontrolled")  # files arrive with the download
        cache = dataclasses.replace(
            cache,
            hub=hub_state if hub_state != "user" else ("warm" if folder is not None else "cold"),
            process=process,
        )
        job = LoadJob(
            model=src.model,
            folder=str(folder) if folder else "",
            hub_repo=src.hub_repo,
            gguf_file=src.gguf_file,
            view="staged",
            dtype=req.dtype,
            device=req.device,
            read_threads=req.read_threads,
            pinned=req.pinned,
            decode=req.decode,
            cache=cache,
            repetition=rep,
        )
        label = f"repetition {rep + 1}/{req.repeat} [{cache.label}]"
        log(f"{label}: staged view")
        try:
            doc = execute(job, hub_env)
        except ChildFailed as e:
            log(f"{label}: FAILED ({e.tail.splitlines()[0] if e.tail else e.exit_code})")
            return _failed_record(src, req, cache, rep, e)
        run = RunRecord.from_dict(doc["run"])
        run = dataclasses.replace(run, suite=req.suite)
        if not req.native:
            return run
        # The native view loads the same files in its own fresh process, with the
        # page cache put back into the same state first.
        nfolder = Path(run.model.path)
        nfiles = model_files(nfolder, src.gguf_file)
        ncache = prepare_page_cache(nfiles, page_state)
        view = "native-device-map" if req.native_device_map else "native"
        njob = dataclasses.replace(job, folder=str(nfolder), hub_repo=None, view=view, cache=ncache)
        log(f"{label}: native view")
        try:
            ndoc = execute(njob, hub_env)
        except ChildFailed as e:
            note = f"native view failed: {e.tail.splitlines()[0] if e.tail else e.exit_code}"
            return dataclasses.replace(run, notes=run.notes + (note,))
        native = NativeView.from_dict(ndoc["native"])
        notes = run.notes
        if ncache.page_verified is False:
            notes += (
                f"native view: page cache not {page_state} before its load "
                f"({100 * (ncache.page_resident_fraction_before or 0):.1f}% resident)",
            )
        return dataclasses.replace(run, native=native, notes=notes)


# --- variants: the usual ways of loading, side by side ------------------------------


@dataclass(frozen=True)
class Variant:
    name: str
    view: str  # child view: native | native-device-map | staged | fast
    dtype: str
    pinned: bool = False
    folder: Path | None = None  # another copy of the model (e.g. its .bin twin)
    description: str = ""


def plan_variants(req: ProfileRequest, folder: Path, stored: str | None) -> list[Variant]:
    """Which loads to compare for this model and device."""
    cuda = req.device.startswith("cuda")
    out = [
        Variant(
            "from_pretrained + .to()",
            "native",
            req.dtype,
            description="the tutorial way: load on CPU, then move",
        )
    ]
    if cuda:
        out.append(
            Variant(
                "from_pretrained(device_map)",
                "native-device-map",
                req.dtype,
                description="transformers places each tensor on the device",
            )
        )
    if stored and req.dtype not in ("auto", stored):
        out.append(
            Variant(
                f"from_pretrained at storage dtype ({stored})",
                "native",
                stored,
                description="no cast: what the cast costs",
            )
        )
    twin = folder.parent / (folder.name + "-bin")
    if (folder / "pytorch_model.bin").is_file() and (folder / "model.safetensors").is_file():
        twin = folder  # both formats in one folder: transformers prefers safetensors
    if twin != folder and twin.is_dir():
        out.append(
            Variant(
                "from_pretrained, pytorch_model.bin",
                "native",
                req.dtype,
                folder=twin,
                description="pickle checkpoint of the same weights",
            )
        )
    out.append(
        Variant(
            "llmprof staged", "staged", req.dtype, description="explicit stages, pageable memory"
        )
    )
    if cuda:
        out.append(
            Variant(
                "llmprof staged, pinned",
                "staged",
                req.dtype,
                pinned=True,
                description="explicit stages, pinned staging buffers",
            )
        )
    out.append(
        Variant(
            "llmprof fast path",
            "fast",
            req.dtype,
            description="parallel reads into pinned buffers, overlapped copies",
        )
    )
    return out


def profile_variants(
    req: ProfileRequest, log: Callable[[str], None] = lambda s: None
) -> list[RunRecord]:
    """Every variant in every cache state, in fresh processes; decode is skipped."""
    from profiler.checkpoint import storage_dtype

    src = resolve_source(req, log)
    if src.folder is None or src.gguf_file:
        raise UserError(
            "--variants needs a local safetensors model (a folder, a preset or a "
            "hub model already downloaded)"
        )
    variants = plan_variants(req, src.folder, storage_dtype(src.folder))
    runs: list[RunRecord] = []
    no_decode = dataclasses.replace(req.decode, enabled=False)
    for rep in range(req.repeat):
        for page_state in req.page_states:
            for v in variants:
                folder = v.folder or src.folder
                cache = dataclasses.replace(
                    prepare_page_cache(model_files(folder, None), page_state), process="fresh"
                )
                job = LoadJob(
                    model=src.model,
                    folder=str(folder),
                    view=v.view,
                    dtype=v.dtype,
                    device=req.device,
                    read_threads=req.read_threads,
                    pinned=v.pinned,
                    decode=no_decode,
                    cache=cache,
                    repetition=rep,
                )
                log(f"variant {v.name!r} rep {rep + 1}/{req.repeat} [{cache.label}]")
                try:
                    doc = run_child(job, {}, req.timeout_s)
                except ChildFailed as e:
                    runs.append(
                        dataclasses.replace(_failed_record(src, req, cache, rep, e), variant=v.name)
                    )
                    continue
                if "native" in doc:
                    from profiler.environment import fingerprint

                    nv = NativeView.from_dict(doc["native"])
                    run = RunRecord(
                        model=src.model,
                        device=req.device,
                        dtype_requested=v.dtype,
                        dtype_resolved=nv.load_kwargs.get("dtype", v.dtype),
                        cache=cache,
                        environment=fingerprint(folder, "cpu"),
                        repetition=rep,
                        stages=nv.stages,
                        native=nv,
                        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
                        run_id=uuid.uuid4().hex[:12],
                        suite=req.suite,
                    )
                else:
                    run = RunRecord.from_dict(doc["run"])
                runs.append(
                    dataclasses.replace(run, variant=v.name, notes=run.notes + (v.description,))
                )
    return runs
