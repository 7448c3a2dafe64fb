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
import dataclasses
import gc
import time
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from profiler.analysis.decode_metrics import (
    HOOK_BUDGET_FRACTION,
    call_step_s,
    consistency,
    decode_figures,
    record_hook_overhead,
)
from profiler.analysis.decode_text import hook_overhead_line
from profiler.decode.hook import make_token_clock
from profiler.decode.model_facts import (
    attention_backend,
    cache_nbytes,
    context_length_of,
    decode_skip_reason,
    kv_bytes_per_token,
    weight_read_bytes,
)
from profiler.decode.options import sweep_specs, validate_decode_spec
from profiler.decode.prompt import build_inputs, prompt_ids
from profiler.decode.step_probe import StepInputs, with_bounds
from profiler.errors import UserError
from profiler.machine.bandwidth import BandwidthResult
from profiler.machine.matmul import MatmulRate
from profiler.measure.energy import EnergyMeter, energy_between
from profiler.records.decode import DecodeCall, DecodeRecord
from profiler.records.job import DecodeSpec


class _ProcessState:
    """What this process has already generated through llmprof (first-call notes)."""

    generate_calls = 0
    # per live model: (batch, prompt length, new tokens) already run, i.e. warm shapes
    shapes_seen: weakref.WeakKeyDictionary[Any, set[tuple[int, int, int]]] = (
        weakref.WeakKeyDictionary()
    )


