"""Decode loops written by hand, outside ``generate()``: the seed's loop and a graph loop.

Both return the same :class:`LoopResult` as a hooked ``generate()`` call, so every
decode variant is measured and compared in one way. Timestamps follow
:mod:`profiler.decode.loop`: ``start_ns`` before the prefill (device idle),
``token_times_ns[i]`` once token ``i`` exists, ``end_ns`` after the device is idle.

torch and transformers are imported inside functions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from profiler.records.decode import DecodeCall


@dataclass
class LoopResult:
    """One call: its timestamps, the first sequence's new tokens and, when asked
    for, the top-1 logit and the top-1 minus top-2 gap at every new position."""

    call: DecodeCall
    tokens: list[int]
    top1: list[float] = field(default_factory=list)
    gaps: list[float] = field(default_factory=list)


def top2(logits: Any) -> tuple[float, float]:
    """(top-1 logit, top-1 - top-2) of the first sequence's last-position logits."""
    import torch

    vals = torch.topk(logits[0].float(), 2).values
    return float(vals[0]), float(vals[0] - vals[1])


def cache_kwarg(model: Any) -> str:
    """The forward's name for the KV cache: ``cache`` in newer transformers (which
    warns on ``past_key_values``, and a warning inside a compiled step is a graph
    break), ``past_key_values`` before."""
    import inspect

    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def eos_ids(model: Any) -> list[int]:
    """The model's end-of-sequence ids (generation config), as a list."""
    eos = getattr(model.generation_config, "eos_token_id", None)
    if eos is None:
        return []
    return [int(e) for e in (eos if isinstance(eos, list | tuple) else [eos])]


def no_eos(logits: Any, eos: list[int]) -> Any:
    """``logits`` with the EOS ids at -inf: what ``generate()`` does until
    ``min_new_tokens`` exist, so every variant makes the same number of tokens and
    chooses among the same candidates."""
    if not eos:
        return logits
    out = logits.float().clone()
    out[:, eos] = float("-inf")
    return out


def _pick(logits: Any, temperature: float) -> Any:
    """The seed's choice: softmax(logits / T) then multinomial, argmax at T = 0."""
    import torch

    if temperature > 0:
        probs = torch.softmax(logits.float() / temperature, dim=-1)
        return torch.multinomial(probs, num_samples=1)
    return torch.argmax(logits, dim=-1, keepdim=True)


def seed_loop_call(
    model: Any,
    inputs: dict,
    new_tokens: int,
    temperature: float,
    sync: Callable[[], None] | None,
    collect: bool,
) -> LoopResult:
    """The seed notes' token-by-token loop, with a KV cache: one forward per token,
    the token read on the host every step (as the seed's EOS check does). EOS is
    masked instead of ending the loop (:func:`no_eos`): a fixed token count."""
    import torch
    from transformers import DynamicCache

    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    res = LoopResult(DecodeCall(0, 0, ()), [])
    times: list[int] = []
    with torch.no_grad():  # as generate() runs
        if sync is not None:
            sync()
        start = time.monotonic_ns()
        cache = DynamicCache(config=model.config)
        kw = {cache_kwarg(model): cache}
        out = model(input_ids=ids, attention_mask=mask, use_cache=True, **kw)
        eos = eos_ids(model)
        for i in range(new_tokens):
            logits = no_eos(out.logits[:, -1, :], eos)
            if collect:
                t1, gap = top2(logits)
                res.top1.append(t1)
                res.gaps.append(gap)
            nxt = _pick(logits, temperature)
            res.tokens.append(int(nxt[0, 0]))  # host read: waits for the device
            times.append(time.monotonic_ns())
            if i == new_tokens - 1:
                break
            mask = torch.cat([mask, torch.ones_like(nxt)], dim=-1)
            out = model(input_ids=nxt, attention_mask=mask, use_cache=True, **kw)
        if sync is not None:
            sync()
        end = time.monotonic_ns()
    res.call = DecodeCall(start, end, tuple(times), prompt_start_ns=start)
    return res


