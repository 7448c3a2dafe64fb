"""The native view: the load as users write it, timed as a whole, then attributed.

``AutoTokenizer.from_pretrained`` → ``AutoModelForCausalLM.from_pretrained`` →
``.to(device)`` → ``.eval()``. Inside ``from_pretrained`` the disk read (mmap page
faults), the dtype cast and (with ``device_map``) the device copy overlap on a
thread pool, so its time cannot be split by a timer. Counters say what happened:
bytes fetched from storage, file-backed vs anonymous memory growth, page faults,
bytes that landed on the device and, on CUDA, host-to-device copies seen by the
torch profiler. What cannot be attributed is listed, not guessed.

By default the whole native load also runs under a
:class:`~profiler.measure.load_trace.LoadTracer`: hooks in transformers' own loading
functions record per-tensor read/cast/copy/attach spans on the threads that do them,
the child's import tracker adds the lazy imports, and counter tracks are sampled
every 10 ms. The view then carries that trace; its phases are
:func:`profiler.analysis.native_trace.native_attribution`.
"""

from __future__ import annotations

import dataclasses
import os
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from profiler.load.common import LoadOptions, resolve_dtype
from profiler.measure.counters import CounterSampler
from profiler.measure.h2d_trace import H2DTrace
from profiler.measure.load_trace import LoadTracer
from profiler.measure.recorder import Recorder
from profiler.records.run import NativeView
from profiler.records.stage import StageRecord
from profiler.run.device_kind import is_gpu


def load_native(
    folder: Path,
    options: LoadOptions,
    rec: Recorder,
    *,
    device_map: bool = False,
    trace_h2d: bool | None = None,
    timeline: bool = True,
) -> tuple[NativeView, Any]:
    """Run the plain load; returns the view and the model (for equality checks).

    ``timeline`` runs it under a :class:`LoadTracer` (hooks in transformers, lazy
    imports, counter tracks): the view then carries the trace of the whole load."""
    import torch

    on_cuda = is_gpu(options.device)
    gpu_allocated = None
    if on_cuda:
        device = torch.device(options.device)
        gpu_allocated = lambda: torch.cuda.memory_allocated(device)  # noqa: E731
    tracer = (
        LoadTracer(imports=rec.imports, sampler=CounterSampler(0.01, gpu_allocated=gpu_allocated))
        if timeline
        else None
    )
    if tracer is None:
        view, model = _load(folder, options, rec, device_map, trace_h2d, None)
        return view, model
    with tracer:
        view, model = _load(folder, options, rec, device_map, trace_h2d, tracer)
    return dataclasses.replace(view, trace=tracer.result()), model


