"""Presets: published hyper-parameters, parameter counts, and the pure helpers around them."""

from __future__ import annotations

import pytest

from profiler.errors import UserError
from profiler.sources.presets import (
    DTYPE_BYTES,
    PRESETS,
    count_parameters,
    get_preset,
    normalize_dtype,
    weight_bytes,
)
from profiler.sources.sizes import parse_size, size_label
from profiler.sources.synthetic import build_spec, plan_shards, shard_file_names


@pytest.fixture(scope="module")
def meta_models():
    """Every preset's model built on the meta device (shapes only, no memory)."""
    from profiler.sources.synthetic import meta_model

    return {name: meta_model(p) for name, p in PRESETS.items()}


@pytest.mark.parametrize("name", list(PRESETS))
def test_meta_parameter_count_matches_arithmetic_and_published(name, meta_models):
    from profiler.sources.synthetic import num_parameters

    preset = PRESETS[name]
    counted = num_parameters(meta_models[name])
    assert counted == count_parameters(preset)
    if preset.published_parameters is not None:
        assert abs(counted - preset.published_parameters) / preset.published_parameters < 0.01


@pytest.mark.parametrize("name", list(PRESETS))
def test_stored_tensors_drop_tied_head_and_match_count(name, meta_models):
    from profiler.sources.synthetic import stored_tensors

    preset = PRESETS[name]
    slots = stored_tensors(meta_models[name])
    names = [s.name for s in slots]
    assert len(names) == len(set(names))
    assert ("lm_head.weight" in names) == (not preset.tied)
    assert sum(s.numel for s in slots) == count_parameters(preset)
    assert any(s.ones for s in slots)  # norm weights are filled with ones
    assert not any(s.ones and "proj" in s.name for s in slots)


def _values(config, *keys):
    return tuple(config[k] for k in keys)


def test_exact_published_configs():
    shape = (
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "intermediate_size",
        "vocab_size",
    )
    q05 = PRESETS["qwen2-0.5b"].config
    assert _values(q05, *shape) == (896, 24, 14, 2, 4864, 151936)
    assert q05["tie_word_embeddings"] is True
    q7 = PRESETS["qwen2-7b"].config
    assert _values(q7, *shape) == (3584, 28, 28, 4, 18944, 152064)
    assert q7["tie_word_embeddings"] is False
    ll = PRESETS["llama-3-8b"].config
    assert _values(ll, *shape) == (4096, 32, 32, 8, 14336, 128256)
    assert ll["rope_theta"] == 500000.0 and ll["tie_word_embeddings"] is False
    for name in ("qwen2-0.5b", "qwen2-1.5b", "qwen2-7b", "llama-3-8b", "smollm2-135m"):
        assert PRESETS[name].storage_dtype == "bfloat16"
    for name, layers in (("distilgpt2", 6), ("gpt2", 12), ("gpt2-xl", 48)):
        g = PRESETS[name]
        assert g.storage_dtype == "float32" and g.tied
        assert (g.config["n_positions"], g.config["vocab_size"], g.config["n_layer"]) == (
            1024,
            50257,
            layers,
        )


def test_required_presets_exist():
    for name in ("tiny", "distilgpt2", "gpt2", "gpt2-xl", "qwen2-0.5b", "qwen2-7b", "llama-3-8b"):
        assert name in PRESETS


@pytest.mark.parametrize("name", list(PRESETS))
def test_tokenizer_spec_consistent_with_config(name):
    preset = PRESETS[name]
    spec = preset.tokenizer
    ids = [i for i, _ in spec.special_tokens]
    texts = [t for _, t in spec.special_tokens]
    assert len(set(ids)) == len(ids) and len(set(texts)) == len(texts)
    assert all(0 <= i < preset.vocab_size for i in ids)
    by_text = {t: i for i, t in spec.special_tokens}
    assert by_text[spec.eos_token] == preset.config["eos_token_id"]
    if spec.bos_token is not None:
        assert spec.bos_token in by_text
    for token in (spec.pad_token, spec.unk_token):
        assert token is None or token in by_text


