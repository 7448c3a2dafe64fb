"""The ways of decoding, each in a fresh process (``llmprof decode MODEL --variants``).

The parent plans the variants (:mod:`profiler.decode.variant_plan`), lists the ones
that cannot run on this device with their reason, and runs every other one in a
child of its own, which loads the model the staged way and measures the variant
(:func:`run_variant_job`). Fresh processes keep compiled code, CUDA graphs, the
allocator's pool and the attention implementation of one variant from helping
(or hurting) the next, and give every variant a true first call.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from profiler.decode.variant_plan import PlannedVariant, plan_decode_variants
from profiler.errors import UserError
from profiler.records.decode import DecodeRecord
from profiler.records.decode_variant import DecodeVariantFacts
from profiler.records.job import LoadJob
from profiler.records.run import CacheState, RunRecord
from profiler.run.repetitions import failed_record, with_sibling_facts
from profiler.run.request import ProfileRequest
from profiler.run.source import Source, resolve_source
from profiler.run.spawn import ChildFailed, run_child


def profile_decode_variants(
    req: ProfileRequest, names: tuple[str, ...], log: Callable[[str], None] = lambda s: None
) -> list[RunRecord]:
    """One record per variant, the reference (plain ``generate()``) first."""
    src = resolve_source(req, log)
    if src.folder is None or src.gguf_file:
        raise UserError(
            "--variants needs a local safetensors model (a folder, a preset or a hub "
            "model already downloaded)"
        )
    runs = []
    for v in plan_decode_variants(names, req.device):
        if v.skip_reason:
            log(f"decode variant {v.name!r}: cannot run here: {v.skip_reason}")
            runs.append(_not_run(src, req, v, v.skip_reason))
            continue
        log(f"decode variant {v.name!r} ({v.description})")
        runs.append(_run_one(req, src, v))
    return with_sibling_facts(runs)


def _facts(v: PlannedVariant, reason: str | None = None) -> DecodeVariantFacts:
    return DecodeVariantFacts(name=v.name, description=v.description, skip_reason=reason)


def _not_run(src: Source, req: ProfileRequest, v: PlannedVariant, reason: str) -> RunRecord:
    run = failed_record(src, req, CacheState(), 0, ChildFailed(None, reason))
    return dataclasses.replace(run, variant=v.name, decode_variant=_facts(v, reason))


def _run_one(req: ProfileRequest, src: Source, v: PlannedVariant) -> RunRecord:
    job = LoadJob(
        model=src.model,
        folder=str(src.folder),
        view="staged",
        dtype=req.dtype,
        device=req.device,
        read_threads=req.read_threads,
        decode=req.decode,
        cache=CacheState(process="fresh"),
        decode_variant=v.name,
    )
    try:
        doc = run_child(job, {}, req.timeout_s)
    except ChildFailed as e:
        run = failed_record(src, req, CacheState(), 0, e)
        return dataclasses.replace(run, variant=v.name, decode_variant=_facts(v))
    run = RunRecord.from_dict(doc["run"])
    facts = run.decode_variant
    if facts is not None and facts.skip_reason:  # found out only once loaded
        run = dataclasses.replace(run, status="failed", error=facts.skip_reason)
    return run


def run_variant_job(job: LoadJob, loaded: Any) -> tuple[list[DecodeRecord], DecodeVariantFacts]:
    """In the child: measure the job's decode variant on the loaded model."""
    from profiler.decode.model_facts import decode_skip_reason
    from profiler.decode.variant_child import run_decode_variant
    from profiler.decode.variant_plan import describe
    from profiler.machine.bandwidth import measure_memory_bandwidth

    name = job.decode_variant or ""
    reason = decode_skip_reason(loaded.model)
    if reason:
        return [], DecodeVariantFacts(name=name, description=describe(name), skip_reason=reason)
    bandwidth = measure_memory_bandwidth(job.device)  # the MBU denominator, as for decode
    return run_decode_variant(
        loaded.model,
        loaded.tokenizer,
        job.decode,
        name=name,
        device=job.device,
        bandwidth=bandwidth,
    )
