"""Per-token decode profiling inside the real ``generate()`` call.

What is measured, and when each timestamp is taken
--------------------------------------------------
Every timed call is one plain ``model.generate(...)`` with a streamer attached (the
hook, :func:`make_token_clock`). Timestamps are ``time.monotonic_ns()``:

``start_ns``
    just before ``generate()`` is entered, after the device has finished all earlier
    work (``torch.cuda.synchronize()`` on CUDA).
``prompt_start_ns``
    ``generate()`` hands the prompt to the streamer (``streamer.put(input_ids)``)
    once it has validated its arguments and prepared the inputs, right before the
    prefill forward pass. ``prompt_start_ns - start_ns`` is generate()'s own setup.
``token_times_ns[i]``
    ``generate()`` hands new token ``i`` (one id per sequence) to the streamer. In
    transformers 5.17 and 5.23 this happens in the decoding loop after the token was
    selected, appended and checked against the stopping criteria, through
    ``streamer.put(tokens.cpu())``: the copy to the host waits for the token, and
    the hook calls ``torch.cuda.synchronize()`` before reading the clock so the
    timestamp is after all device work queued so far, whatever the transformers
    version does. Token 0 comes out of the prefill pass, so
    ``token_times_ns[0] - start_ns`` is the time to first token (TTFT, setup +
    prefill + first sampling). Interval ``i`` (``token_times_ns[i+1] -
    token_times_ns[i]``) is one decode step: the forward pass that feeds token ``i``
    at position ``prompt + i`` and reads ``prompt + i + 1`` KV-cache positions, plus
    sampling and the loop's bookkeeping.
``end_ns``
    after ``generate()`` returned and the device is idle again.

The first ``generate()`` at a shape is kept apart (``first_call``): one-time work
(kernel loading, cuDNN building an attention plan per new sequence length, allocator
growth) lands there. On an H100 (torch 2.11, transformers 5.17, a distilgpt2-shaped
fp16 model, 128 tokens) the first call's median step was 49.7 ms against 4.5 ms warm,
with SDPA running ``aten::_cudnn_attention_forward``.

Streamers work at any batch size: ``BaseStreamer`` has no batch check (only
``TextStreamer`` refuses batch > 1) and ``generate()`` calls ``put`` with a tensor of
shape ``(batch,)`` per step in both versions (checked in their sources), so no
logits processor is needed. On Apple ``mps`` transformers defers the stop check by
one step and streams each token one step late: timestamps there are one step behind.

Intervals never cross calls: each :class:`~profiler.records.decode.DecodeCall` owns its
timestamps and all statistics are built from per-call intervals.

Torch and transformers are imported inside functions, so this module can be imported
by the CLI at no cost.
"""

from __future__ import annotations

import copy
import gc
import math
import statistics
import time
import warnings
import weakref
from collections.abc import Callable
from typing import Any

from profiler.analysis.decode_metrics import (
    HOOK_BUDGET_FRACTION,
    consistency,
    hook_overhead,
    intervals,
    token_latency_stats,
)
from profiler.decode.hook import make_token_clock
from profiler.decode.model_facts import (
    attention_backend,
    cache_nbytes,
    context_length_of,
    decode_skip_reason,
    kv_bytes_per_token,
    weight_read_bytes,
)
from profiler.decode.options import DecodeOptions
from profiler.decode.prompt import build_inputs, prompt_ids
from profiler.errors import UserError
from profiler.machine.bandwidth import BandwidthResult
from profiler.records.decode import DecodeCall, DecodeRecord


class _ProcessState:
    """What this process has already generated through llmprof (first-call notes)."""

    generate_calls = 0
    # per live model: (batch, prompt length, new tokens) already run, i.e. warm shapes
    shapes_seen: weakref.WeakKeyDictionary[Any, set[tuple[int, int, int]]] = (
        weakref.WeakKeyDictionary()
    )


