"""Where a decode step's time goes: the torch profiler over the steps of an untimed call.

A streamer starts ``torch.profiler`` when token 0 (the prefill's) arrives and stops
it :data:`MAX_PROFILED_STEPS` tokens later (or at the last token), so the window
holds only decode steps, no prefill. The call is extra (never one of the timed calls): the
profiler's own overhead must not touch the step time it helps to explain.

From the window:

* busy time per step: on CUDA the union of the intervals of every kernel, copy and
  memset the GPU ran (overlaps counted once); on the CPU the time inside top-level
  torch ops (the compute happens inside them; the rest is Python and generate()'s
  own bookkeeping).
* host time per step: the time the host thread spent inside top-level torch ops
  (dispatch and launch included), profiler overhead included.
* launches per step: CUDA runtime/driver launch calls (a CUDA graph launch counts
  once); on the CPU the number of top-level torch ops the step dispatched.

torch is imported inside the functions.
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from profiler.machine.matmul import MatmulRate
from profiler.records.decode import DecodeRecord
from profiler.records.step import StepProfile

# Runtime and driver entry points that put work on a CUDA stream (by name prefix:
# CUDA versions add suffixes such as cudaLaunchKernelExC_v11060).
LAUNCH_PREFIXES = (
    "cudaLaunchKernel",
    "cuLaunchKernel",
    "cudaLaunchCooperativeKernel",
    "cudaGraphLaunch",
    "cudaMemcpyAsync",
    "cudaMemsetAsync",
)


def is_launch(name: str) -> bool:
    """Whether a profiler event is a host call that puts work on a CUDA stream."""
    return name.startswith(LAUNCH_PREFIXES)


TOP_OPS = 5
# At most this many steps are profiled: a 7B model launches over a thousand kernels
# a step, and torch parses every profiler event in Python, so 64 profiled steps
# would cost tens of seconds. Steps are alike apart from the KV length.
MAX_PROFILED_STEPS = 16


def union_length(intervals: Sequence[tuple[float, float]]) -> float:
    """Total length covered by ``intervals`` (start, end), overlaps counted once."""
    total = 0.0
    end = float("-inf")
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


class _Window:
    """Streamer state: profiler on after token 0, off at the last token."""

    def __init__(self, prof: Any, n_tokens: int, sync: Callable[[], None] | None) -> None:
        self.prof, self.n, self.sync = prof, n_tokens, sync
        self.prompt_seen = False
        self.tokens = 0
        self.t0 = self.t1 = 0
        self.running = False

    def put(self, value: Any) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        self.tokens += 1
        if self.sync is not None:
            self.sync()
        if self.tokens == 1:
            self.prof.start()
            self.running = True
            self.t0 = time.monotonic_ns()
        elif self.tokens == self.n and self.running:
            self.t1 = time.monotonic_ns()
            self.prof.stop()
            self.running = False

    def end(self) -> None:
        if self.running:
            self.prof.stop()
            self.running = False


def _streamer(prof: Any, n: int, sync: Callable[[], None] | None) -> Any:
    from transformers.generation.streamers import BaseStreamer

    class _WindowStreamer(_Window, BaseStreamer):
        pass

    return _WindowStreamer(prof, n, sync)


def _top_level(events: Sequence[Any]) -> list[Any]:
    """CPU events with no parent, on the thread that spent the most time in them."""
    from torch.autograd import DeviceType

    cpu = [e for e in events if e.device_type == DeviceType.CPU and e.cpu_parent is None]
    by_thread: dict[int, float] = {}
    for e in cpu:
        by_thread[e.thread] = by_thread.get(e.thread, 0.0) + e.time_range.elapsed_us()
    if not by_thread:
        return []
    main = max(by_thread, key=lambda t: by_thread[t])
    return [e for e in cpu if e.thread == main and not is_launch(e.name)]


def _top_ops(events: Sequence[Any], steps: int) -> tuple[tuple[str, float], ...]:
    """The top-level ops that took the most host time, seconds per step."""
    per: dict[str, float] = {}
    for e in events:
        per[e.name] = per.get(e.name, 0.0) + e.time_range.elapsed_us() / 1e6 / steps
    return tuple(sorted(per.items(), key=lambda kv: -kv[1])[:TOP_OPS])


def _summarize(events: Sequence[Any], steps: int, wall_s: float, on_cuda: bool) -> StepProfile:
    from torch.autograd import DeviceType

    top = _top_level(events)
    host = sum(e.time_range.elapsed_us() for e in top) / 1e6 / steps
    if on_cuda:
        device = [e for e in events if e.device_type == DeviceType.CUDA]
        spans = [(e.time_range.start, e.time_range.end) for e in device]
        launches = sum(1 for e in events if is_launch(e.name))
        return StepProfile(
            steps=steps,
            profiled_step_s=wall_s,
            busy_s=union_length(spans) / 1e6 / steps if spans else None,
            busy_what="GPU busy: union of kernel, copy and memset intervals (torch.profiler)",
            host_s=host,
            launches_per_step=launches / steps,
            launches_what="CUDA launch calls (cudaLaunchKernel and kin; a graph launch once)",
            kernels_per_step=len(device) / steps,
            top_ops=_top_ops(top, steps),
        )
    return StepProfile(
        steps=steps,
        profiled_step_s=wall_s,
        busy_s=host,
        busy_what="CPU time inside top-level torch ops (compute happens inside them)",
        host_s=host,
        launches_per_step=len(top) / steps,
        launches_what="top-level torch ops dispatched (no kernel launches on the CPU)",
        top_ops=_top_ops(top, steps),
    )


def profile_steps(
    model: Any,
    inputs: dict,
    gen_config: Any,
    new_tokens: int,
    sync: Callable[[], None] | None,
) -> StepProfile:
    """Profile the decode steps of one untimed ``generate()`` (see the module docstring)."""
    from torch.profiler import ProfilerActivity, profile

    on_cuda = sync is not None
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_cuda else [])
    prof = profile(activities=acts)
    window = _streamer(prof, min(new_tokens, MAX_PROFILED_STEPS + 1), sync)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the profiler warns per cycle on some builds
        model.generate(**inputs, generation_config=gen_config, streamer=window)
    steps = window.n - 1
    wall = (window.t1 - window.t0) / 1e9 / steps if window.t1 > window.t0 else 0.0
    return _summarize(list(prof.events()), steps, wall, on_cuda)


@dataclass(frozen=True)
class StepInputs:
    """What an extra profiled call needs: the model, its inputs and generate() config."""

    model: Any
    inputs: dict
    gen_config: Any
    sync: Callable[[], None] | None


def with_bounds(
    record: DecodeRecord, call: StepInputs, matmul: MatmulRate | None, energy_note: str | None
) -> DecodeRecord:
    """``record`` with what explains its step: the profiled steps of one extra call,
    the matmul rate in the run's dtype and why energy is missing (if it is)."""
    try:
        profile = profile_steps(
            call.model, call.inputs, call.gen_config, record.new_tokens, call.sync
        )
        note = None
    except Exception as e:  # noqa: BLE001 - profiler trouble must not lose the run
        profile = None
        note = f"step attribution: profiler failed: {type(e).__name__}: {e}"[:200]
    return dataclasses.replace(
        record,
        step_profile=profile,
        matmul_tflops=matmul.tflops if matmul else None,
        matmul_dtype=matmul.dtype if matmul else None,
        matmul_method=matmul.method if matmul else None,
        energy_note=energy_note,
        load_average_1m=os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        notes=record.notes + ((note,) if note else ()),
    )