class GraphLoop:
    """Greedy decode over one static cache, the step compiled once.

    The step (forward of one token + top-2 of its logits) is compiled with
    ``torch.compile(mode="reduce-overhead", fullgraph=True)``: inductor kernels
    replayed as one CUDA graph per token. The loop never reads a token on the host;
    per-token times come from CUDA events recorded after each step and read once at
    the end. Outputs of a CUDA-graph replay live in buffers the next replay
    overwrites, so each is cloned before the next step is marked begun (the error
    "accessing tensor output of CUDAGraphs that has been overwritten" otherwise).
    ``compiled=False`` runs the same loop eagerly with host clocks (tests on CPU).
    """

    def __init__(self, model: Any, max_len: int, batch: int, device: str, compiled: bool):
        import torch
        from transformers import StaticCache

        self.model = model
        self.max_len = max_len
        self.device = device
        self.compiled = compiled
        self.cache = StaticCache(config=model.config, max_cache_len=max_len)
        self.batch = batch
        self.kw = cache_kwarg(model)
        self.eos = eos_ids(model)
        self.step: Callable[..., Any] = self._step
        if compiled:
            self.step = torch.compile(self._step, mode="reduce-overhead", fullgraph=True)

    def _step(self, ids: Any, pos: Any, cache_pos: Any) -> tuple[Any, Any]:
        import torch

        out = self.model(
            input_ids=ids,
            position_ids=pos,
            cache_position=cache_pos,
            use_cache=True,
            **{self.kw: self.cache},
        )
        top = torch.topk(no_eos(out.logits[:, -1, :], self.eos), 2, dim=-1)
        return top.indices[:, :1], top.values

    def call(self, inputs: dict, new_tokens: int, collect: bool) -> LoopResult:
        import torch

        ids = inputs["input_ids"]
        prompt = int(ids.shape[-1])
        if prompt + new_tokens > self.max_len:
            raise ValueError("graph loop: prompt + new tokens exceed the static cache")
        cuda = self.device.startswith("cuda")
        with torch.no_grad():  # as generate() runs
            if cuda:
                torch.cuda.synchronize()
            start = time.monotonic_ns()
            self.cache.reset()
            cache_pos = torch.arange(prompt, device=ids.device)
            out = self.model(
                input_ids=ids,
                position_ids=cache_pos.unsqueeze(0).expand(ids.shape[0], -1),
                cache_position=cache_pos,
                use_cache=True,
                **{self.kw: self.cache},
            )
            top = torch.topk(no_eos(out.logits[:, -1, :], self.eos), 2, dim=-1)
            tok, vals = top.indices[:, :1], top.values
            steps: list[tuple[Any, Any]] = [(tok, vals)]
            if cuda:
                torch.cuda.synchronize()
            t0 = time.monotonic_ns()
            marks = self._decode(tok, prompt, new_tokens, steps, cuda)
            if cuda:
                torch.cuda.synchronize()
            end = time.monotonic_ns()
        times = [t0, *self._times(t0, marks, cuda)]
        res = LoopResult(DecodeCall(start, end, tuple(times), prompt_start_ns=start), [])
        res.tokens = [int(t[0, 0]) for t, _ in steps]
        if collect:
            for _, v in steps:
                res.top1.append(float(v[0, 0]))
                res.gaps.append(float(v[0, 0] - v[0, 1]))
        return res

    def _decode(
        self, tok: Any, prompt: int, new_tokens: int, steps: list[tuple[Any, Any]], cuda: bool
    ) -> list[Any]:
        """Steps 1 .. new-1; a CUDA event (or, eagerly, a host clock) after each."""
        import torch

        ev0 = torch.cuda.Event(enable_timing=True) if cuda else None
        if ev0 is not None:
            ev0.record()
        marks: list[Any] = [ev0]
        pos = torch.full((tok.shape[0], 1), prompt, dtype=torch.long, device=tok.device)
        cache_pos = torch.tensor([prompt], dtype=torch.long, device=tok.device)
        for _ in range(1, new_tokens):
            if self.compiled:
                torch.compiler.cudagraph_mark_step_begin()
            nxt, vals = self.step(tok, pos, cache_pos)
            tok, vals = nxt.clone(), vals.clone()
            steps.append((tok, vals))
            pos = pos + 1
            cache_pos = cache_pos + 1
            if cuda:
                ev = torch.cuda.Event(enable_timing=True)
                ev.record()
                marks.append(ev)
            else:
                marks.append(time.monotonic_ns())
        return marks

    @staticmethod
    def _times(t0: int, marks: list[Any], cuda: bool) -> list[int]:
        if cuda:
            ev0 = marks[0]
            return [t0 + int(ev0.elapsed_time(ev) * 1e6) for ev in marks[1:]]
        return [int(m) for m in marks[1:]]