def _load(
    folder: Path,
    options: LoadOptions,
    rec: Recorder,
    device_map: bool,
    trace_h2d: bool | None,
    tracer: LoadTracer | None,
) -> tuple[NativeView, Any]:
    import torch
    from transformers import AutoConfig, AutoTokenizer

    from profiler.load.common import model_class

    on_cuda = is_gpu(options.device)
    trace = on_cuda if trace_h2d is None else (trace_h2d and on_cuda)
    gguf = {"gguf_file": options.gguf_file} if options.gguf_file else {}
    first = len(rec.records)

    with rec.stage("tokenizer"):
        # Timed as users pay it; not needed after.
        AutoTokenizer.from_pretrained(folder, trust_remote_code=False, **gguf)

    # Cheap; needed to name "auto".
    config = AutoConfig.from_pretrained(folder, trust_remote_code=False, **gguf)
    dtype_name = resolve_dtype(options.dtype, config, None)
    kwargs: dict[str, Any] = {"dtype": getattr(torch, dtype_name), **gguf}
    if device_map:
        kwargs["device_map"] = options.device

    profiler_ctx = H2DTrace() if trace else None
    with rec.stage("from_pretrained", "bytes of weights in the loaded model") as st:
        if profiler_ctx is not None and device_map:
            profiler_ctx.__enter__()
        model = model_class(config).from_pretrained(folder, trust_remote_code=False, **kwargs)
        if profiler_ctx is not None and device_map:
            profiler_ctx.__exit__(None, None, None)
            st.counters.update(profiler_ctx.summary())
        st.add_bytes(_model_bytes(model))

    if on_cuda and not device_map:
        with rec.stage("to_device", "bytes copied host → device") as st:
            if profiler_ctx is not None:
                profiler_ctx.__enter__()
            with tracer.tensor_copies(model) if tracer is not None else nullcontext():
                model.to(options.device)
            if profiler_ctx is not None:
                torch.cuda.synchronize()
                profiler_ctx.__exit__(None, None, None)
                st.counters.update(profiler_ctx.summary())
                st.note("h2d counters from torch.profiler (CUDA activity only)")
            st.add_bytes(_model_bytes(model))
    else:
        rec.skip(
            "to_device", "device_map placed weights directly" if device_map else "device is cpu"
        )

    with rec.stage("eval"):
        model.eval()

    stages = tuple(rec.records[first:])
    attribution, unattributed = attribute(stages, on_cuda)
    view = NativeView(
        stages=stages,
        load_kwargs={
            "dtype": dtype_name,
            "device_map": options.device if device_map else "",
            **({"gguf_file": str(options.gguf_file)} if options.gguf_file else {}),
            "async_load": "off" if os.environ.get("HF_DEACTIVATE_ASYNC_LOAD") else "on",
        },
        attribution=attribution,
        unattributed=tuple(unattributed),
    )
    return view, model


def _model_bytes(model: Any) -> int:
    seen: set[int] = set()
    total = 0
    for t in list(model.parameters()) + list(model.buffers()):
        if t.data_ptr() in seen:
            continue
        seen.add(t.data_ptr())
        total += t.numel() * t.element_size()
    return total


def attribute(
    stages: tuple[StageRecord, ...], on_cuda: bool
) -> tuple[dict[str, float | int | str], list[str]]:
    """Counters measured during the native stages, and what they cannot explain."""
    out: dict[str, float | int | str] = {}
    unattributed: list[str] = []
    fp = next((s for s in stages if s.name == "from_pretrained"), None)
    if fp is None or fp.status != "ok":
        return out, ["from_pretrained failed"]
    if fp.disk_read_bytes is not None:
        out["from_pretrained.disk_read_bytes"] = fp.disk_read_bytes
    out["from_pretrained.major_faults"] = fp.counters.get("major_faults", 0)
    if fp.memory is not None:
        m = fp.memory
        out["from_pretrained.rss_file_growth_bytes"] = (
            m.after.rss_file_bytes - m.before.rss_file_bytes
        )
        out["from_pretrained.rss_anon_growth_bytes"] = (
            m.after.rss_anon_bytes - m.before.rss_anon_bytes
        )
    if fp.bytes:
        out["from_pretrained.model_bytes"] = fp.bytes
    unattributed.append(
        "from_pretrained: read, cast and placement overlap on transformers' thread pool; "
        "only counters, not times, are attributed inside it"
    )
    td = next((s for s in stages if s.name == "to_device"), None)
    if on_cuda and td is not None and td.status == "ok":
        h2d_s = td.counters.get("h2d_time_s")
        if isinstance(h2d_s, (int, float)):
            out["to_device.h2d_time_s"] = h2d_s
            out["to_device.h2d_bytes"] = td.counters.get("h2d_bytes", 0)
            rest = td.duration_s - float(h2d_s)
            out["to_device.other_s"] = rest
            unattributed.append(
                f"to_device: {rest:.3f} s outside host→device copies "
                "(allocation, launch and Python overhead: not split further)"
            )
        else:
            unattributed.append("to_device: no copy trace (run without torch.profiler)")
    return out, unattributed