def _generation_config(model: Any, spec: DecodeSpec, tokenizer: Any) -> tuple[Any, str]:
    """A private copy of the model's generation config, forced to ``new_tokens``."""
    gc_ = copy.deepcopy(model.generation_config)
    n = spec.new_tokens
    gc_.max_new_tokens = n
    gc_.min_new_tokens = n  # EOS gets -inf logits until n tokens exist: fixed length
    gc_.max_length = None
    gc_.min_length = None  # a set min_length makes generate() warn next to min_new_tokens
    gc_.num_beams = 1
    gc_.num_return_sequences = 1
    gc_.use_cache = True
    gc_.return_dict_in_generate = False
    sample = spec.temperature > 0
    gc_.do_sample = sample
    if sample:
        gc_.temperature = spec.temperature
        how = (
            f"sampled: temperature {spec.temperature}, top_k {gc_.top_k}, top_p {gc_.top_p}, "
            f"seed {spec.seed} set with torch.manual_seed before every call"
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


@dataclass(frozen=True)
class _Decoder:
    """One model's ``generate()`` with what every call of a profile shares."""

    model: Any
    tokenizer: Any
    spec: DecodeSpec
    device: str
    gen_config: Any
    how: str  # greedy or sampled, as a note
    prompt_len: int
    sync: Callable[[], None] | None  # device synchronize on CUDA, else None
    energy: EnergyMeter | None = None  # NVML energy counter around each timed call

    def _generate(self, inputs: dict, clock: Any, return_dict: bool) -> tuple[int, int, Any]:
        """(start ns, end ns, output) of one generate(), checked for its token count."""
        import torch

        gc.collect()  # cheap after gc.freeze(): clears the previous call's garbage
        if self.spec.seed is not None:
            torch.manual_seed(self.spec.seed)
        kwargs: dict[str, Any] = {"generation_config": self.gen_config}
        if clock is not None:
            kwargs["streamer"] = clock
        if return_dict:
            kwargs["return_dict_in_generate"] = True
        if self.sync is not None:
            self.sync()
        start = time.monotonic_ns()
        out = self.model.generate(**inputs, **kwargs)
        if self.sync is not None:
            self.sync()
        end = time.monotonic_ns()
        _ProcessState.generate_calls += 1
        n = self.spec.new_tokens
        seqs = out.sequences if return_dict else out
        got = int(seqs.shape[-1]) - self.prompt_len
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
        return start, end, out

    def timed(self, inputs: dict) -> tuple[DecodeCall, int, Any]:
        """A hooked call: its timestamps, the hook's own time (ns) and the output."""
        clock = make_token_clock(self.sync)
        e0 = self.energy.read_j() if self.energy is not None else None
        start, end, out = self._generate(inputs, clock, return_dict=False)
        e1 = self.energy.read_j() if e0 is not None and self.energy is not None else None
        call = DecodeCall(
            start_ns=start,
            end_ns=end,
            token_times_ns=tuple(clock.token_times_ns),
            prompt_start_ns=clock.prompt_start_ns,
            energy_j=energy_between(e0, e1),
        )
        return call, clock.self_ns, out

    def plain(self, inputs: dict) -> float:
        """Wall seconds of the same call without the hook."""
        start, end, _ = self._generate(inputs, None, return_dict=False)
        return (end - start) / 1e9

    def probe(self, inputs: dict) -> Any:
        """An untimed call that returns generate()'s output object (with its cache)."""
        return self._generate(inputs, None, return_dict=True)[2]


def _device_sync(device: str) -> Callable[[], None] | None:
    import torch

    if not device.startswith("cuda"):
        return None
    if not torch.cuda.is_available():
        raise UserError(f"device {device} asked for but CUDA is not available: use --device cpu")
    cuda_dev = torch.device(device)

    def sync() -> None:
        torch.cuda.synchronize(cuda_dev)

    return sync


@dataclass(frozen=True)
class _Facts:
    """What the model's shape says about the bytes a step reads."""

    kv_per_token: int | None
    weight_bytes: int
    lookup_bytes: int
    backend: str

    @classmethod
    def of(cls, model: Any, device: str) -> _Facts:
        import torch

        dtype = getattr(model, "dtype", None) or next(model.parameters()).dtype
        dtype_bytes = torch.empty((), dtype=dtype).element_size()
        read, lookup = weight_read_bytes(model)
        return cls(
            kv_per_token=kv_bytes_per_token(model.config, dtype_bytes),
            weight_bytes=read,
            lookup_bytes=lookup,
            backend=attention_backend(model, device),
        )


def profile_decode(
    model: Any,
    tokenizer: Any,
    spec: DecodeSpec,
    *,
    device: str,
    bandwidth: BandwidthResult | None,
    matmul: MatmulRate | None = None,
) -> list[DecodeRecord]:
    """Profile ``generate()`` at each batch size of ``spec``; one record per size.

    Per batch size: one first call (untimed in the statistics, kept as
    ``first_call``), then ``warm_calls`` calls with the hook interleaved with as many
    without it (``plain_calls_s``; interleaving spreads slow drift over both), then one
    untimed probe with ``return_dict_in_generate=True`` that returns the KV cache for
    the size cross-check and, under the torch profiler, names the attention kernel.
    Raises :class:`UserError` for a bad spec, a model that cannot generate (check
    :func:`decode_skip_reason` first to skip instead) or a call that stopped early.
    """
    validate_decode_spec(spec)
    if spec.prompt_sweep:  # one profile per prompt length, each its own records
        kw: dict[str, Any] = {"device": device, "bandwidth": bandwidth, "matmul": matmul}
        return [r for one in sweep_specs(spec) for r in profile_decode(model, tokenizer, one, **kw)]
    reason = decode_skip_reason(model)
    if reason is not None:
        raise UserError(reason)
    sync = _device_sync(device)
    prompt_len = len(prompt_ids(tokenizer, spec))
    validate_decode_spec(
        spec, context_length=context_length_of(model.config), prompt_length=prompt_len
    )
    gen_config, how = _generation_config(model, spec, tokenizer)
    energy = EnergyMeter(device)
    decoder = _Decoder(model, tokenizer, spec, device, gen_config, how, prompt_len, sync, energy)
    facts = _Facts.of(model, device)
    # A full garbage collection walks every object torch and transformers created
    # (0.2-0.4 s here); landing inside a call it would show up as one huge token
    # interval. Collect once and freeze the survivors, so the collections that still
    # run during generate() only walk the garbage generate() itself makes.
    already_frozen = gc.get_freeze_count() > 0
    gc.collect()
    gc.freeze()
    try:
        return [
            with_bounds(
                _profile_batch(decoder, facts, batch, bandwidth),
                StepInputs(model, build_inputs(tokenizer, spec, batch, device), gen_config, sync),
                matmul,
                energy.reason,
            )
            for batch in spec.batch_sizes
        ]
    finally:
        if not already_frozen:
            gc.unfreeze()


def _first_call(decoder: _Decoder, inputs: dict, batch: int) -> tuple[DecodeCall, str]:
    """The first call at this shape, and a note on what it had already paid."""
    earlier = _ProcessState.generate_calls
    shape = (batch, decoder.prompt_len, decoder.spec.new_tokens)
    seen = _ProcessState.shapes_seen.setdefault(decoder.model, set())
    shape_seen = shape in seen
    first, _, _ = decoder.timed(inputs)
    seen.add(shape)
    if earlier == 0:
        return first, "first_call: the first generate() of this process"
    if shape_seen:
        return first, (
            f"first_call: NOT cold: this model already ran batch {batch} with these "
            "lengths in this process, so per-shape warm-up was paid before"
        )
    return first, (
        f"first_call: the first generate() of this model at batch {batch} with "
        f"these lengths; {earlier} earlier generate() calls in this process "
        "already paid the once-per-process costs"
    )


def _kv_cache_bytes(
    decoder: _Decoder, inputs: dict, kv_formula: int | None, notes: list[str]
) -> int | None:
    """The KV cache generate() really built (untimed probe), checked against the formula."""
    try:
        probe = decoder.probe(inputs)
        measured = cache_nbytes(getattr(probe, "past_key_values", None))
        del probe
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - the cross-check is optional
        notes.append(f"kv cache cross-check failed: {type(e).__name__}: {e}"[:200])
        return kv_formula
    if measured is None:
        return kv_formula
    kv_measured, positions = measured
    if kv_formula is None:
        notes.append("kv_cache_bytes: measured from the returned cache (no config formula)")
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
    return kv_measured


def _attention_seen(decoder: _Decoder, inputs: dict, backend: str, notes: list[str]) -> str:
    try:
        ops = _observed_attention_ops(decoder.model, inputs, decoder.gen_config)
    except Exception as e:  # noqa: BLE001 - profiler trouble must not lose the run
        notes.append(f"attention kernel not observed: {type(e).__name__}"[:200])
        return backend
    seen = ", ".join(ops) if ops else "no aten attention op (matmul + softmax)"
    return f"{backend}; ran: {seen}"


def _fact_notes(facts: _Facts, device: str) -> list[str]:
    import torch

    notes = [
        f"weight_bytes: {facts.weight_bytes} bytes, each unique parameter once (tied "
        "embedding/lm_head once, lm_head read in full every step); "
        f"{facts.lookup_bytes} bytes of lookup-only embedding tables left out (a step "
        "reads one row of them per sequence)"
    ]
    if facts.kv_per_token is None:
        notes.append("kv_bytes_per_token: config lacks layers/heads/head_dim: MBU not computed")
    if not device.startswith("cuda"):
        notes.append(f"cpu: torch uses {torch.get_num_threads()} intra-op thread(s)")
    notes.append(
        "gc: collected and frozen before the first call (a full collection cannot "
        "land inside a token interval); each call starts after a young-object collect"
    )
    return notes


def _profile_batch(
    decoder: _Decoder, facts: _Facts, batch: int, bandwidth: BandwidthResult | None
) -> DecodeRecord:
    """First call, warm calls (hooked and plain, interleaved) and the probes at one size."""
    import torch

    spec, n, prompt_len = decoder.spec, decoder.spec.new_tokens, decoder.prompt_len
    on_cuda = decoder.sync is not None
    inputs = build_inputs(decoder.tokenizer, spec, batch, decoder.device)
    first, first_note = _first_call(decoder, inputs, batch)
    notes = [decoder.how, f"prompt {prompt_len} tokens, {n} new tokens (min = max)", first_note]
    if on_cuda:
        torch.cuda.reset_peak_memory_stats(decoder.device)
    calls: list[DecodeCall] = []
    plain: list[float] = []
    hook_self_ns = 0
    last_out = None
    for _ in range(spec.warm_calls):
        call, self_ns, last_out = decoder.timed(inputs)
        calls.append(call)
        hook_self_ns += self_ns
        plain.append(decoder.plain(inputs))
    peak = int(torch.cuda.max_memory_allocated(decoder.device)) if on_cuda else None
    text = None
    if last_out is not None:
        text = decoder.tokenizer.decode(last_out[0, prompt_len:], skip_special_tokens=True)
    del last_out
    kv_formula = facts.kv_per_token * batch * (prompt_len + n - 1) if facts.kv_per_token else None
    kv_cache = _kv_cache_bytes(decoder, inputs, kv_formula, notes)
    backend = _attention_seen(decoder, inputs, facts.backend, notes)
    notes.extend(_fact_notes(facts, decoder.device))
    record = DecodeRecord(
        batch_size=batch,
        prompt_tokens=prompt_len,
        new_tokens=n,
        temperature=spec.temperature,
        seed=spec.seed,
        first_call=first,
        calls=tuple(calls),
        plain_calls_s=tuple(plain),
        weight_bytes=facts.weight_bytes,
        kv_bytes_per_token=facts.kv_per_token,
        memory_bandwidth_gbps=bandwidth.gbps if bandwidth else None,
        bandwidth_source=bandwidth.method if bandwidth else None,
        peak_gpu_allocated_bytes=peak,
        kv_cache_bytes=kv_cache,
        attention_backend=backend,
        text=text,
    )
    notes.extend(_summary_notes(record, hook_self_ns))
    return dataclasses.replace(record, notes=tuple(notes))


def _summary_notes(record: DecodeRecord, hook_self_ns: int) -> list[str]:
    """Consistency, hook cost and first-call comparison of one record, as notes."""
    out: list[str] = []
    errs = [consistency(c) for c in record.calls]
    if errs:
        out.append(
            f"consistency: |ttft + sum(intervals) - wall| / wall = max {max(errs):.3%} over "
            f"{len(errs)} warm calls (the rest is generate()'s tail after the last token)"
        )
    # ttft + decode of each call: from entering generate() to its last token
    timed_s = sum(
        (c.token_times_ns[-1] - c.start_ns) / 1e9 for c in record.calls if c.token_times_ns
    )
    tokens = sum(len(c.token_times_ns) for c in record.calls)
    if tokens:
        share = hook_self_ns / 1e9 / timed_s if timed_s > 0 else 0.0
        out.append(
            f"hook self-time: {hook_self_ns / tokens / 1e3:.1f} us per token, {share:.3%} of "
            f"ttft + decode time ({'within' if share < HOOK_BUDGET_FRACTION else 'OVER'} the "
            f"{HOOK_BUDGET_FRACTION:.0%} budget); an upper bound: on CUDA it includes the "
            "synchronize, which mostly waits for device work the loop waits for anyway"
        )
    hook = record_hook_overhead([record])
    if hook is not None:
        out.append(hook_overhead_line(hook))
    warm = decode_figures([record])
    first = record.first_call
    first_step = call_step_s(first) if first is not None else None
    if first is not None and first_step is not None and warm.step and warm.ttft:
        out.append(
            f"first_call vs warm: step {first_step * 1e3:.3f} ms vs "
            f"{warm.step.median * 1e3:.3f} ms ({first_step / warm.step.median:.2f}x); TTFT "
            f"{first.ttft_s * 1e3:.2f} ms vs {warm.ttft.median * 1e3:.2f} ms"
        )
    return out
