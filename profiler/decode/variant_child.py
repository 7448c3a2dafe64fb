"""One decode variant, measured in the child process that loaded the model.

The same sequence for every variant (see :mod:`profiler.decode.variant_plan`):

1. the first call of the process, between snapshots of the allocator (CUDA reserved
   bytes and cudaMalloc segments; process RSS on CPU) and of torch.compile's own
   compile-time counters;
2. ``warm_calls`` hooked calls (the figures) and one more with logits kept (greedy
   tokens, top-1 logit and top-2 gap per position: the agreement check);
3. a first and a second call at a new prompt length (8 tokens longer): what the
   first call of every new length pays again (kernel and plan selection per
   shape, a recompilation).

Tokens are timestamped as in :mod:`profiler.decode.loop` (its streamer hook for the
``generate()`` variants, host clocks or CUDA events in the hand-written loops).
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import os
import time
from collections.abc import Callable
from typing import Any

from profiler.decode.hand_loops import GraphLoop, LoopResult, seed_loop_call, top2
from profiler.decode.hook import make_token_clock
from profiler.decode.model_facts import (
    attention_backend,
    context_length_of,
    kv_bytes_per_token,
    weight_read_bytes,
)
from profiler.decode.options import validate_decode_spec
from profiler.decode.prompt import build_inputs, prompt_ids
from profiler.decode.variant_plan import attention_of, describe
from profiler.errors import UserError
from profiler.machine.bandwidth import BandwidthResult
from profiler.records.decode import DecodeRecord
from profiler.records.decode_variant import DecodeVariantFacts
from profiler.records.job import DecodeSpec

# How much longer the prompt of the new-length probe is.
NEW_LENGTH_EXTRA = 8

Caller = Callable[[dict, bool], LoopResult]


class VariantUnavailable(Exception):
    """The variant cannot run with this model or install (the reason is the message)."""


def _gen_config(model: Any, spec: DecodeSpec, name: str) -> Any:
    """The model's generation config forced to ``new_tokens``, set for the variant."""
    from transformers import CompileConfig

    g = copy.deepcopy(model.generation_config)
    g.max_new_tokens = g.min_new_tokens = spec.new_tokens
    g.max_length = g.min_length = None
    g.num_beams = g.num_return_sequences = 1
    g.use_cache = True
    g.do_sample = spec.temperature > 0
    if g.do_sample:
        g.temperature = spec.temperature
    else:
        g.temperature = g.top_k = g.top_p = None
    if g.pad_token_id is None:
        eos = g.eos_token_id
        g.pad_token_id = eos[0] if isinstance(eos, list | tuple) and eos else eos
    if name.startswith("static"):
        g.cache_implementation = "static"
    if name == "static":
        g.disable_compile = True
    if name == "static-fullgraph":
        g.compile_config = CompileConfig(fullgraph=True)
    return g


def _generate_caller(
    model: Any, gen_config: Any, prompt_len: int, seed: int | None, sync: Any
) -> Caller:
    def call(inputs: dict, collect: bool) -> LoopResult:
        import torch

        if seed is not None:
            torch.manual_seed(seed)
        clock = make_token_clock(sync)
        # scores: the logits after generate()'s processors (EOS masked until
        # min_new_tokens), the candidates it chose among, as the hand loops do
        extra = {"return_dict_in_generate": True, "output_scores": True} if collect else {}
        if sync is not None:
            sync()
        start = time.monotonic_ns()
        out = model.generate(**inputs, generation_config=gen_config, streamer=clock, **extra)
        if sync is not None:
            sync()
        end = time.monotonic_ns()
        seqs = out.sequences if collect else out
        res = LoopResult(
            _call(start, end, clock.token_times_ns, clock.prompt_start_ns),
            [int(t) for t in seqs[0, prompt_len:]],
        )
        if collect:
            for lg in out.scores:
                t1, gap = top2(lg)
                res.top1.append(t1)
                res.gaps.append(gap)
        return res

    return call


def _call(start: int, end: int, times: list[int], prompt_start: int | None) -> Any:
    from profiler.records.decode import DecodeCall

    return DecodeCall(start, end, tuple(times), prompt_start_ns=prompt_start)


