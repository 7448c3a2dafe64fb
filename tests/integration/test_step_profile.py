"""Step attribution, anatomy and the prompt sweep on tiny real models (CPU)."""

from __future__ import annotations

import json

import pytest
import torch
import transformers

from profiler.analysis.anatomy import KV_ROW, anatomy_shares
from profiler.analysis.decode_metrics import decode_figures, step_attribution
from profiler.decode.anatomy import group_of, model_anatomy
from profiler.decode.loop import profile_decode
from profiler.decode.model_facts import weight_read_bytes
from profiler.machine.matmul import measure_matmul
from profiler.records.job import DecodeSpec
from profiler.records.run import ModelInfo
from tests.support.tiny import write_tokenizer

VOCAB = 256


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models on a shared 2-core machine: no spinning threads
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tok")
    write_tokenizer(folder, VOCAB)
    return transformers.AutoTokenizer.from_pretrained(folder)


def llama(tied: bool) -> transformers.PreTrainedModel:
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=VOCAB, max_position_embeddings=256,
        tie_word_embeddings=tied, eos_token_id=1, pad_token_id=0,
    )  # fmt: skip
    return transformers.LlamaForCausalLM(cfg).eval()


def test_anatomy_counts_tied_weights_once_and_matches_the_read_bytes():
    for tied in (True, False):
        model = llama(tied)
        a = model_anatomy(model)
        groups = {g.name: g for g in a.groups}
        emb = VOCAB * 64 * 4  # float32 table
        assert a.tied is tied
        assert groups["embeddings"].load_bytes == emb
        assert ("head" in groups) is not tied  # tied: the head is the embedding table
        unique = {p.data_ptr(): p.numel() * p.element_size() for p in model.parameters()}
        assert sum(g.load_bytes for g in a.groups) == sum(unique.values())
        read, left_out = weight_read_bytes(model)
        assert sum(g.read_bytes for g in a.groups) == read
        assert groups["embeddings"].read_bytes == (emb if tied else 0)
        assert left_out == (0 if tied else emb)
        # attention: q (64x64) + k, v (64x32 each, 2 KV heads) + o (64x64), 2 layers
        assert groups["attention"].params == 2 * (64 * 64 * 2 + 64 * 32 * 2)
        assert groups["mlp"].params == 2 * 3 * 64 * 128
        assert groups["norms"].params == 2 * 2 * 64 + 64
    back = ModelInfo.from_dict(
        json.loads(json.dumps(ModelInfo("m", "local", "/x", anatomy=a).to_dict()))
    )
    assert back.anatomy == a


def test_anatomy_shares_add_up_with_the_kv_row():
    a = model_anatomy(llama(tied=False))
    read = sum(g.read_bytes for g in a.groups)
    rows = anatomy_shares(a, bytes_per_step=read + 1000.0)
    assert rows[-1].name == KV_ROW and rows[-1].step_bytes == 1000.0
    assert sum(r.step_share or 0 for r in rows) == pytest.approx(1.0)
    assert sum(r.load_share or 0 for r in rows) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("name", "group"),
    [
        ("model.layers.0.post_attention_layernorm.weight", "norms"),
        ("model.layers.0.self_attn.q_proj.weight", "attention"),
        ("model.layers.3.mlp.down_proj.weight", "mlp"),
        ("transformer.h.0.attn.c_attn.weight", "attention"),
        ("transformer.wpe.weight", "embeddings"),
        ("lm_head.weight", "head"),
        ("model.norm.weight", "norms"),
    ],
)
def test_group_of_parameter_names(name, group):
    assert group_of(name) == group


def test_decode_records_carry_step_profile_matmul_rate_and_energy_note(tok):
    model = llama(tied=True)
    spec = DecodeSpec(new_tokens=6, prompt_tokens=8, prompt_sweep=(8, 40), warm_calls=2)
    matmul = measure_matmul("cpu", "float32", n=128, trials=1)
    records = profile_decode(model, tok, spec, device="cpu", bandwidth=None, matmul=matmul)
    assert [r.prompt_tokens for r in records] == [8, 40]
    for r in records:
        p = r.step_profile
        assert p is not None and p.steps == 5
        assert p.busy_s is not None and p.busy_s > 0 and p.launches_per_step > 0
        assert r.matmul_tflops == matmul.tflops and r.matmul_dtype == "float32"
        assert r.energy_note is not None and "CPU" in r.energy_note
        assert all(c.energy_j is None for c in r.calls)
    f = decode_figures([records[0]])
    a = step_attribution([records[0]], f)
    assert a is not None and a.parts_s == pytest.approx(f.step.median)


@pytest.mark.gpu
def test_step_profile_and_energy_on_gpu(tok):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from profiler.analysis.decode_metrics import decode_energy
    from profiler.measure.energy import EnergyMeter

    model = llama(tied=False).to("cuda", torch.bfloat16)
    spec = DecodeSpec(new_tokens=16, prompt_tokens=8, warm_calls=2)
    matmul = measure_matmul("cuda", "bfloat16", n=1024, trials=2)
    (r,) = profile_decode(model, tok, spec, device="cuda", bandwidth=None, matmul=matmul)
    p = r.step_profile
    assert p is not None and p.steps == 15
    # 2 layers of a Llama: dozens of kernels per step, each launched from the host
    assert p.kernels_per_step is not None and p.kernels_per_step >= 20
    assert p.launches_per_step is not None and p.launches_per_step >= 20
    assert p.busy_s is not None and 0 < p.busy_s < p.profiled_step_s
    if EnergyMeter("cuda").available:
        e = decode_energy([r])
        assert e is not None and e.joules_per_token > 0 and e.mean_power_w > 0
    else:
        assert r.energy_note is not None and "NVML" in r.energy_note