def _generation_config(model: Any, options: DecodeOptions, tokenizer: Any) -> tuple[Any, str]:
    """A private copy of the model's generation config, forced to ``new_tokens``."""
    gc_ = copy.deepcopy(model.generation_config)
    n = options.new_tokens
    gc_.max_new_tokens = n
    gc_.min_new_tokens = n  # EOS gets -inf logits until n tokens exist: fixed length
    gc_.max_length = None
    gc_.min_length = None  # a set min_length makes generate() warn next to min_new_tokens
    gc_.num_beams = 1
    gc_.num_return_sequences = 1
    gc_.use_cache = True
    gc_.return_dict_in_generate = False
    gc_.do_sample = options.do_sample
    if options.do_sample:
        gc_.temperature = options.temperature
        how = (
            f"sampled: temperature {options.temperature}, top_k {gc_.top_k}, top_p {gc_.top_p}, "
            f"seed {options.seed} set with torch.manual_seed before every call"
        )
    else:
        # Greedy: drop sampling knobs so generate() does not warn about unused ones.
        gc_.temperature = None
        gc_.top_k = None
        gc_.top_p = None
        how = "greedy (temperature 0)"
    if gc_.pad_token_id is None:
        eos = gc_.eos_token_id
        if eos is None and tokenizer is not None:
            eos = getattr(tokenizer, "eos_token_id", None)
        if isinstance(eos, (list, tuple)):
            eos = eos[0] if eos else None
        gc_.pad_token_id = eos
    return gc_, how


def _observed_attention_ops(model: Any, inputs: dict, gen_config: Any) -> list[str]:
    """Names of the attention kernels torch ran during a 2-token generate()."""
    from torch.profiler import ProfilerActivity, profile

    short = copy.deepcopy(gen_config)
    short.max_new_tokens = short.min_new_tokens = 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch 2.11 warns that it clears events per cycle
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            model.generate(**inputs, generation_config=short)
    names = {e.key for e in prof.key_averages()}
    hits = sorted(n for n in names if "attention" in n.lower() and n.startswith("aten::"))
    specific = [n for n in hits if n.startswith("aten::_")]
    return specific or hits


