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

Intervals never cross calls: each :class:`~profiler.records.DecodeCall` owns its
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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from profiler.bandwidth import BandwidthResult
from profiler.errors import UserError
from profiler.records import DecodeCall, DecodeRecord
from profiler.stats import percentile

# The hook must cost less than this fraction of decode time (issue requirement).
HOOK_BUDGET_FRACTION = 0.02

DEFAULT_PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."

# Source text for --prompt-tokens N: tokenized, then repeated or cut to exactly N ids,
# so the prompt length is the same for every tokenizer and every run.
FIXED_TEXT = (
    "Decoding reads every weight of the model once for each new token, so its speed "
    "is set by memory bandwidth more than by arithmetic. The prompt is processed in "
    "one pass, after which each step adds one position to the key and value cache "
    "and produces one token per sequence in the batch. "
)


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class DecodeOptions:
    """What to generate: batch sizes, prompt, length, sampling and repetitions.

    ``prompt`` and ``prompt_tokens`` are exclusive; with neither, :data:`DEFAULT_PROMPT`
    is used. ``temperature == 0`` means greedy decoding; above 0, sampling seeded with
    ``torch.manual_seed(seed)`` before every call so all calls do the same work and a
    rerun gives the same text. ``warm_calls`` timed calls with the hook (and as many
    without it) follow one untimed first call at each batch size.
    """

    batch_sizes: tuple[int, ...] = (1,)
    new_tokens: int = 64
    prompt: str | None = None
    prompt_tokens: int | None = None
    chat: bool = False
    temperature: float = 0.0
    seed: int | None = 0
    warm_calls: int = 3

    @property
    def do_sample(self) -> bool:
        return self.temperature > 0

    def validate(
        self,
        config: Any | None = None,
        *,
        context_length: int | None = None,
        prompt_length: int | None = None,
    ) -> None:
        """Raise :class:`UserError` for options that cannot be run.

        The context check needs the model's maximum positions (``context_length``, or
        read from ``config``: ``max_position_embeddings`` / ``n_positions``) and the
        prompt's token count (``prompt_length``, defaulting to ``prompt_tokens``). A
        text prompt's length is known only after tokenization, so
        :func:`profile_decode` checks again once it has tokenized the prompt.
        """
        if context_length is None and config is not None:
            context_length = context_length_of(config)
        if prompt_length is None:
            prompt_length = self.prompt_tokens
        if not self.batch_sizes:
            raise UserError("no batch size given: pass at least one batch size >= 1")
        for b in self.batch_sizes:
            if isinstance(b, bool) or not isinstance(b, int) or b <= 0:
                raise UserError(f"batch size {b!r} is not a positive integer: use 1 or more")
        if len(set(self.batch_sizes)) != len(self.batch_sizes):
            raise UserError(
                f"batch sizes {list(self.batch_sizes)} repeat a value: give each size once"
            )
        if not isinstance(self.new_tokens, int) or self.new_tokens <= 0:
            raise UserError(f"new tokens {self.new_tokens!r} must be >= 1: use 2 or more")
        if self.new_tokens < 2:
            raise UserError(
                "new tokens 1 gives no per-token interval (only the first token): use 2 or more"
            )
        if self.prompt is not None and self.prompt_tokens is not None:
            raise UserError("both a prompt text and a prompt token count given: pass only one")
        if self.prompt_tokens is not None and (
            not isinstance(self.prompt_tokens, int) or self.prompt_tokens < 1
        ):
            raise UserError(f"prompt tokens {self.prompt_tokens!r} must be >= 1: use 1 or more")
        if self.chat and self.prompt_tokens is not None:
            raise UserError(
                "chat template with an exact prompt token count: the template adds tokens, "
                "so pass a prompt text with --chat, or drop --chat"
            )
        if self.prompt is not None and not self.prompt.strip():
            raise UserError("prompt text is empty: pass some text or a prompt token count")
        if math.isnan(self.temperature) or self.temperature < 0:
            raise UserError(f"temperature {self.temperature} must be >= 0 (0 = greedy)")
        if not isinstance(self.warm_calls, int) or self.warm_calls < 1:
            raise UserError(f"warm calls {self.warm_calls!r} must be >= 1: use 1 or more")
        if context_length is not None and prompt_length is not None:
            total = prompt_length + self.new_tokens
            if total > context_length:
                raise UserError(
                    f"prompt of {prompt_length} tokens + {self.new_tokens} new tokens = {total} "
                    f"exceeds the model's context of {context_length} positions: shorten the "
                    "prompt or ask for fewer new tokens"
                )


