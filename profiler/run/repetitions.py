"""Repetitions: set each cache to the state asked for, prove it, run, collect.

Every repetition runs in a fresh subprocess (unless ``in_process``), so import
time, CUDA context creation and allocator state are paid honestly and one
repetition cannot warm the next. A child that crashes, times out or is killed is
reported for that repetition with its exit status and last error lines; the other
repetitions still count. A child that exits with code 2 hit bad input: that stops
the whole command with the child's one-line message.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from profiler.caches.hub import hub_cache_env, temporary_hub_cache
from profiler.caches.page import evict, residency, verify, warm
from profiler.errors import UserError
from profiler.records.job import LoadJob
from profiler.records.run import CacheState, NativeView, RunRecord
from profiler.run.request import PAGE_STATES, ProfileRequest
from profiler.run.source import Source, _cached_snapshot, model_files, preflight, resolve_source
from profiler.run.spawn import ChildFailed, run_child, run_in_process


def prepare_page_cache(files: list[Path], state: str) -> CacheState:
    """Evict, warm, or just measure; the measured residency is what the record says."""

    if state == "cold":
        res = evict(files)
        ok, note = verify("cold", res)
        return CacheState(page="cold", page_resident_fraction_before=res.fraction, page_verified=ok)
    if state == "warm":
        res = warm(files)
        ok, note = verify("warm", res)
        return CacheState(page="warm", page_resident_fraction_before=res.fraction, page_verified=ok)
    res = residency(files)
    return CacheState(page="uncontrolled", page_resident_fraction_before=res.fraction)


@contextmanager
def hub_cache_for(state: str) -> Iterator[dict[str, str]]:
    """Environment for a child: a fresh, empty hub cache when cold (removed after,
    and never the user's), the user's cache otherwise."""

    if state != "cold":
        yield {}
        return
    with temporary_hub_cache() as root:
        yield hub_cache_env(root)


def failed_record(
    src: Source, req: ProfileRequest, cache: CacheState, rep: int, err: ChildFailed
) -> RunRecord:
    from profiler.measure.environment import fingerprint

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
            return failed_record(src, req, cache, rep, e)
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
