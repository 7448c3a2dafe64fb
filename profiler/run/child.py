"""One measured repetition, run in a fresh process: ``python -m profiler.run.child JOB OUT``.

The first thing this module does is read the clock, so the ``python_start`` stage
(parent's spawn → child running) and the ``import`` stage (torch + transformers)
are measured as a user pays them at every cold start. torch is imported inside the
``import`` stage and nowhere before it.
"""

from __future__ import annotations

import time

_T_MAIN = time.monotonic_ns()

# Lazy imports are timed from here on, before torch or transformers can be imported,
# so every stage can report its imports apart from its own work.
from profiler.measure.imports import ImportTracker  # noqa: E402

IMPORTS = ImportTracker()
IMPORTS.install()

import dataclasses  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402
import uuid  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from profiler.decode.anatomy import model_anatomy  # noqa: E402
from profiler.decode.loop import profile_decode  # noqa: E402
from profiler.decode.model_facts import decode_skip_reason  # noqa: E402
from profiler.errors import UserError  # noqa: E402
from profiler.measure.recorder import Recorder  # noqa: E402
from profiler.records.decode import DecodeRecord  # noqa: E402
from profiler.records.io import write_atomic  # noqa: E402
from profiler.records.job import LoadJob  # noqa: E402
from profiler.records.run import ModelInfo, RunRecord  # noqa: E402
from profiler.records.stage import StageRecord  # noqa: E402
from profiler.run.faults import inject_fault  # noqa: E402

# Exit code of a child that hit bad input: the parent reports it as a user error
# (one line, for the whole command) rather than as one failed repetition.
EXIT_USER_ERROR = 2


def _check_device(device: str) -> None:
    import torch

    if not device.startswith("cuda"):
        if device != "cpu":
            raise UserError(f"unknown device {device!r}: use cpu, cuda or cuda:N")
        return
    if not torch.cuda.is_available():
        raise UserError(
            f"--device {device} but no CUDA GPU is visible to torch "
            f"(torch {torch.__version__}): use --device cpu or install a CUDA build"
        )
    idx = torch.device(device).index or 0
    if idx >= torch.cuda.device_count():
        raise UserError(
            f"--device {device} but only {torch.cuda.device_count()} GPU(s) "
            "are visible: pick an index below that"
        )


def run_job(
    job: LoadJob, *, main_ns: int | None = None, in_process: bool = False
) -> dict[str, Any]:
    """Run one job in this process.

    Returns ``{"run": ...}`` for the staged and fast views, ``{"native": ...,
    "environment": ...}`` for the native views: the parent builds their record, and
    the environment is fingerprinted here, where torch is imported and the device
    is open, so it names the GPU the load ran on.
    """
    # Sampling threads and tokenizer threads must not fight over the cores the
    # load uses; tokenizers' own parallelism warnings are noise here.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    from profiler.measure.environment import fingerprint

    rec = Recorder(sync=None)
    rec.imports = IMPORTS
    _start_process(rec, job, main_ns, in_process)
    folder, revision = _fetch_weights(rec, job)

    from profiler.load.common import LoadOptions

    options = LoadOptions(
        dtype=job.dtype,
        device=job.device,
        read_threads=job.read_threads,
        pinned=job.pinned,
        gguf_file=job.gguf_file,
    )
    if job.view.startswith("native"):
        from profiler.load.native import load_native

        view, _model = load_native(folder, options, rec, device_map=job.view == "native-device-map")
        environment = fingerprint(folder, job.device)
        return {"native": view.to_dict(), "environment": environment.to_dict()}

    if job.view == "fast":
        from profiler.load.fast import load_fast

        loaded = load_fast(folder, options, rec)
    else:
        from profiler.load.staged import load_staged

        loaded = load_staged(folder, options, rec)
    decode: list[DecodeRecord] = []
    notes: list[str] = []
    variant_facts = None
    if job.decode_variant:
        from profiler.run.decode_variants import run_variant_job

        decode, variant_facts = run_variant_job(job, loaded)
    elif job.decode.enabled:
        decode, notes = _run_decode(job, loaded)
    notes.extend(loaded.notes)
    if rec.gpu is not None and rec.gpu.note:
        notes.append(rec.gpu.note)  # why the NVML columns (GPU memory, driver) are empty
    run = RunRecord(
        model=_model_info(job, folder, revision, loaded),
        device=job.device,
        dtype_requested=job.dtype,
        dtype_resolved=loaded.dtype_resolved,
        cache=job.cache,
        environment=fingerprint(folder, job.device),
        repetition=job.repetition,
        stages=tuple(rec.records),
        decode=tuple(decode),
        notes=tuple(notes),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        run_id=uuid.uuid4().hex[:12],
        variant=job.decode_variant,
        decode_variant=variant_facts,
    )
    return {"run": run.to_dict()}


