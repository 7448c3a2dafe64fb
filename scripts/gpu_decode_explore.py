"""What bounds a decode step on the lent GPU, and which levers move it (exploration).

    python scripts/gpu_decode_explore.py MODEL_FOLDER OUT_JSON

Batch 1, a 32-token prompt, 64 new tokens, bf16, greedy. For each way of decoding it
records warm ms per token, the first call's cost, and the greedy tokens; for plain
generate() and the fastest way it also profiles one extra call (kernel count and
summed kernel time per step: how busy the GPU was) and reads NVML's energy counter.
Standalone (torch + transformers): it ran before llmprof's decode variants existed,
to decide what they should be.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

PROMPT, NEW = 32, 64


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    torch.cuda.synchronize()
    return time.perf_counter() - t0, out


def energy_mj() -> int | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(0)
        return int(pynvml.nvmlDeviceGetTotalEnergyConsumption(h))
    except Exception:  # noqa: BLE001 - energy is optional
        return None


def gpu_busy(fn: Callable[[], Any], steps: int) -> dict[str, float]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    kernels = [e for e in prof.events() if e.device_type.name == "CUDA"]
    busy_us = sum(e.time_range.end - e.time_range.start for e in kernels)
    return {
        "kernels_per_step": len(kernels) / steps,
        "gpu_busy_ms_per_step": busy_us / 1e3 / steps,
    }


def main() -> None:
    from transformers import AutoModelForCausalLM, CompileConfig, StaticCache

    folder, out = Path(sys.argv[1]), Path(sys.argv[2])
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16, device_map="cuda")
    model.eval()
    torch.manual_seed(0)
    ids = torch.randint(100, 1000, (1, PROMPT), device="cuda")
    mask = torch.ones_like(ids)
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    res: dict[str, Any] = {"weight_bytes": weight_bytes, "variants": {}}

    def gen(**kw: Any) -> Any:
        return model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=NEW,
            min_new_tokens=NEW,
            do_sample=False,
            return_dict_in_generate=True,
            output_logits=True,
            **kw,
        )

    def record(name: str, fn: Callable[[], Any], warm: int = 3) -> Any:
        first_s, first = timed(fn)
        walls = []
        e0 = energy_mj()
        for _ in range(warm):
            w, o = timed(fn)
            walls.append(w)
        e1 = energy_mj()
        best = min(walls)
        row = {
            "first_call_s": first_s,
            "warm_s": walls,
            "ms_per_token": 1e3 * best / NEW,
            "tokens_per_s": NEW / best,
            "joules_per_token": (e1 - e0) / 1e3 / (warm * NEW) if e0 is not None and e1 else None,
        }
        res["variants"][name] = row
        print(
            f"{name:34s} first {first_s:7.2f} s  warm {row['ms_per_token']:6.2f} ms/tok "
            f"{row['tokens_per_s']:6.1f} tok/s",
            flush=True,
        )
        out.write_text(json.dumps(res, indent=1, default=str))
        return o

    plain = record("generate()", gen)
    res["variants"]["generate()"].update(gpu_busy(gen, NEW))
    seqs = {"generate()": plain.sequences[0, PROMPT:].tolist()}
    for name, kw in (
        ("static cache, no compile", {"cache_implementation": "static", "disable_compile": True}),
        ("static cache (auto compile)", {"cache_implementation": "static"}),
        (
            "static cache, fullgraph compile",
            {"cache_implementation": "static", "compile_config": CompileConfig(fullgraph=True)},
        ),
    ):
        try:
            o = record(name, lambda kw=kw: gen(**kw))
            seqs[name] = o.sequences[0, PROMPT:].tolist()
            res["variants"][name]["agreement"] = agreement(plain, o)
        except Exception as e:  # noqa: BLE001
            res["variants"][name] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
            print(name, "failed:", res["variants"][name]["error"], flush=True)

    # The seed's token-by-token loop, with a static cache and the decode step compiled.
    cache = StaticCache(config=model.config, max_cache_len=PROMPT + NEW)

    def step(tok: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        return model(
            input_ids=tok, past_key_values=cache, cache_position=pos, use_cache=True
        ).logits[:, -1]

    compiled = torch.compile(step, mode="reduce-overhead", fullgraph=True)

    def hand_loop() -> list[int]:
        cache.reset()
        pos = torch.arange(PROMPT, device="cuda")
        logits = model(
            input_ids=ids, past_key_values=cache, cache_position=pos, use_cache=True
        ).logits[:, -1]
        tok = logits.argmax(-1, keepdim=True)
        toks = [tok]
        for i in range(NEW - 1):
            torch.compiler.cudagraph_mark_step_begin()
            logits = compiled(tok, torch.tensor([PROMPT + i], device="cuda")).clone()
            tok = logits.argmax(-1, keepdim=True)
            toks.append(tok)
        return torch.cat(toks, 1)[0].tolist()

    try:
        loop_out = record("hand loop, static + compiled step", hand_loop)
        seqs["hand loop"] = loop_out
        res["variants"]["hand loop, static + compiled step"]["same_tokens_as_generate"] = (
            first_difference(seqs["generate()"], loop_out)
        )
        res["variants"]["hand loop, static + compiled step"].update(gpu_busy(hand_loop, NEW))
    except Exception as e:  # noqa: BLE001
        res["variants"]["hand loop"] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
        print("hand loop failed:", res["variants"]["hand loop"]["error"], flush=True)
    try:
        fast = res["variants"].get("static cache (auto compile)", {})
        if "ms_per_token" in fast:
            fast.update(gpu_busy(lambda: gen(cache_implementation="static"), NEW))
    except Exception as e:  # noqa: BLE001
        res["busy_error"] = str(e)[:300]
    out.write_text(json.dumps(res, indent=1, default=str))


def first_difference(a: list[int], b: list[int]) -> int | None:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None


def agreement(ref: Any, other: Any) -> dict[str, Any]:
    a = ref.sequences[0, PROMPT:].tolist()
    b = other.sequences[0, PROMPT:].tolist()
    i = first_difference(a, b)
    if i is None:
        return {"first_difference": None}
    la, lb = ref.logits[i][0].float(), other.logits[i][0].float()
    top = la.topk(2)
    return {
        "first_difference": i,
        "ref_top2_gap": float(top.values[0] - top.values[1]),
        "max_abs_logit_diff": float((la - lb).abs().max()),
    }


if __name__ == "__main__":
    main()