def test_llama3_special_token_block():
    spec = PRESETS["llama-3-8b"].tokenizer
    ids = dict(spec.special_tokens)
    assert sorted(ids) == list(range(128000, 128256))
    assert ids[128000] == "<|begin_of_text|>" and ids[128009] == "<|eot_id|>"


def test_unknown_preset_lists_known():
    with pytest.raises(UserError) as err:
        get_preset("qwen9-100b")
    msg = str(err.value)
    assert "qwen9-100b" in msg and "\n" not in msg
    for name in PRESETS:
        assert name in msg


def test_weight_bytes_arithmetic():
    p = PRESETS["qwen2-7b"]
    assert weight_bytes(p) == count_parameters(p) * 2
    assert weight_bytes(p, "float32") == count_parameters(p) * 4
    assert weight_bytes(PRESETS["gpt2"]) == count_parameters(PRESETS["gpt2"]) * 4


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2GB", 2 * 10**9), ("500MB", 5 * 10**8), ("4GiB", 4 * 2**30), ("1000", 1000),
     ("1.5 GB", 1_500_000_000), ("10kb", 10_000), ("3mib", 3 * 2**20)],
)  # fmt: skip
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "GB", "-1GB", "2 parsecs", "0"])
def test_parse_size_rejects(text):
    with pytest.raises(UserError):
        parse_size(text)


@pytest.mark.parametrize("text", ["512M", "1.5g", "2G", "10k", "1T"])
def test_a_bare_unit_letter_is_refused_as_ambiguous(text):
    """The two parsers read "512M" as 512·2**20 (ceilings) and 512·10**6 (shards): the
    one parser asks which one is meant."""
    with pytest.raises(UserError, match="ambiguous") as e:
        parse_size(text, "--size")
    assert str(e.value).startswith(f"--size {text!r}") and "iB" in str(e.value)


def test_size_label_round_trips():
    for n in (4 * 10**9, 5 * 10**8, 2**30, 3 * 2**20, 12345):
        assert parse_size(size_label(n)) == n


def test_normalize_dtype():
    assert normalize_dtype("bf16") == "bfloat16"
    assert normalize_dtype("torch.float16") == "float16"
    assert normalize_dtype("FP32") == "float32"
    assert set(DTYPE_BYTES) == {"float32", "bfloat16", "float16"}
    with pytest.raises(UserError):
        normalize_dtype("int4")


def test_plan_shards_respects_limit_and_order():
    sizes = [("a", 40), ("b", 40), ("c", 30), ("d", 100), ("e", 10)]
    shards = plan_shards(sizes, 80)
    assert shards == [["a", "b"], ["c"], ["d"], ["e"]]
    assert [n for s in shards for n in s] == [n for n, _ in sizes]
    assert plan_shards(sizes, None) == [["a", "b", "c", "d", "e"]]
    assert plan_shards([], 10) == []


def test_shard_file_names():
    assert shard_file_names("safetensors", 1) == ["model.safetensors"]
    assert shard_file_names("bin", 1) == ["pytorch_model.bin"]
    assert shard_file_names("safetensors", 2) == [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ]
    assert shard_file_names("bin", 3)[2] == "pytorch_model-00003-of-00003.bin"


def test_build_spec_defaults_and_overrides():
    spec = build_spec("qwen2-7b")
    assert (spec.dtype, spec.fmt, spec.max_shard_bytes) == ("bfloat16", "safetensors", 4 * 10**9)
    assert spec.folder_name == "synthetic-qwen2-7b-bfloat16-safetensors-shard4GB"
    spec = build_spec("gpt2", dtype="fp16", fmt="bin", max_shard_size="200MB")
    assert spec.folder_name == "synthetic-gpt2-float16-bin-shard200MB"
    assert build_spec("gpt2").max_shard_bytes is None
    assert build_spec("qwen2-7b", max_shard_size="none").folder_name == (
        "synthetic-qwen2-7b-bfloat16-safetensors"
    )
    with pytest.raises(UserError):
        build_spec("gpt2", fmt="gguf")
    with pytest.raises(UserError):
        build_spec("gpt2", dtype="int8")
