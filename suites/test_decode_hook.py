"""Cost of the per-token hook: the same generate() with and without it, in one run.

A benchmark, not a unit test (about a minute on 2 cores), collected with the other
suites and run only with ``--benchmark-only`` (see suites/conftest.py)::

    pytest suites/test_decode_hook.py --benchmark-only -s

Each
round first runs the plain generate() in pedantic ``setup`` (timed here with
``perf_counter_ns``, outside the benchmark's own timer), then the benchmark times the
hooked generate(): plain and hooked calls alternate, so drift in clocks or load hits
both alike. ``benchmark.extra_info`` holds both medians and the overhead fraction,
in wall time and in CPU time of the calling thread (``time.thread_time_ns``; torch
runs single-threaded here, so that is all the work). CPU time does not count the
time other processes hold the cores, so on a busy shared machine it resolves a
small overhead that wall time drowns in noise. ``hook_self_*`` is the time spent
inside the hook's ``put()`` itself, the most direct measure of its cost, and the one
the benchmark gates on (under ``HOOK_BUDGET_FRACTION`` of a plain call); the wall
difference is judged by llmprof's own rule (``hook_within_noise``).

The model is a tiny random Llama: steps of a few milliseconds are the worst case for
a fixed per-token cost, so an overhead within budget here is within budget on real
models. Single-threaded torch keeps the numbers steady on a small shared machine.
"""

from __future__ import annotations

import statistics
import time

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("pytest_benchmark")

from profiler.analysis.decode_metrics import HOOK_BUDGET_FRACTION, hook_overhead  # noqa: E402
from profiler.decode.hook import make_token_clock  # noqa: E402

NEW_TOKENS = 32
PROMPT_TOKENS = 16
ROUNDS = 21


@pytest.fixture(scope="module")
def model():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=512,
        max_position_embeddings=128,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    m = transformers.LlamaForCausalLM(cfg).eval()
    yield m
    torch.set_num_threads(before)


def _generate(model, ids, streamer=None):
    return model.generate(
        **ids,
        max_new_tokens=NEW_TOKENS,
        min_new_tokens=NEW_TOKENS,
        do_sample=False,
        streamer=streamer,
    )


@pytest.mark.llmprof_bench
@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("batch", [1, 4])
def test_generate_hook_overhead(benchmark, model, batch, device):
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    on_cuda = device == "cuda"
    sync = torch.cuda.synchronize if on_cuda else None
    model = model.to(device, torch.float16 if on_cuda else torch.float32)
    ids_row = [1] + [(7 * i) % 500 + 4 for i in range(PROMPT_TOKENS - 1)]
    input_ids = torch.tensor([ids_row] * batch, device=device)
    ids = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
    plain_s: list[float] = []
    plain_cpu_s: list[float] = []
    hooked_cpu_s: list[float] = []
    clocks = []

    _generate(model, ids)  # first call of this shape: not measured
    _generate(model, ids, make_token_clock(sync))

    def plain_then_args():
        if sync is not None:
            sync()
        c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
        _generate(model, ids)
        if sync is not None:
            sync()
        plain_s.append((time.perf_counter_ns() - t0) / 1e9)
        plain_cpu_s.append((time.thread_time_ns() - c0) / 1e9)
        clock = make_token_clock(sync)
        clocks.append(clock)
        return (clock,), {}

    def hooked(clock):
        c0 = time.thread_time_ns()
        out = _generate(model, ids, clock)
        if sync is not None:
            sync()
        hooked_cpu_s.append((time.thread_time_ns() - c0) / 1e9)
        return out

    out = benchmark.pedantic(hooked, setup=plain_then_args, rounds=ROUNDS, iterations=1)

    assert out.shape[1] == PROMPT_TOKENS + NEW_TOKENS
    assert all(len(c.token_times_ns) == NEW_TOKENS for c in clocks)
    hooked_wall = benchmark.stats.stats.median
    plain = statistics.median(plain_s)
    overhead = (hooked_wall - plain) / plain
    cpu_plain = statistics.median(plain_cpu_s)
    cpu_hooked = statistics.median(hooked_cpu_s)
    self_per_token_s = statistics.median(c.self_ns / 1e9 / NEW_TOKENS for c in clocks)
    judged = hook_overhead(plain_s, list(benchmark.stats.stats.data))
    assert judged is not None
    benchmark.extra_info.update(
        {
            "batch": batch,
            "device": device,
            "new_tokens": NEW_TOKENS,
            "plain_median_s": plain,
            "hooked_median_s": hooked_wall,
            "overhead_fraction": overhead,
            "plain_cpu_median_s": cpu_plain,
            "hooked_cpu_median_s": cpu_hooked,
            "cpu_overhead_fraction": (cpu_hooked - cpu_plain) / cpu_plain,
            "hook_self_per_token_s": self_per_token_s,
            "hook_self_fraction": self_per_token_s * NEW_TOKENS / plain,
            "hook_within_noise": judged.within_noise,
            "budget_fraction": HOOK_BUDGET_FRACTION,
            "torch_threads": torch.get_num_threads(),
        }
    )
    self_fraction = self_per_token_s * NEW_TOKENS / plain
    assert self_fraction < HOOK_BUDGET_FRACTION, (
        f"the hook's own time is {self_fraction:.2%} of a call, budget {HOOK_BUDGET_FRACTION:.0%}"
    )
