"""The usual ways of loading a model, each run like a repetition (``llmprof load --variants``).

:func:`plan_variants` decides which ways apply to this model and device (plain
``from_pretrained`` + ``.to()`` first, as a tutorial writes it; ``device_map`` and
pinned buffers on a GPU only; the storage dtype when it differs from the one asked
for; a ``pytorch_model.bin`` twin when one sits beside the folder).
:func:`profile_variants` runs each in a fresh process in every cache state asked
for; :mod:`profiler.analysis.ranking` ranks them.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from profiler.errors import UserError
from profiler.records.job import LoadJob
from profiler.records.run import CacheState, Environment, NativeView, RunRecord
from profiler.run.repetitions import (
    failed_record,
    prepare_page_cache,
    with_note,
    with_sibling_facts,
)
from profiler.run.request import ProfileRequest
from profiler.run.source import Source, model_files, preflight, resolve_source
from profiler.run.spawn import ChildFailed, run_child


@dataclass(frozen=True)
class Variant:
    """One way of loading: the child view that performs it, and how."""

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
    from profiler.load.checkpoint import storage_dtype
    from profiler.run.checks import check_request

    check_request(req)
    src = resolve_source(req, log)
    if src.folder is None or src.gguf_file:
        raise UserError(
            "--variants needs a local safetensors model (a folder, a preset or a "
            "hub model already downloaded)"
        )
    preflight(src.folder)
    variants = plan_variants(req, src.folder, storage_dtype(src.folder))
    runs: list[RunRecord] = []
    for rep in range(req.repeat):
        for page_state in req.page_states:
            for v in variants:
                folder = v.folder or src.folder
                prepared = prepare_page_cache(model_files(folder, None), page_state)
                cache = dataclasses.replace(prepared.state, process="fresh")
                log(f"variant {v.name!r} rep {rep + 1}/{req.repeat} [{cache.label}]")
                run = _run_variant(req, src, v, folder, cache, rep)
                # The description goes last: the ranking reads it from there.
                runs.append(with_note(with_note(run, prepared.note), v.description))
    return with_sibling_facts(runs)


def _run_variant(
    req: ProfileRequest, src: Source, v: Variant, folder: Path, cache: CacheState, rep: int
) -> RunRecord:
    """One variant, one repetition, in a fresh process."""
    job = LoadJob(
        model=src.model,
        folder=str(folder),
        view=v.view,
        dtype=v.dtype,
        device=req.device,
        read_threads=req.read_threads,
        pinned=v.pinned,
        decode=dataclasses.replace(req.decode, enabled=False),
        cache=cache,
        repetition=rep,
    )
    try:
        doc = run_child(job, {}, req.timeout_s)
    except ChildFailed as e:
        run = failed_record(src, req, cache, rep, e)
        return dataclasses.replace(run, dtype_requested=v.dtype, variant=v.name)
    if "native" in doc:
        run = _native_record(doc, req, src, v, folder, cache, rep)
    else:
        run = RunRecord.from_dict(doc["run"])
    return dataclasses.replace(run, variant=v.name)


def _native_record(
    doc: dict,
    req: ProfileRequest,
    src: Source,
    v: Variant,
    folder: Path,
    cache: CacheState,
    rep: int,
) -> RunRecord:
    """The record of a from_pretrained variant: its native view's stages are its stages,
    on the machine and device its child fingerprinted."""
    nv = NativeView.from_dict(doc["native"])
    if "environment" in doc:
        environment = Environment.from_dict(doc["environment"])
    else:  # a child of an older llmprof: fingerprint here, for the request's device
        from profiler.measure.environment import fingerprint

        environment = fingerprint(folder, req.device)
    return RunRecord(
        model=src.model,
        device=req.device,
        dtype_requested=v.dtype,
        dtype_resolved=nv.load_kwargs.get("dtype", v.dtype),
        cache=cache,
        environment=environment,
        repetition=rep,
        stages=nv.stages,
        native=nv,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        run_id=uuid.uuid4().hex[:12],
        suite=req.suite,
    )