def _caller(
    model: Any, spec: DecodeSpec, name: str, device: str, prompt_len: int, sync: Any
) -> Caller:
    if name == "seed-loop":

        def seeded(inputs: dict, collect: bool) -> LoopResult:
            import torch

            if spec.seed is not None:  # as generate() calls are seeded: same samples each call
                torch.manual_seed(spec.seed)
            return seed_loop_call(model, inputs, spec.new_tokens, spec.temperature, sync, collect)

        return seeded
    if name == "graph-loop":
        if not device.startswith("cuda"):
            raise VariantUnavailable("needs CUDA graphs: CUDA devices only")
        batch = spec.batch_sizes[0]
        loop = GraphLoop(
            model, prompt_len + NEW_LENGTH_EXTRA + spec.new_tokens, batch, device, compiled=True
        )
        return lambda inputs, collect: loop.call(inputs, spec.new_tokens, collect)
    attn = attention_of(name)
    if attn is not None:
        try:
            model.set_attn_implementation(attn)
        except Exception as e:  # noqa: BLE001 - transformers refuses: the variant is listed
            raise VariantUnavailable(f"{type(e).__name__}: {e}"[:300]) from e
    return _generate_caller(model, _gen_config(model, spec, name), prompt_len, spec.seed, sync)


def _memory(device: str) -> tuple[str, int, int | None]:
    """(source, bytes, cudaMalloc segments so far) of the allocator or the process."""
    import torch

    if device.startswith("cuda"):
        stats = torch.cuda.memory_stats(device)
        return (
            "cuda reserved",
            int(torch.cuda.memory_reserved(device)),
            int(stats.get("segment.all.allocated", 0)),
        )
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return "process RSS", pages * os.sysconf("SC_PAGE_SIZE"), None


def _compile_seconds() -> tuple[float, int]:
    """(seconds, frames) torch.compile has spent compiling in this process so far."""
    try:
        from torch._dynamo.utils import get_compilation_metrics

        metrics = list(get_compilation_metrics())
    except Exception:  # noqa: BLE001 - internal API: absent means nothing measured
        return 0.0, 0
    return sum(getattr(m, "entire_frame_compile_time_s", 0) or 0 for m in metrics), len(metrics)


def run_decode_variant(
    model: Any,
    tokenizer: Any,
    spec: DecodeSpec,
    *,
    name: str,
    device: str,
    bandwidth: BandwidthResult | None,
) -> tuple[list[DecodeRecord], DecodeVariantFacts]:
    """Measure one variant (module docstring); an unavailable one comes back with no
    decode record and its reason in ``skip_reason``."""
    validate_decode_spec(spec)
    sync = _sync(device)
    prompt_len = len(prompt_ids(tokenizer, spec))
    validate_decode_spec(
        spec, context_length=context_length_of(model.config), prompt_length=prompt_len
    )
    facts = DecodeVariantFacts(name=name, description=describe(name))
    try:
        caller = _caller(model, spec, name, device, prompt_len, sync)
    except VariantUnavailable as e:
        return [], dataclasses.replace(facts, skip_reason=str(e))
    inputs = build_inputs(tokenizer, spec, spec.batch_sizes[0], device)
    # As in profile_decode: no full collection may land inside a timed call.
    gc.collect()
    gc.freeze()
    return _measure(model, tokenizer, spec, device, bandwidth, caller, inputs, facts)


def _sync(device: str) -> Callable[[], None] | None:
    import torch

    if not device.startswith("cuda"):
        return None
    dev = torch.device(device)
    return lambda: torch.cuda.synchronize(dev)