# ------------------------------------------------------------ model facts (pure-ish)


def _text_config(config: Any) -> Any:
    get = getattr(config, "get_text_config", None)
    if callable(get):
        try:
            return get()
        except Exception:  # noqa: BLE001 - an odd config: fall back to the config itself
            return config
    return config


def _first_int(obj: Any, names: Iterable[str]) -> int | None:
    for name in names:
        value = getattr(obj, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def context_length_of(config: Any) -> int | None:
    """The model's maximum number of positions, or None when the config has none."""
    return _first_int(
        _text_config(config),
        ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length", "seq_length"),
    )


def kv_bytes_per_token(config: Any, dtype_bytes: int) -> int | None:
    """KV-cache bytes that one position of one sequence adds, from the config.

    ``2 (K and V) x layers x kv_heads x head_dim x dtype_bytes``. ``kv_heads`` is
    ``num_key_value_heads`` (grouped-query attention), 1 for ``multi_query`` configs,
    else the number of attention heads (GPT-2's ``n_head``); ``head_dim`` is the
    config's own or ``hidden_size // heads`` (GPT-2: ``n_embd // n_head``). Returns
    None when the config lacks what is needed. Models whose layers do not all cache
    every position (sliding windows, linear attention) need the measured cache instead.
    """
    cfg = _text_config(config)
    if getattr(cfg, "is_encoder_decoder", False):
        return None  # decoder self- and cross-attention caches: not this formula
    layers = _first_int(cfg, ("num_hidden_layers", "n_layer", "num_layers"))
    heads = _first_int(cfg, ("num_attention_heads", "n_head", "num_heads"))
    if layers is None or heads is None:
        return None
    kv_heads = _first_int(cfg, ("num_key_value_heads", "n_kv_heads", "num_kv_heads"))
    if kv_heads is None:
        kv_heads = 1 if getattr(cfg, "multi_query", False) is True else heads
    head_dim = _first_int(cfg, ("head_dim",))
    if head_dim is None:
        hidden = _first_int(cfg, ("hidden_size", "n_embd", "d_model"))
        if hidden is None:
            return None
        head_dim = hidden // heads
    return 2 * layers * kv_heads * head_dim * dtype_bytes


def weight_read_bytes(model: Any) -> tuple[int, int]:
    """Bytes of weights one decode step reads, and the embedding bytes left out.

    Counts every parameter once (tied input embedding and ``lm_head`` share one
    tensor and count once; the key is the tensor's address, size and dtype). An
    embedding table used only for lookups (input or position embeddings not tied to
    the output head) is left out: a step reads one row of it per sequence, not the
    table. The output head (``lm_head``) reads its full matrix every step and is kept,
    also when it is tied to the input embedding. Returns ``(bytes_read, left_out)``.
    """
    import torch

    out_emb = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    out_weight = getattr(out_emb, "weight", None)

    def key(t: Any) -> tuple[int, int, str]:
        return (t.data_ptr(), t.numel(), str(t.dtype))

    out_key = key(out_weight) if isinstance(out_weight, torch.Tensor) else None
    lookup_tables: set[tuple[int, int, str]] = set()
    modules = list(model.modules())
    inp = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if inp is not None:
        modules.append(inp)
    for m in modules:
        w = getattr(m, "weight", None)
        if (isinstance(m, torch.nn.Embedding) or m is inp) and isinstance(w, torch.Tensor):
            k = key(w)
            if k != out_key:
                lookup_tables.add(k)

    seen: set[tuple[int, int, str]] = set()
    read = left_out = 0
    for p in model.parameters():
        k = key(p)
        if k in seen:
            continue
        seen.add(k)
        nbytes = p.numel() * p.element_size()
        if k in lookup_tables:
            left_out += nbytes
        else:
            read += nbytes
    return read, left_out


def cache_nbytes(cache: Any) -> tuple[int, int] | None:
    """Bytes held by a transformers cache object and its longest layer's positions.

    Works with ``DynamicCache`` (``cache.layers[i].keys/values``, transformers >= 4.56)
    and legacy tuples of ``(key, value)`` per layer. Returns None for anything else.
    """
    import torch

    pairs: list[tuple[Any, Any]] = []
    layers = getattr(cache, "layers", None)
    if layers is not None:
        pairs = [(getattr(la, "keys", None), getattr(la, "values", None)) for la in layers]
    elif isinstance(cache, (tuple, list)):
        pairs = [tuple(x[:2]) for x in cache if isinstance(x, (tuple, list)) and len(x) >= 2]
    total = 0
    positions = 0
    found = False
    for k, v in pairs:
        for t in (k, v):
            if isinstance(t, torch.Tensor) and t.numel():
                total += t.numel() * t.element_size()
                found = True
        if isinstance(k, torch.Tensor) and k.dim() >= 2:
            positions = max(positions, int(k.shape[-2]))
    return (total, positions) if found else None


def decode_skip_reason(model: Any) -> str | None:
    """None when ``model.generate()`` can run; else one line saying why decode is skipped."""
    name = type(model).__name__
    can = getattr(model, "can_generate", None)
    if not callable(can) or not callable(getattr(model, "generate", None)):
        return (
            f"{name} has no generation head (no generate(), e.g. an encoder): decode "
            "skipped; load it with AutoModelForCausalLM to profile decode"
        )
    try:
        ok = bool(can())
    except Exception as e:  # noqa: BLE001 - any failure here means "cannot generate"
        return f"{name}.can_generate() failed ({type(e).__name__}): decode skipped"
    config = getattr(model, "config", None)
    if ok and getattr(config, "is_encoder_decoder", False):
        return (
            f"{name} is an encoder-decoder model: per-token decode profiling supports "
            "decoder-only models; decode skipped"
        )
    if not ok:
        return (
            f"{name} has no generation head (can_generate() is False, e.g. an encoder): "
            "decode skipped; load it with AutoModelForCausalLM to profile decode"
        )
    return None


def attention_backend(model: Any, device: str) -> str:
    """The attention implementation in use, with torch's SDPA switches for ``sdpa``.

    ``model.config._attn_implementation`` names what transformers dispatches to
    (``eager``, ``sdpa``, ``flash_attention_2``...). For ``sdpa`` torch picks a kernel
    per call among the backends enabled by ``torch.backends.cuda.*_sdp_enabled()``;
    those switches steer CUDA only, so on CPU they are listed as not applying.
    """
    import torch

    impl = getattr(getattr(model, "config", None), "_attn_implementation", None) or "unknown"
    if impl != "sdpa":
        return str(impl)
    flags = []
    for name in ("flash", "mem_efficient", "cudnn", "math"):
        fn = getattr(torch.backends.cuda, f"{name}_sdp_enabled", None)
        if fn is not None:
            flags.append(f"{name}={'on' if fn() else 'off'}")
    where = "" if device.startswith("cuda") else "; CPU run: these CUDA switches do not apply"
    return f"sdpa (torch.backends.cuda SDPA: {', '.join(flags)}{where})"


# --------------------------------------------------------------------- the hook


class TokenClock:
    """Timestamps of one ``generate()`` call, filled by the streamer hook.

    The first ``put`` carries the prompt (``prompt_start_ns``); every later ``put``
    carries one new token per sequence and appends one timestamp. ``self_ns`` is the
    time spent inside ``put`` itself: an upper bound of the hook's cost, since on CUDA
    it includes the synchronize, whose wait for queued device work the decoding loop
    would otherwise pay at its own stop check a moment later.
    """

    __slots__ = ("sync", "prompt_start_ns", "token_times_ns", "self_ns", "ended")

    def __init__(self, sync: Callable[[], None] | None) -> None:
        self.sync = sync
        self.prompt_start_ns: int | None = None
        self.token_times_ns: list[int] = []
        self.self_ns = 0
        self.ended = False

    def put(self, value: Any) -> None:
        enter = time.monotonic_ns()
        if self.prompt_start_ns is None:
            self.prompt_start_ns = enter
            return
        if self.sync is not None:
            self.sync()
        now = time.monotonic_ns()
        self.token_times_ns.append(now)
        self.self_ns += time.monotonic_ns() - enter

    def end(self) -> None:
        self.ended = True


_STREAMER_CLASS: type | None = None


def make_token_clock(sync: Callable[[], None] | None) -> Any:
    """A ``BaseStreamer`` subclass instance that records into a :class:`TokenClock`."""
    global _STREAMER_CLASS
    if _STREAMER_CLASS is None:
        from transformers.generation.streamers import BaseStreamer

        class _TokenClockStreamer(TokenClock, BaseStreamer):
            __slots__ = ()

        _STREAMER_CLASS = _TokenClockStreamer
    return _STREAMER_CLASS(sync)


# ------------------------------------------------------------------ pure metrics


@dataclass(frozen=True)
class LatencyStats:
    """Per-token decode latency in seconds over ``n`` intervals (within calls only)."""

    p50: float
    p90: float
    p99: float
    max: float
    mean: float
    n: int


def _intervals(calls: Iterable[DecodeCall]) -> list[float]:
    # Each call's own intervals, concatenated: the gap between the last token of one
    # call and the first token of the next is never an interval.
    out: list[float] = []
    for c in calls:
        out.extend(c.intervals_s)
    return out


def token_latency_stats(calls: Sequence[DecodeCall]) -> LatencyStats:
    """Percentiles of all per-token intervals of ``calls``; raises ValueError if none."""
    xs = _intervals(calls)
    if not xs:
        raise ValueError("no per-token intervals: each call needs at least 2 tokens")
    return LatencyStats(
        p50=percentile(xs, 50),
        p90=percentile(xs, 90),
        p99=percentile(xs, 99),
        max=max(xs),
        mean=sum(xs) / len(xs),
        n=len(xs),
    )


def latency_by_position(calls: Sequence[DecodeCall]) -> tuple[float, ...]:
    """Median over ``calls`` of interval ``i`` for each ``i`` (per-token latency curve).

    Interval ``i`` is the step that reads ``prompt + i + 1`` cache positions. Calls of
    different lengths are cut to the shortest.
    """
    per_call = [c.intervals_s for c in calls]
    if not per_call:
        return ()
    n = min(len(x) for x in per_call)
    return tuple(statistics.median(x[i] for x in per_call) for i in range(n))


def tokens_per_s(record: DecodeRecord, *, include_prefill: bool = False) -> tuple[float, float]:
    """``(per_sequence, batch)`` tokens per second over the record's warm calls.

    Default, "decode tokens/s": prefill excluded; the ``new_tokens - 1`` intervals of
    each call over their summed time (tokens produced by decode steps only).
    ``include_prefill=True``, "end-to-end tokens/s": all new tokens of each call over
    the wall time of its ``generate()`` (setup, prefill, TTFT and tail included).
    Calls are pooled (total tokens / total time). The batch rate is
    ``per_sequence x batch_size``: every sequence gets one token per step.
    """
    calls = record.calls
    if not calls:
        raise ValueError("record has no timed calls")
    if include_prefill:
        tokens = sum(len(c.token_times_ns) for c in calls)
        seconds = sum(c.wall_s for c in calls)
    else:
        xs = _intervals(calls)
        tokens, seconds = len(xs), sum(xs)
    if tokens == 0 or seconds <= 0:
        raise ValueError("no decode time to divide by")
    per_seq = tokens / seconds
    return per_seq, per_seq * record.batch_size


def mbu_per_token(record: DecodeRecord, call: DecodeCall) -> list[float]:
    """Memory-bandwidth utilisation of each decode step of ``call`` (fraction of 1).

    Step ``i`` (interval ``i``) must read ``weight_bytes + kv_bytes_per_token x batch x
    (prompt_tokens + i + 1)`` bytes; MBU is that over the interval, over the measured
    device bandwidth. Activations and the one new KV position written are not counted.
    Returns [] when the record lacks weight bytes, KV bytes or bandwidth.
    """
    if (
        record.weight_bytes is None
        or record.kv_bytes_per_token is None
        or not record.memory_bandwidth_gbps
    ):
        return []
    bw = record.memory_bandwidth_gbps * 1e9
    out = []
    for i, dt in enumerate(call.intervals_s):
        position = record.prompt_tokens + i + 1
        need = record.weight_bytes + record.kv_bytes_per_token * record.batch_size * position
        out.append(need / dt / bw if dt > 0 else math.inf)
    return out


def consistency(call: DecodeCall) -> float:
    """``|ttft + sum(intervals) - wall| / wall`` of one call.

    The timestamps should account for the whole call; what is left is the tail after
    the last token (``streamer.end()``, building the output, the final synchronize).
    """
    if call.wall_s <= 0:
        raise ValueError("call has no wall time")
    return abs(call.ttft_s + sum(call.intervals_s) - call.wall_s) / call.wall_s


def hook_overhead(record: DecodeRecord) -> float | None:
    """``(median hooked wall - median plain wall) / median plain wall``; None if unmeasured.

    Negative values mean the difference is below the run-to-run noise.
    """
    if not record.calls or not record.plain_calls_s:
        return None
    plain = statistics.median(record.plain_calls_s)
    if plain <= 0:
        return None
    hooked = statistics.median(c.wall_s for c in record.calls)
    return (hooked - plain) / plain


# ------------------------------------------------------------------------ inputs


def _ids_of(tokenizer: Any, text: str, add_special_tokens: bool) -> list[int]:
    ids = tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]
    if ids and isinstance(ids[0], list):  # some tokenizers return a batch of one
        ids = ids[0]
    return [int(i) for i in ids]


