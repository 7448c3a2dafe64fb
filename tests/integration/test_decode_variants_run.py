"""Decode variants measured on a tiny random Llama built in the test: every variant
that runs on CPU produces the same greedy tokens as plain generate(), the timed
token counts are exact, and the hand-written graph loop (run eagerly here) agrees."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from profiler.decode.hand_loops import GraphLoop  # noqa: E402
from profiler.decode.prompt import build_inputs  # noqa: E402
from profiler.decode.variant_child import run_decode_variant  # noqa: E402
from profiler.records.job import DecodeSpec  # noqa: E402
from tests.integration.test_decode import make_llama, make_tokenizer  # noqa: E402

SPEC = DecodeSpec(new_tokens=6, prompt_tokens=10, warm_calls=2)


@pytest.fixture(scope="module")
def tok():
    return make_tokenizer()


@pytest.fixture(scope="module")
def reference(tok):
    recs, facts = run_decode_variant(
        make_llama(), tok, SPEC, name="generate", device="cpu", bandwidth=None
    )
    return recs, facts


def test_generate_variant_records(reference):
    recs, facts = reference
    (rec,) = recs
    assert rec.first_call is not None and len(rec.calls) == 2
    assert all(len(c.token_times_ns) == 6 for c in (rec.first_call, *rec.calls))
    assert len(facts.tokens) == len(facts.top2_gaps) == len(facts.top1_logits) == 6
    assert all(g >= 0 for g in facts.top2_gaps)
    assert facts.new_length_prompt == 18 and facts.new_length_first_s is not None
    assert facts.memory_source == "process RSS" and facts.compiled is False


@pytest.mark.parametrize("name", ["static", "seed-loop", "attn:eager"])
def test_cpu_variants_match_generate(tok, reference, name):
    recs, facts = run_decode_variant(
        make_llama(), tok, SPEC, name=name, device="cpu", bandwidth=None
    )
    assert facts.skip_reason is None
    assert facts.tokens == reference[1].tokens
    assert len(recs[0].calls[0].token_times_ns) == 6


def test_graph_loop_eager_matches_generate(tok, reference):
    model = make_llama()
    loop = GraphLoop(model, 10 + 6, 1, "cpu", compiled=False)
    res = loop.call(build_inputs(tok, SPEC, 1, "cpu"), 6, collect=True)
    assert res.tokens == list(reference[1].tokens)
    assert len(res.call.token_times_ns) == 6
    assert res.gaps == pytest.approx(list(reference[1].top2_gaps), abs=1e-4)


def test_graph_loop_on_cpu_is_listed_not_run(tok):
    recs, facts = run_decode_variant(
        make_llama(), tok, SPEC, name="graph-loop", device="cpu", bandwidth=None
    )
    assert recs == [] and facts.skip_reason == "needs CUDA graphs: CUDA devices only"


def test_eos_is_masked_like_min_new_tokens():
    from profiler.decode.hand_loops import no_eos, top2

    logits = torch.tensor([[0.0, 1.0, 5.0, 4.5]])  # EOS (2) on top, then id 3
    masked = no_eos(logits, [2])
    assert int(masked.argmax()) == 3
    assert top2(masked) == (4.5, 3.5)
    assert logits[0, 2] == 5.0  # the model's own logits untouched


@pytest.mark.gpu
def test_graph_loop_compiled_on_cuda_matches_generate(tok):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    model = make_llama().to("cuda")
    recs, facts = run_decode_variant(
        model, tok, SPEC, name="generate", device="cuda", bandwidth=None
    )
    _, graph = run_decode_variant(
        model, tok, SPEC, name="graph-loop", device="cuda", bandwidth=None
    )
    assert graph.skip_reason is None and graph.compiled
    assert graph.tokens == facts.tokens
