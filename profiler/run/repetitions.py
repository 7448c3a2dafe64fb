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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from profiler.caches.hub import hub_cache_env, temporary_hub_cache
from profiler.caches.page import evict, residency, verify, warm
from profiler.decode.options import check_decode_context
from profiler.errors import UserError
from profiler.records.job import LoadJob
from profiler.records.run import CacheState, NativeView, RunRecord
from profiler.run.request import PAGE_STATES, ProfileRequest
from profiler.run.source import Source, cached_snapshot, model_files, preflight, resolve_source
from profiler.run.spawn import ChildFailed, run_child, run_in_process

# Runs one job (in a fresh child, or in this process) with extra environment variables.
Execute = Callable[[LoadJob, dict[str, str]], dict]


@dataclass(frozen=True)
class PreparedCache:
    """A page cache put into a state, as measured just before the run.

    ``note`` is the measurement in words (for example ``"not cold: 37.0% of 537 MB
    resident before the run"``), kept in the run's notes; None when the state was
    not controlled.
    """

    state: CacheState
    note: str | None = None


def prepare_page_cache(files: list[Path], state: str) -> PreparedCache:
    """Evict, warm, or just measure; the measured residency is what the record says."""
    if state == "cold":
        res = evict(files)
        ok, note = verify("cold", res)
    elif state == "warm":
        res = warm(files)
        ok, note = verify("warm", res)
    else:
        res = residency(files)
        return PreparedCache(
            CacheState(page="uncontrolled", page_resident_fraction_before=res.fraction)
        )
    cache = CacheState(page=state, page_resident_fraction_before=res.fraction, page_verified=ok)
    return PreparedCache(cache, note)


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
    """The record of a repetition whose child crashed, hung or was killed.

    Its machine is fingerprinted here, in the parent, for the request's device; the
    parent may not have torch imported, so :func:`with_sibling_facts` later
    gives it the fingerprint a sibling took in its child.
    """
    from profiler.measure.environment import fingerprint

    return RunRecord(
        model=src.model,
        device=req.device,
        dtype_requested=req.dtype,
        dtype_resolved="",
        cache=cache,
        environment=fingerprint(src.folder, req.device),
        repetition=rep,
        status="failed",
        error=err.tail[-4000:],
        exit_code=err.exit_code,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        run_id=uuid.uuid4().hex[:12],
        suite=req.suite,
    )


def with_sibling_facts(runs: Sequence[RunRecord]) -> list[RunRecord]:
    """Failed repetitions completed with what a successful sibling measured.

    All repetitions of one request ran on this machine and device, but only a child
    that finished fingerprinted them with torch imported and the device open, and
    resolved the dtype ("auto" becomes the config's). A failed one, fingerprinted by
    the parent with the dtype unresolved, would otherwise form a group of its own
    (another machine without its GPU, dtype "") instead of being counted as a failed
    repetition of its group. The dtype comes from a sibling that asked for the same.
    """
    ok = [r for r in runs if r.status == "ok"]
    if not ok:
        return list(runs)
    out = []
    for r in runs:
        if r.status != "ok":
            twin = next((o for o in ok if o.dtype_requested == r.dtype_requested), None)
            r = dataclasses.replace(
                r,
                environment=ok[0].environment,
                dtype_resolved=twin.dtype_resolved if twin is not None else r.dtype_resolved,
            )
        out.append(r)
    return out


def with_note(run: RunRecord, note: str | None) -> RunRecord:
    """``run`` with ``note`` added to its notes (unchanged when there is none)."""
    return run if not note else dataclasses.replace(run, notes=(*run.notes, note))


def profile(req: ProfileRequest, log: Callable[[str], None] = lambda s: None) -> list[RunRecord]:
    """Run every repetition in every requested cache state, interleaved (cold, warm,
    cold, warm, ...) so that drift of the machine hits both states alike."""
    from profiler.run.checks import check_request

    check_request(req)
    if req.repeat < 1:
        raise UserError(f"--repeat must be at least 1, got {req.repeat}")
    for s in req.page_states:
        if s not in PAGE_STATES:
            raise UserError(f"unknown page-cache state {s!r}: use cold, warm or uncontrolled")
    src = resolve_source(req, log)
    if src.folder is not None and not src.gguf_file:
        check_decode_context(src.folder, req.decode)  # prompt vs context, before loading
        preflight(src.folder, chat=req.decode.enabled and req.decode.chat)
    execute: Execute = (
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
    return with_sibling_facts(runs)


def _one_repetition(
    req: ProfileRequest,
    src: Source,
    rep: int,
    page_state: str,
    execute: Execute,
    log: Callable[[str], None],
) -> RunRecord:
    hub_state = req.hub_state if src.hub_repo else "n/a"
    with hub_cache_for(hub_state) as hub_env:
        folder = _weights_folder(src, hub_state, hub_env, log)
        files = model_files(folder, src.gguf_file) if folder else []
        # Without files (a hub model not downloaded yet) they arrive with the download.
        prepared = (
            prepare_page_cache(files, page_state)
            if files
            else PreparedCache(CacheState(page="uncontrolled"))
        )
        cache = dataclasses.replace(
            prepared.state,
            hub=hub_state if hub_state != "user" else ("warm" if folder is not None else "cold"),
            process="in-process" if req.in_process else "fresh",
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
            return with_note(failed_record(src, req, cache, rep, e), prepared.note)
        run = dataclasses.replace(RunRecord.from_dict(doc["run"]), suite=req.suite)
        run = with_note(run, prepared.note)
        if not req.native:
            return run
        log(f"{label}: native view")
        return _add_native_view(run, job, req, page_state, lambda j: execute(j, hub_env))


def _weights_folder(
    src: Source, hub_state: str, hub_env: dict[str, str], log: Callable[[str], None]
) -> Path | None:
    """The folder to load from: the source's, or a hub model's snapshot in the hub cache
    the child will use (downloaded once first when a warm hub cache is asked for)."""
    if not src.hub_repo:
        return src.folder
    folder = cached_snapshot(src.hub_repo, {**os.environ, **hub_env})
    if hub_state == "warm" and folder is None:
        log(f"hub-warm requested: downloading {src.hub_repo} once before measuring")
        from profiler.sources.hub import download

        folder = download(src.hub_repo).path
    return folder


def _add_native_view(
    run: RunRecord,
    job: LoadJob,
    req: ProfileRequest,
    page_state: str,
    execute: Callable[[LoadJob], dict],
) -> RunRecord:
    """``run`` with its native view: the same files loaded by a plain ``from_pretrained``
    in a fresh process, with the page cache put back into the same state first."""
    folder = Path(run.model.path)
    prepared = prepare_page_cache(model_files(folder, job.gguf_file), page_state)
    view = "native-device-map" if req.native_device_map else "native"
    native_job = dataclasses.replace(
        job, folder=str(folder), hub_repo=None, view=view, cache=prepared.state
    )
    try:
        doc = execute(native_job)
    except ChildFailed as e:
        return with_note(
            run, f"native view failed: {e.tail.splitlines()[0] if e.tail else e.exit_code}"
        )
    native = dataclasses.replace(run, native=NativeView.from_dict(doc["native"]))
    # A verified state is already said by the staged view's note; a failed one is not.
    if prepared.state.page_verified is False:
        return with_note(native, f"native view: {prepared.note}")
    return native
