"""Tiny real models for tests: real architectures, random weights, real files."""

from __future__ import annotations

from pathlib import Path


def write_tokenizer(folder: Path, vocab_size: int) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<eos>": 1}
    vocab.update({f"w{i}": i for i in range(2, vocab_size)})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", unk_token="<unk>")
    fast.chat_template = (
        "{% for m in messages %}w2 {{ m['content'] }} w3 {% endfor %}"
        "{% if add_generation_prompt %}w4{% endif %}"
    )
    fast.save_pretrained(folder)


def make_tiny_model(
    folder: Path,
    arch: str = "llama",
    dtype: str = "bfloat16",
    tied: bool = False,
    fmt: str = "safetensors",
    max_shard_size: str | None = None,
    vocab_size: int = 512,
) -> Path:
    """Save a tiny causal LM with random weights to ``folder`` (created)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    if arch == "llama":
        cfg = LlamaConfig(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=vocab_size,
            max_position_embeddings=256,
            tie_word_embeddings=tied,
            bos_token_id=1,
            eos_token_id=1,
            pad_token_id=1,
        )
        model = LlamaForCausalLM(cfg)
    elif arch == "gpt2":
        cfg = GPT2Config(
            n_embd=64,
            n_layer=2,
            n_head=4,
            vocab_size=vocab_size,
            n_positions=256,
            bos_token_id=1,
            eos_token_id=1,
        )
        model = GPT2LMHeadModel(cfg)
    else:
        raise ValueError(arch)
    model = model.to(getattr(torch, dtype))
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "bin":
        model.config.save_pretrained(folder)
        model.generation_config.save_pretrained(folder)
        sd = {k: v.contiguous() for k, v in model.state_dict().items()}
        if tied:
            sd.pop("lm_head.weight", None)
        torch.save(sd, folder / "pytorch_model.bin")
    else:
        kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
        model.save_pretrained(folder, **kwargs)
    write_tokenizer(folder, vocab_size)
    return folder


def write_stub_model(
    folder: Path, dtype: str = "BF16", *, bin_twin: bool = False, both_formats: bool = False
) -> Path:
    """A model folder whose safetensors header is real and whose weights are 8 bytes.

    Enough for what the parent process reads before any child runs (config,
    checkpoint headers, the storage dtype, file residency), without torch.
    ``bin_twin`` adds the ``<folder>-bin`` sibling a .bin variant loads;
    ``both_formats`` puts a ``pytorch_model.bin`` beside the safetensors file.
    """
    import json
    import struct

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    # The parent checks tokenizer files and that a tensor's shape fills its bytes.
    (folder / "tokenizer.json").write_text(json.dumps({"model": {"vocab": {"<unk>": 0}}}))
    nbytes = 4 * {"F64": 8, "F32": 4, "F16": 2, "BF16": 2}.get(dtype, 1)
    header = json.dumps(
        {"w": {"dtype": dtype, "shape": [2, 2], "data_offsets": [0, nbytes]}, "__metadata__": {}}
    ).encode()
    with open(folder / "model.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header + bytes(nbytes))
    if both_formats:
        (folder / "pytorch_model.bin").write_bytes(bytes(8))
    if bin_twin:
        twin = folder.parent / (folder.name + "-bin")
        twin.mkdir(exist_ok=True)
        (twin / "config.json").write_text(json.dumps({"model_type": "llama"}))
        (twin / "pytorch_model.bin").write_bytes(bytes(8))
    return folder