def profile_decode(
    model: Any,
    tokenizer: Any,
    options: DecodeOptions,
    *,
    device: str,
    bandwidth: BandwidthResult | None,
) -> list[DecodeRecord]:
    """Profile ``generate()`` at each batch size of ``options``; one record per size.

    Per batch size: one first call (untimed in the statistics, kept as
    ``first_call``), then ``warm_calls`` calls with the hook interleaved with as many
    without it (``plain_calls_s``; interleaving spreads slow drift over both), then one
    untimed probe with ``return_dict_in_generate=True`` that returns the KV cache for
    the size cross-check and, under the torch profiler, names the attention kernel.
    Raises :class:`UserError` for bad options, a model that cannot generate (check
    :func:`decode_skip_reason` first to skip instead) or a call that stopped early.
    """
    import torch

    options.validate()
    reason = decode_skip_reason(model)
    if reason is not None:
        raise UserError(reason)
    on_cuda = device.startswith("cuda")
    if on_cuda and not torch.cuda.is_available():
        raise UserError(f"device {device} asked for but CUDA is not available: use --device cpu")
    sync: Callable[[], None] | None = None
    if on_cuda:
        cuda_dev = torch.device(device)

        def sync() -> None:
            torch.cuda.synchronize(cuda_dev)

    base_ids = prompt_ids(tokenizer, options)
    prompt_len = len(base_ids)
    ctx = context_length_of(model.config)
    options.validate(context_length=ctx, prompt_length=prompt_len)

    gen_config, how = _generation_config(model, options, tokenizer)
    dtype = getattr(model, "dtype", None) or next(model.parameters()).dtype
    dtype_bytes = torch.empty((), dtype=dtype).element_size()
    kv_per_token = kv_bytes_per_token(model.config, dtype_bytes)
    w_read, w_lookup = weight_read_bytes(model)
    backend = attention_backend(model, device)
    n = options.new_tokens

    def one_call(inputs: dict, hooked: bool, return_dict: bool = False) -> tuple[Any, Any]:
        """Run generate() once; returns (DecodeCall or wall seconds, output)."""
        gc.collect()  # cheap after gc.freeze(): clears the previous call's garbage
        if options.seed is not None:
            torch.manual_seed(options.seed)
        clock = make_token_clock(sync) if hooked else None
        kwargs: dict[str, Any] = {"generation_config": gen_config}
        if clock is not None:
            kwargs["streamer"] = clock
        if return_dict:
            kwargs["return_dict_in_generate"] = True
        if sync is not None:
            sync()
        start = time.monotonic_ns()
        out = model.generate(**inputs, **kwargs)
        if sync is not None:
            sync()
        end = time.monotonic_ns()
        _ProcessState.generate_calls += 1
        seqs = out.sequences if return_dict else out
        got = int(seqs.shape[-1]) - prompt_len
        if got != n:
            raise UserError(
                f"generate() produced {got} of {n} new tokens at batch {seqs.shape[0]}: a "
                "stopping rule other than EOS ended it (stop strings, max_time or a custom "
                "criterion in the model's generation_config): remove it to profile decode"
            )
        if clock is not None and len(clock.token_times_ns) != n:
            raise UserError(
                f"the token hook saw {len(clock.token_times_ns)} of {n} tokens: this "
                "transformers version streams tokens differently; decode timing is not "
                "supported with it"
            )
        if clock is None:
            return (end - start) / 1e9, out
        call = DecodeCall(
            start_ns=start,
            end_ns=end,
            token_times_ns=tuple(clock.token_times_ns),
            prompt_start_ns=clock.prompt_start_ns,
        )
        return (call, clock.self_ns), out

    records: list[DecodeRecord] = []
    # A full garbage collection walks every object torch and transformers created
    # (0.2-0.4 s here); landing inside a call it would show up as one huge token
    # interval. Collect once and freeze the survivors, so the collections that still
    # run during generate() only walk the garbage generate() itself makes.
    already_frozen = gc.get_freeze_count() > 0
    gc.collect()
    gc.freeze()
    try:
        for batch in options.batch_sizes:
            inputs = build_inputs(tokenizer, options, batch, device)
            notes: list[str] = [how, f"prompt {prompt_len} tokens, {n} new tokens (min = max)"]

            earlier = _ProcessState.generate_calls
            shape = (batch, prompt_len, n)
            seen = _ProcessState.shapes_seen.setdefault(model, set())
            shape_seen = shape in seen
            (first, _), _ = one_call(inputs, hooked=True)
            seen.add(shape)
            if earlier == 0:
                notes.append("first_call: the first generate() of this process")
            elif shape_seen:
                notes.append(
                    f"first_call: NOT cold: this model already ran batch {batch} with these "
                    "lengths in this process, so per-shape warm-up was paid before"
                )
            else:
                notes.append(
                    f"first_call: the first generate() of this model at batch {batch} with "
                    f"these lengths; {earlier} earlier generate() calls in this process "
                    "already paid the once-per-process costs"
                )

            if on_cuda:
                torch.cuda.reset_peak_memory_stats(cuda_dev)
            calls: list[DecodeCall] = []
            plain: list[float] = []
            hook_self_ns = 0
            last_out = None
            for _ in range(options.warm_calls):
                (call, self_ns), last_out = one_call(inputs, hooked=True)
                calls.append(call)
                hook_self_ns += self_ns
                wall, _ = one_call(inputs, hooked=False)
                plain.append(wall)
            peak = int(torch.cuda.max_memory_allocated(cuda_dev)) if on_cuda else None

            text = None
            if last_out is not None:
                text = tokenizer.decode(last_out[0, prompt_len:], skip_special_tokens=True)
            del last_out

            # Probe (untimed): the cache that generate() really built, and the kernel names.
            kv_formula = kv_per_token * batch * (prompt_len + n - 1) if kv_per_token else None
            kv_measured = None
            try:
                (_, _), probe = one_call(inputs, hooked=True, return_dict=True)
                measured = cache_nbytes(getattr(probe, "past_key_values", None))
                del probe
                if measured is not None:
                    kv_measured, positions = measured
                    if kv_formula is None:
                        notes.append(
                            "kv_cache_bytes: measured from the returned cache (no config formula)"
                        )
                    elif kv_measured == kv_formula:
                        notes.append(
                            f"kv_cache_bytes: returned cache holds {positions} positions "
                            f"(prompt + new - 1: the last token is never fed back) and matches "
                            f"the config formula ({kv_formula} bytes)"
                        )
                    else:
                        notes.append(
                            f"kv_cache_bytes: returned cache holds {kv_measured} bytes, "
                            f"{positions} positions; the config formula gives {kv_formula} "
                            "(sliding windows or an unusual cache layout): the measured value "
                            "is kept, the MBU uses the formula per position"
                        )
            except UserError:
                raise
            except Exception as e:  # noqa: BLE001 - the cross-check is optional
                notes.append(f"kv cache cross-check failed: {type(e).__name__}: {e}"[:200])
            try:
                ops = _observed_attention_ops(model, inputs, gen_config)
                seen = ", ".join(ops) if ops else "no aten attention op (matmul + softmax)"
                backend_full = f"{backend}; ran: {seen}"
            except Exception as e:  # noqa: BLE001 - profiler trouble must not lose the run
                backend_full = backend
                notes.append(f"attention kernel not observed: {type(e).__name__}"[:200])

            notes.append(
                f"weight_bytes: {w_read} bytes, each unique parameter once (tied embedding/"
                f"lm_head once, lm_head read in full every step); {w_lookup} bytes of lookup-only "
                "embedding tables left out (a step reads one row of them per sequence)"
            )
            if kv_per_token is None:
                notes.append(
                    "kv_bytes_per_token: config lacks layers/heads/head_dim: MBU not computed"
                )
            if not on_cuda:
                notes.append(f"cpu: torch uses {torch.get_num_threads()} intra-op thread(s)")
            notes.append(
                "gc: collected and frozen before the first call (a full collection cannot "
                "land inside a token interval); each call starts after a young-object collect"
            )

            record = DecodeRecord(
                batch_size=batch,
                prompt_tokens=prompt_len,
                new_tokens=n,
                temperature=options.temperature,
                seed=options.seed,
                first_call=first,
                calls=tuple(calls),
                plain_calls_s=tuple(plain),
                weight_bytes=w_read,
                kv_bytes_per_token=kv_per_token,
                memory_bandwidth_gbps=bandwidth.gbps if bandwidth else None,
                bandwidth_source=bandwidth.method if bandwidth else None,
                peak_gpu_allocated_bytes=peak,
                kv_cache_bytes=kv_measured if kv_measured is not None else kv_formula,
                attention_backend=backend_full,
                text=text,
                notes=(),
            )
            notes.extend(_summary_notes(record, hook_self_ns))
            records.append(_with_notes(record, tuple(notes)))
    finally:
        if not already_frozen:
            gc.unfreeze()
    return records