def _measure(
    model: Any,
    tokenizer: Any,
    spec: DecodeSpec,
    device: str,
    bandwidth: BandwidthResult | None,
    caller: Caller,
    inputs: dict,
    facts: DecodeVariantFacts,
) -> tuple[list[DecodeRecord], DecodeVariantFacts]:
    import torch

    source, mem0, seg0 = _memory(device)
    c0, g0 = _compile_seconds()
    first = caller(inputs, False)
    _, mem1, seg1 = _memory(device)
    c1, g1 = _compile_seconds()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)
    warm = [caller(inputs, False) for _ in range(spec.warm_calls)]
    _, mem2, seg2 = _memory(device)
    peak = int(torch.cuda.max_memory_allocated(device)) if device.startswith("cuda") else None
    probe = caller(inputs, True)
    facts = dataclasses.replace(
        facts,
        tokens=tuple(probe.tokens),
        top1_logits=tuple(probe.top1),
        top2_gaps=tuple(probe.gaps),
        logits_dtype=str(getattr(model, "dtype", "")).replace("torch.", "") or None,
        compile_first_s=c1 - c0,
        compile_graphs_first=g1 - g0,
        memory_source=source,
        memory_before=mem0,
        memory_after_first=mem1,
        memory_after_warm=mem2,
        segments_first=None if seg0 is None or seg1 is None else seg1 - seg0,
        segments_warm=None if seg1 is None or seg2 is None else seg2 - seg1,
        warm_call_s=tuple(r.call.wall_s for r in warm),
    )
    facts = _new_length(model, tokenizer, spec, device, caller, facts)
    compiled = _compile_seconds()[1] > 0 or hasattr(model, "_compiled_call")
    facts = dataclasses.replace(
        facts, compiled=compiled, notes=(*facts.notes, *_compile_notes(model))
    )
    prompt_len = int(inputs["input_ids"].shape[-1])
    record = _record(model, spec, device, bandwidth, first, warm, peak, prompt_len)
    return [record], facts


def _compile_notes(model: Any) -> list[str]:
    """What transformers compiled on its own inside generate(), when it did."""
    cfg = getattr(model, "_last_compile_config", None)
    if not hasattr(model, "_compiled_call"):
        return []
    how = cfg.to_dict() if cfg is not None and hasattr(cfg, "to_dict") else "default"
    return [f"generate() compiled the decoding forward itself: torch.compile({how})"]


def _new_length(
    model: Any,
    tokenizer: Any,
    spec: DecodeSpec,
    device: str,
    caller: Caller,
    facts: DecodeVariantFacts,
) -> DecodeVariantFacts:
    """A first and a second call at a prompt ``NEW_LENGTH_EXTRA`` tokens longer."""
    length = len(prompt_ids(tokenizer, spec)) + NEW_LENGTH_EXTRA
    context = context_length_of(model.config)
    if context is not None and length + spec.new_tokens > context:
        note = "new-length probe skipped: a longer prompt would pass the model's context"
        return dataclasses.replace(facts, notes=(*facts.notes, note))
    longer = dataclasses.replace(spec, prompt=None, prompt_tokens=length, chat=False)
    inputs = build_inputs(tokenizer, longer, spec.batch_sizes[0], device)
    c0, _ = _compile_seconds()
    first = caller(inputs, False)
    c1, _ = _compile_seconds()
    second = caller(inputs, False)
    return dataclasses.replace(
        facts,
        new_length_prompt=length,
        new_length_first_s=first.call.wall_s,
        new_length_warm_s=second.call.wall_s,
        compile_new_length_s=c1 - c0,
    )


def _record(
    model: Any,
    spec: DecodeSpec,
    device: str,
    bandwidth: BandwidthResult | None,
    first: LoopResult,
    warm: list[LoopResult],
    peak: int | None,
    prompt_len: int,
) -> DecodeRecord:
    import torch

    n = spec.new_tokens
    for r in (first, *warm):
        if len(r.call.token_times_ns) != n:
            raise UserError(
                f"the variant produced {len(r.call.token_times_ns)} of {n} timed tokens: a "
                "stopping rule in the model's generation_config ended it early"
            )
    dtype = getattr(model, "dtype", None) or next(model.parameters()).dtype
    read, _ = weight_read_bytes(model)
    return DecodeRecord(
        batch_size=spec.batch_sizes[0],
        prompt_tokens=prompt_len,
        new_tokens=n,
        temperature=spec.temperature,
        seed=spec.seed,
        first_call=first.call,
        calls=tuple(r.call for r in warm),
        weight_bytes=read,
        kv_bytes_per_token=kv_bytes_per_token(
            model.config, torch.empty((), dtype=dtype).element_size()
        ),
        memory_bandwidth_gbps=bandwidth.gbps if bandwidth else None,
        bandwidth_source=bandwidth.method if bandwidth else None,
        peak_gpu_allocated_bytes=peak,
        attention_backend=attention_backend(model, device),
    )
