"""TODO: docstring."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from profiler.errors import UserError
from profiler.records.job import LoadJob
from profiler.records.run import NativeView, RunRecord
from profiler.run.repetitions import failed_record, prepare_page_cache
from profiler.run.request import ProfileRequest
from profiler.run.source import model_files, resolve_source
from profiler.run.spawn import ChildFailed, run_child


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
    from profiler.load.checkpoint import storage_dtype

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
                        dataclasses.replace(failed_record(src, req, cache, rep, e), variant=v.name)
                    )
                    continue
                if "native" in doc:
                    from profiler.measure.environment import fingerprint

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