def _with_notes(record: DecodeRecord, notes: tuple[str, ...]) -> DecodeRecord:
    import dataclasses

    return dataclasses.replace(record, notes=notes)


def _summary_notes(record: DecodeRecord, hook_self_ns: int) -> list[str]:
    """Consistency, hook cost and first-call comparison as one-line notes."""
    out: list[str] = []
    errs = [consistency(c) for c in record.calls]
    out.append(
        f"consistency: |ttft + sum(intervals) - wall| / wall = max {max(errs):.3%} over "
        f"{len(errs)} warm calls (the rest is generate()'s tail after the last token)"
    )
    decode_s = sum(intervals(record.calls))
    ttft_s = sum(c.ttft_s for c in record.calls)
    tokens = sum(len(c.token_times_ns) for c in record.calls)
    if tokens:
        share = hook_self_ns / 1e9 / (decode_s + ttft_s) if decode_s + ttft_s > 0 else 0.0
        out.append(
            f"hook self-time: {hook_self_ns / tokens / 1e3:.1f} us per token, {share:.3%} of "
            f"ttft + decode time ({'within' if share < HOOK_BUDGET_FRACTION else 'OVER'} the "
            f"{HOOK_BUDGET_FRACTION:.0%} budget); an upper bound: on CUDA it includes the "
            "synchronize, which mostly waits for device work the loop waits for anyway"
        )
    ovh = hook_overhead(record)
    if ovh is not None:
        out.append(
            f"hook overhead: {ovh:+.2%} wall, median of {len(record.calls)} hooked vs "
            f"{len(record.plain_calls_s)} plain calls, interleaved (noise of this size "
            "is run-to-run variation, not the hook)"
        )
    if record.first_call is not None and record.first_call.intervals_s and record.calls:
        first_med = statistics.median(record.first_call.intervals_s)
        warm_med = token_latency_stats(record.calls).p50
        ratio = first_med / warm_med if warm_med > 0 else math.inf
        warm_ttft = statistics.median(c.ttft_s for c in record.calls)
        out.append(
            f"first_call vs warm: median interval {first_med * 1e3:.3f} ms vs "
            f"{warm_med * 1e3:.3f} ms ({ratio:.2f}x); TTFT {record.first_call.ttft_s * 1e3:.2f} "
            f"ms vs {warm_ttft * 1e3:.2f} ms"
        )
    return out