def _start_process(rec: Recorder, job: LoadJob, main_ns: int | None, in_process: bool) -> None:
    """The stages every fresh process pays before a load: start, imports, CUDA context."""
    if job.spawn_ns is not None and main_ns is not None:
        rec.add(
            StageRecord(
                "python_start",
                "ok",
                job.spawn_ns,
                main_ns,
                notes=("interpreter start and llmprof's own imports",),
            )
        )
    with rec.stage("import") as st:
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401

        st.counters["torch"] = torch.__version__
        st.counters["transformers"] = transformers.__version__
        if in_process and job.repetition > 0:
            st.note("modules already imported in this process")
    transformers.logging.set_verbosity_error()
    inject_fault(job.repetition)
    transformers.logging.disable_progress_bar()
    _check_device(job.device)

    if not job.device.startswith("cuda"):
        rec.skip("cuda_init", "device is cpu")
        return
    with rec.stage("cuda_init") as st:
        idx = torch.device(job.device).index or 0
        torch.cuda.set_device(idx)
        torch.empty(1, device=job.device)
        torch.cuda.synchronize()
        st.note("CUDA context creation, paid once per process")
    from profiler.measure.gpu import GpuProbe

    rec.gpu = GpuProbe(idx)
    rec.sync = torch.cuda.synchronize


def _fetch_weights(rec: Recorder, job: LoadJob) -> tuple[Path, str | None]:
    """(folder of the weights, revision): downloaded in a stage of its own when the
    staged or fast view loads a hub model, else the folder the parent named."""
    if job.hub_repo and job.view in ("staged", "fast"):
        from profiler.sources.hub import download

        with rec.stage("hub_download", "bytes downloaded") as st:
            result = download(job.hub_repo, revision=job.hub_revision)
            st.bytes = result.bytes_downloaded
            st.counters["files"] = len(result.files)
            st.counters["bytes_total"] = result.bytes_total
            st.counters["from_cache"] = int(result.from_cache)
            if result.from_cache:
                st.note("all files were already in the hub cache: nothing downloaded")
        return result.path, result.revision
    if job.view in ("staged", "fast"):
        rec.skip(
            "hub_download",
            "local files: no hub involved"
            if not job.hub_repo
            else "hub files resolved by the parent",
        )
    if not job.folder:
        raise UserError("the job names no model folder: resolve the model before running it")
    return Path(job.folder), job.model.revision


def _model_info(job: LoadJob, folder: Path, revision: str | None, loaded: Any) -> ModelInfo:
    """The job's model, completed with what the load found out about it."""
    return dataclasses.replace(
        job.model,
        path=str(folder),
        revision=revision,
        architecture=type(loaded.model).__name__,
        num_parameters=loaded.num_parameters,
        weight_format=loaded.weight_format,
        weight_files=tuple(
            os.path.relpath(f, folder) if not job.gguf_file else Path(f).name
            for f in loaded.weight_files
        ),
        weight_bytes=loaded.weight_bytes,
        storage_dtype=loaded.storage_dtype,
        anatomy=model_anatomy(loaded.model),
    )


def _run_decode(job: LoadJob, loaded: Any) -> tuple[list[DecodeRecord], list[str]]:
    from profiler.machine.bandwidth import measure_memory_bandwidth
    from profiler.machine.matmul import measure_matmul

    reason = decode_skip_reason(loaded.model)
    if reason:
        return [], [f"decode skipped: {reason}"]
    # The MBU denominator, measured in the same process and machine state as the
    # decode; the machine's ceilings stand in only for a run that has none.
    bandwidth = measure_memory_bandwidth(job.device)
    matmul = measure_matmul(job.device, str(loaded.model.dtype).removeprefix("torch."))
    return profile_decode(
        loaded.model,
        loaded.tokenizer,
        job.decode,
        device=job.device,
        bandwidth=bandwidth,
        matmul=matmul,
    ), []


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    job_path, out_path = Path(args[0]), Path(args[1])
    job = LoadJob.from_dict(json.loads(job_path.read_text()))
    try:
        result = run_job(job, main_ns=_T_MAIN)
    except UserError as e:
        print(f"llmprof: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception:
        traceback.print_exc()
        return 1
    write_atomic(out_path, json.dumps(result).encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