def prompt_ids(tokenizer: Any, options: DecodeOptions) -> list[int]:
    """The prompt as token ids (one sequence), following ``options``.

    * ``prompt_tokens=N``: :data:`FIXED_TEXT` tokenized without special tokens,
      repeated and cut to exactly N ids, starting with BOS when the tokenizer adds
      one by default. Deterministic for a given tokenizer.
    * ``chat``: ``apply_chat_template`` on one user message with the generation
      prompt, rendered to text and tokenized without adding special tokens again
      (the template writes its own).
    * otherwise the prompt text (or :data:`DEFAULT_PROMPT`) with the tokenizer's
      usual special tokens.
    """
    if tokenizer is None:
        raise UserError("decode needs a tokenizer and none was loaded: load one with the model")
    if options.prompt_tokens is not None:
        n = options.prompt_tokens
        body = _ids_of(tokenizer, FIXED_TEXT, add_special_tokens=False)
        if not body:
            raise UserError(
                "the tokenizer turns the fixed prompt text into no tokens: use --prompt"
            )
        prefix: list[int] = []
        bos = getattr(tokenizer, "bos_token_id", None)
        if bos is not None:
            default = _ids_of(tokenizer, FIXED_TEXT, add_special_tokens=True)
            if default and default[0] == bos and body[0] != bos:
                prefix = [int(bos)]
        reps = -(-(n - len(prefix)) // len(body)) if n > len(prefix) else 0
        return (prefix + body * reps)[:n]
    text = options.prompt if options.prompt is not None else DEFAULT_PROMPT
    if options.chat:
        if not getattr(tokenizer, "chat_template", None):
            raise UserError("the tokenizer has no chat template: drop --chat or use a chat model")
        rendered = tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
        )
        ids = _ids_of(tokenizer, rendered, add_special_tokens=False)
    else:
        ids = _ids_of(tokenizer, text, add_special_tokens=True)
    if not ids:
        raise UserError("the prompt is empty after tokenization: pass a longer prompt")
    return ids


def build_inputs(tokenizer: Any, options: DecodeOptions, batch_size: int, device: str) -> dict:
    """``input_ids`` and ``attention_mask`` of shape ``(batch_size, prompt)`` on ``device``.

    Every row is the same prompt, so no padding is needed and every sequence does the
    same work.
    """
    import torch

    ids = prompt_ids(tokenizer, options)
    input_ids = torch.tensor([ids] * batch_size, dtype=torch.long, device=device)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}


# --------------------------------------------------------------------- profiling


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
    decode_s = sum(_intervals(record.calls))
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
