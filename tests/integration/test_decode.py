"""Decode profiling on tiny random models built in the test (nothing downloaded).

Checks are structural: token counts, ordering of timestamps, cache sizes against the
returned cache, reproducibility of text; timing only gets a loose sanity bound.
"""

from __future__ import annotations

import json
import statistics

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from profiler.analysis.decode_metrics import consistency, decode_figures  # noqa: E402
from profiler.decode.loop import profile_decode  # noqa: E402
from profiler.decode.model_facts import decode_skip_reason, kv_bytes_per_token, weight_read_bytes  # noqa: E402
from profiler.decode.prompt import build_inputs, prompt_ids  # noqa: E402
from profiler.errors import UserError  # noqa: E402
from profiler.machine.bandwidth import measure_memory_bandwidth  # noqa: E402
from profiler.records.decode import DecodeRecord  # noqa: E402
from profiler.records.job import DecodeSpec  # noqa: E402

VOCAB = 512
CONTEXT = 128
CHAT_TEMPLATE = (
    "{% for m in messages %}<s> w4 {{ m['content'] }} w5 {% endfor %}"
    "{% if add_generation_prompt %}w6{% endif %}"
)


def make_tokenizer():
    """A word-level tokenizer over '<pad> <s> </s> <unk> w4 ... w511' that adds BOS."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    words = ["<pad>", "<s>", "</s>", "<unk>"] + [f"w{i}" for i in range(4, VOCAB)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tok.decoder = decoders.WordPiece()
    t = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    t.chat_template = CHAT_TEMPLATE
    return t


def make_llama(eos: int = 2):
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,  # grouped-query attention
        vocab_size=VOCAB,
        max_position_embeddings=CONTEXT,
        bos_token_id=1,
        eos_token_id=eos,
        pad_token_id=0,
    )
    return transformers.LlamaForCausalLM(cfg).eval()


def make_gpt2():
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(
        n_layer=2, n_head=4, n_embd=64, vocab_size=VOCAB, n_positions=CONTEXT,
        bos_token_id=1, eos_token_id=2,
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(cfg).eval()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Tiny models gain nothing from threads, and on a shared 2-core machine torch's
    # spinning worker threads make each step many times slower: keep tests fast.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tok():
    return make_tokenizer()


def opts(**kw) -> DecodeSpec:
    base = dict(batch_sizes=(1,), new_tokens=8, prompt_tokens=6, warm_calls=2)
    base.update(kw)
    return DecodeSpec(**base)


def check_record_structure(r: DecodeRecord, o: DecodeSpec) -> None:
    assert len(r.calls) == o.warm_calls and len(r.plain_calls_s) == o.warm_calls
    assert r.first_call is not None
    for c in (r.first_call, *r.calls):
        assert len(c.token_times_ns) == o.new_tokens
        assert c.start_ns <= c.prompt_start_ns <= c.token_times_ns[0]
        assert all(a < b for a, b in zip(c.token_times_ns, c.token_times_ns[1:], strict=False))
        assert c.token_times_ns[-1] <= c.end_ns
        assert 0.0 <= consistency(c) < 0.5
    # calls do not overlap: intervals can only be built inside one call
    ordered = sorted(r.calls, key=lambda c: c.start_ns)
    assert all(a.end_ns <= b.start_ns for a, b in zip(ordered, ordered[1:], strict=False))
    assert r.first_call.end_ns <= ordered[0].start_ns
    assert all(w > 0 for w in r.plain_calls_s)
    f = decode_figures([r])
    assert f.interval is not None and f.interval.n == o.warm_calls * (o.new_tokens - 1)
    assert f.step is not None and f.step.n == o.warm_calls
    assert isinstance(r.text, str) and r.text
    assert any(n.startswith("consistency:") for n in r.notes)
    assert any(n.startswith("hook overhead:") for n in r.notes)


def test_exact_token_count_although_eos_comes_first(tok):
    model = make_llama()
    ids = build_inputs(tok, opts(), 1, "cpu")
    first = int(model.generate(**ids, max_new_tokens=1, do_sample=False)[0, -1])
    model.generation_config.eos_token_id = first  # greedy decoding now emits EOS at once
    stopped = model.generate(**ids, max_new_tokens=8, do_sample=False, pad_token_id=0)
    assert stopped.shape[1] - ids["input_ids"].shape[1] < 8  # the setup really stops early

    o = opts(batch_sizes=(1, 4))
    records = profile_decode(model, tok, o, device="cpu", bandwidth=None)
    assert [r.batch_size for r in records] == [1, 4]
    for r in records:
        check_record_structure(r, o)
        assert r.prompt_tokens == 6 and r.new_tokens == 8


def test_batch_1_and_4_sizes_and_cache_cross_check(tok):
    model = make_llama()
    o = opts(batch_sizes=(1, 4))
    bw = measure_memory_bandwidth("cpu", nbytes=8 << 20, trials=2)
    records = profile_decode(model, tok, o, device="cpu", bandwidth=bw)
    per_pos = kv_bytes_per_token(model.config, 4)  # fp32
    assert per_pos == 2 * 2 * 2 * 16 * 4
    # Untied Llama: the lm_head is read in full, the input embedding only by rows.
    emb = model.get_input_embeddings().weight
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    assert weight_read_bytes(model) == (total - emb.numel() * 4, emb.numel() * 4)
    for r in records:
        check_record_structure(r, o)
        assert r.kv_bytes_per_token == per_pos
        # the returned cache holds prompt + new - 1 positions (the last token is never fed)
        assert r.kv_cache_bytes == per_pos * r.batch_size * (6 + 8 - 1)
        assert any("matches the config formula" in n for n in r.notes)
        assert r.memory_bandwidth_gbps == bw.gbps and r.bandwidth_source == bw.method
        assert r.peak_gpu_allocated_bytes is None
        assert r.attention_backend.startswith("sdpa")
        f = decode_figures([r])
        assert f.mbu is not None and f.mbu > 0 and f.kv_counted and f.bandwidth_from_run
        assert f.tokens_per_s_batch == pytest.approx(f.tokens_per_s_seq * r.batch_size)
    # greedy with identical rows: batch 4 text equals batch 1 text
    assert records[0].text == records[1].text
    back = DecodeRecord.from_dict(json.loads(json.dumps(records[1].to_dict())))
    assert back == records[1]


def test_gpt2_tied_weights_and_kv_heads(tok):
    model = make_gpt2()
    (r,) = profile_decode(model, tok, opts(), device="cpu", bandwidth=None)
    assert r.kv_bytes_per_token == 2 * 2 * 4 * 16 * 4  # n_head used as KV heads
    assert r.kv_cache_bytes == r.kv_bytes_per_token * (6 + 8 - 1)
    # tied wte/lm_head counted once and kept; position table (wpe) left out
    wpe = model.transformer.wpe.weight
    unique = {p.data_ptr(): p.numel() * 4 for p in model.parameters()}
    assert r.weight_bytes == sum(unique.values()) - wpe.numel() * 4
    assert r.attention_backend.startswith("sdpa")


def test_greedy_and_sampled_runs_are_reproducible(tok):
    model = make_llama()
    o = opts(warm_calls=1)
    greedy = [profile_decode(model, tok, o, device="cpu", bandwidth=None)[0] for _ in "ab"]
    assert greedy[0].text == greedy[1].text
    # the second run's first call is not cold: same model, same shapes, same process
    assert any(n.startswith("first_call: NOT cold") for n in greedy[1].notes)
    sampled = [
        profile_decode(
            model, tok, opts(warm_calls=1, temperature=1.5, seed=1), device="cpu", bandwidth=None
        )[0]
        for _ in "ab"
    ]
    assert sampled[0].text == sampled[1].text
    assert sampled[0].text != greedy[0].text  # near-uniform random logits: sampling differs
    assert any("sampled" in n for n in sampled[0].notes)


def test_encoder_without_generation_head_is_skipped(tok):
    cfg = transformers.BertConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        vocab_size=VOCAB,
    )  # fmt: skip
    bert = transformers.BertModel(cfg).eval()
    reason = decode_skip_reason(bert)
    assert reason and "\n" not in reason and "BertModel" in reason
    with pytest.raises(UserError, match="no generation head"):
        profile_decode(bert, tok, opts(), device="cpu", bandwidth=None)
    assert decode_skip_reason(make_llama()) is None


def test_too_long_prompt_is_rejected_before_any_generate(tok, monkeypatch):
    model = make_llama()
    calls = []
    monkeypatch.setattr(model, "generate", lambda *a, **k: calls.append(1))
    with pytest.raises(UserError, match="exceeds the model's context of 128"):
        profile_decode(model, tok, opts(prompt_tokens=121), device="cpu", bandwidth=None)
    with pytest.raises(UserError, match="batch size"):
        profile_decode(model, tok, opts(batch_sizes=(0,)), device="cpu", bandwidth=None)
    assert calls == []


def test_prompt_construction(tok):
    exact = prompt_ids(tok, opts(prompt_tokens=37))
    assert len(exact) == 37 and exact[0] == tok.bos_token_id
    assert exact == prompt_ids(tok, opts(prompt_tokens=37))  # deterministic
    chat = prompt_ids(tok, DecodeSpec(prompt="w7 w8", chat=True))
    assert tok.convert_ids_to_tokens(chat) == ["<s>", "w4", "w7", "w8", "w5", "w6"]
    plain = prompt_ids(tok, DecodeSpec(prompt="w7 w8"))
    assert plain == [1, 7, 8]
    batch = build_inputs(tok, DecodeSpec(prompt="w7 w8"), 3, "cpu")
    assert batch["input_ids"].tolist() == [[1, 7, 8]] * 3
    assert batch["attention_mask"].tolist() == [[1, 1, 1]] * 3
    no_template = make_tokenizer()
    no_template.chat_template = None
    with pytest.raises(UserError, match="chat template"):
        prompt_ids(no_template, DecodeSpec(prompt="w7", chat=True))


def test_cpu_bandwidth_measurement():
    bw = measure_memory_bandwidth("cpu", nbytes=8 << 20, trials=3)
    assert len(bw.trials_gbps) == 3 and all(g > 0 for g in bw.trials_gbps)
    assert bw.gbps == statistics.median(bw.trials_gbps)
    assert bw.threads == torch.get_num_threads() and "thread" in bw.method
    with pytest.raises(UserError):
        measure_memory_bandwidth("cpu", nbytes=8 << 20, trials=0)
    with pytest.raises(UserError):
        measure_memory_bandwidth("cpu", nbytes=1024)


@pytest.mark.gpu
def test_decode_on_gpu(tok):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    model = make_llama().to("cuda", torch.float16)
    bw = measure_memory_bandwidth("cuda", nbytes=256 << 20, trials=3)
    assert bw.threads is None and "CUDA events" in bw.method
    o = opts(batch_sizes=(1, 4))
    records = profile_decode(model, tok, o, device="cuda", bandwidth=bw)
    for r in records:
        check_record_structure(r, o)
        assert r.peak_gpu_allocated_bytes and r.peak_gpu_allocated_bytes > 0
        assert r.kv_cache_bytes == 2 * 2 * 2 * 16 * 2 * r.batch_size * 13
        assert "flash=" in r.attention_backend and "cudnn=" in r.attention_backend
        assert decode_figures([r]).mbu is not None
