"""Architectures of well-known models, for building synthetic copies with random weights.

Each :class:`Preset` holds the hyper-parameters of a published checkpoint's
``config.json`` (the values that decide tensor shapes), the dtype the checkpoint is
stored in on the hub, how the hub splits it into files, its tokenizer's special
tokens, and the parameter count the model card publishes. Pure data and
arithmetic: nothing here imports torch, so ``llmprof models`` lists presets fast.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from profiler.errors import UserError

# Bytes per element of the storage dtypes a preset may be built in.
DTYPE_BYTES: Mapping[str, int] = MappingProxyType({"float32": 4, "bfloat16": 2, "float16": 2})

_DTYPE_ALIASES: Mapping[str, str] = MappingProxyType(
    {
        "float32": "float32",
        "fp32": "float32",
        "f32": "float32",
        "float": "float32",
        "bfloat16": "bfloat16",
        "bf16": "bfloat16",
        "float16": "float16",
        "fp16": "float16",
        "f16": "float16",
        "half": "float16",
    }
)


def normalize_dtype(name: str) -> str:
    """Canonical torch dtype name ("bf16" -> "bfloat16"); UserError for anything else."""
    key = name.strip().lower().removeprefix("torch.")
    if key not in _DTYPE_ALIASES:
        raise UserError(f"unknown storage dtype {name!r}: use one of float32, bfloat16, float16")
    return _DTYPE_ALIASES[key]


@dataclass(frozen=True)
class TokenizerSpec:
    """What the generated tokenizer must share with the real one.

    ``special_tokens`` pins (id, text) pairs at the ids the real tokenizer gives
    them; every other id up to the vocabulary size is filled by generated
    byte-level BPE tokens. ``chat_template`` names a template family
    (see :mod:`profiler.sources.tokenizer_gen`), or None for base models without one.
    """

    special_tokens: tuple[tuple[int, str], ...]
    eos_token: str
    bos_token: str | None = None
    pad_token: str | None = None
    unk_token: str | None = None
    chat_template: str | None = None
    add_bos: bool = False  # the real tokenizer prepends bos_token when encoding


@dataclass(frozen=True)
class Preset:
    """The architecture of one published model, and how its checkpoint is stored."""

    name: str
    model_type: str  # transformers' model_type
    architecture: str  # transformers class written to config.json
    config: Mapping[str, Any]  # shape-defining config.json values of the real checkpoint
    storage_dtype: str  # dtype of the real checkpoint's weight files
    tokenizer: TokenizerSpec
    description: str
    published_parameters: int | None = None  # as the model card states it (rounded)
    published_label: str | None = None  # the figure as published, e.g. "7.62B"
    original: str | None = None  # hub id of the checkpoint whose config this mirrors
    default_max_shard_size: str | None = None  # how the hub splits its weight files

    @property
    def vocab_size(self) -> int:
        return int(self.config["vocab_size"])

    @property
    def tied(self) -> bool:
        return bool(self.config.get("tie_word_embeddings", True))


def _cfg(**kw: Any) -> Mapping[str, Any]:
    return MappingProxyType(dict(kw))


_CHATML_SPECIALS = ((0, "<|endoftext|>"), (1, "<|im_start|>"), (2, "<|im_end|>"))

_SMOLLM2_SPECIALS = tuple(
    enumerate(
        (
            "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<repo_name>", "<reponame>",
            "<file_sep>", "<filename>", "<gh_stars>", "<issue_start>", "<issue_comment>",
            "<issue_closed>", "<jupyter_start>", "<jupyter_text>", "<jupyter_code>",
            "<jupyter_output>", "<jupyter_script>", "<empty_output>",
        )
    )
)  # fmt: skip


def _llama3_specials() -> tuple[tuple[int, str], ...]:
    # Llama 3 reserves ids 128000..128255 for special tokens; a few are named, the
    # rest are numbered placeholders, in this order.
    named = {
        128000: "<|begin_of_text|>",
        128001: "<|end_of_text|>",
        128006: "<|start_header_id|>",
        128007: "<|end_header_id|>",
        128009: "<|eot_id|>",
    }
    out, reserved = [], 0
    for i in range(128000, 128256):
        if i in named:
            out.append((i, named[i]))
        else:
            out.append((i, f"<|reserved_special_token_{reserved}|>"))
            reserved += 1
    return tuple(out)


_QWEN2_TOKENIZER = TokenizerSpec(
    special_tokens=((151643, "<|endoftext|>"), (151644, "<|im_start|>"), (151645, "<|im_end|>")),
    eos_token="<|endoftext|>",
    pad_token="<|endoftext|>",
    chat_template="chatml",
)


def _gpt2_tokenizer(vocab_size: int) -> TokenizerSpec:
    eot = "<|endoftext|>"
    return TokenizerSpec(
        special_tokens=((vocab_size - 1, eot),),
        eos_token=eot,
        bos_token=eot,
        unk_token=eot,
    )


def _gpt2_config(
    n_layer: int, n_embd: int, n_head: int, vocab_size: int = 50257, n_positions: int = 1024
) -> Mapping[str, Any]:
    return _cfg(
        activation_function="gelu_new",
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_head,
        n_positions=n_positions,
        vocab_size=vocab_size,
        layer_norm_epsilon=1e-5,
        initializer_range=0.02,
        bos_token_id=vocab_size - 1,
        eos_token_id=vocab_size - 1,
        tie_word_embeddings=True,
    )


def _qwen2_config(
    hidden: int,
    layers: int,
    heads: int,
    kv_heads: int,
    intermediate: int,
    vocab_size: int,
    tied: bool,
) -> Mapping[str, Any]:
    return _cfg(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        intermediate_size=intermediate,
        vocab_size=vocab_size,
        tie_word_embeddings=tied,
        hidden_act="silu",
        max_position_embeddings=131072,
        max_window_layers=layers,
        rms_norm_eps=1e-6,
        rope_theta=1000000.0,
        use_sliding_window=False,
        sliding_window=131072,
        initializer_range=0.02,
        bos_token_id=151643,
        eos_token_id=151643,
    )


_PRESET_LIST: tuple[Preset, ...] = (
    Preset(
        name="tiny",
        model_type="llama",
        architecture="LlamaForCausalLM",
        config=_cfg(
            hidden_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=352,
            vocab_size=4096,
            tie_word_embeddings=False,
            hidden_act="silu",
            max_position_embeddings=2048,
            rms_norm_eps=1e-5,
            rope_theta=10000.0,
            attention_bias=False,
            mlp_bias=False,
            initializer_range=0.02,
            bos_token_id=1,
            eos_token_id=2,
        ),
        storage_dtype="bfloat16",
        tokenizer=TokenizerSpec(
            special_tokens=_CHATML_SPECIALS,
            eos_token="<|im_end|>",
            bos_token="<|im_start|>",
            pad_token="<|im_end|>",
            chat_template="chatml",
        ),
        description="llama-style, 2 layers, untied head: a few MB, for tests",
    ),
    Preset(
        name="tiny-gpt2",
        model_type="gpt2",
        architecture="GPT2LMHeadModel",
        config=_gpt2_config(n_layer=2, n_embd=128, n_head=4, vocab_size=2048, n_positions=256),
        storage_dtype="float32",
        tokenizer=_gpt2_tokenizer(2048),
        description="gpt2-style, 2 layers, tied head, float32: a few MB, for tests",
    ),
    Preset(
        name="smollm2-135m",
        model_type="llama",
        architecture="LlamaForCausalLM",
        config=_cfg(
            hidden_size=576,
            num_hidden_layers=30,
            num_attention_heads=9,
            num_key_value_heads=3,
            intermediate_size=1536,
            vocab_size=49152,
            tie_word_embeddings=True,
            hidden_act="silu",
            max_position_embeddings=8192,
            rms_norm_eps=1e-5,
            rope_theta=100000.0,
            attention_bias=False,
            mlp_bias=False,
            initializer_range=0.041666666666666664,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=2,
        ),
        storage_dtype="bfloat16",
        tokenizer=TokenizerSpec(
            special_tokens=_SMOLLM2_SPECIALS,
            eos_token="<|im_end|>",
            bos_token="<|im_start|>",
            pad_token="<|im_end|>",
            unk_token="<|endoftext|>",
            chat_template="chatml",
        ),
        description="SmolLM2-135M(-Instruct) shape",
        published_parameters=135_000_000,
        published_label="135M",
        original="HuggingFaceTB/SmolLM2-135M-Instruct",
    ),
    Preset(
        name="distilgpt2",
        model_type="gpt2",
        architecture="GPT2LMHeadModel",
        config=_gpt2_config(n_layer=6, n_embd=768, n_head=12),
        storage_dtype="float32",
        tokenizer=_gpt2_tokenizer(50257),
        description="DistilGPT2: 6 layers of GPT-2 small",
        published_parameters=81_900_000,
        published_label="82M (81.9M)",
        original="distilbert/distilgpt2",
    ),
    Preset(
        name="gpt2",
        model_type="gpt2",
        architecture="GPT2LMHeadModel",
        config=_gpt2_config(n_layer=12, n_embd=768, n_head=12),
        storage_dtype="float32",
        tokenizer=_gpt2_tokenizer(50257),
        description="GPT-2 small",
        published_parameters=124_000_000,
        published_label="124M",
        original="openai-community/gpt2",
    ),
    Preset(
        name="gpt2-xl",
        model_type="gpt2",
        architecture="GPT2LMHeadModel",
        config=_gpt2_config(n_layer=48, n_embd=1600, n_head=25),
        storage_dtype="float32",
        tokenizer=_gpt2_tokenizer(50257),
        description="GPT-2 XL",
        published_parameters=1_560_000_000,
        published_label="1.56B",
        original="openai-community/gpt2-xl",
    ),
    Preset(
        name="qwen2-0.5b",
        model_type="qwen2",
        architecture="Qwen2ForCausalLM",
        config=_qwen2_config(896, 24, 14, 2, 4864, 151936, tied=True),
        storage_dtype="bfloat16",
        tokenizer=_QWEN2_TOKENIZER,
        description="Qwen2-0.5B",
        published_parameters=494_000_000,
        published_label="494M",
        original="Qwen/Qwen2-0.5B",
    ),
    Preset(
        name="qwen2-1.5b",
        model_type="qwen2",
        architecture="Qwen2ForCausalLM",
        config=_qwen2_config(1536, 28, 12, 2, 8960, 151936, tied=True),
        storage_dtype="bfloat16",
        tokenizer=_QWEN2_TOKENIZER,
        description="Qwen2-1.5B",
        published_parameters=1_540_000_000,
        published_label="1.54B",
        original="Qwen/Qwen2-1.5B",
    ),
    Preset(
        name="qwen2-7b",
        model_type="qwen2",
        architecture="Qwen2ForCausalLM",
        config=_qwen2_config(3584, 28, 28, 4, 18944, 152064, tied=False),
        storage_dtype="bfloat16",
        tokenizer=_QWEN2_TOKENIZER,
        description="Qwen2-7B",
        published_parameters=7_620_000_000,
        published_label="7.62B",
        original="Qwen/Qwen2-7B",
        default_max_shard_size="4GB",  # the hub checkpoint is 4 files of ~3.9 GB
    ),
    Preset(
        name="llama-3-8b",
        model_type="llama",
        architecture="LlamaForCausalLM",
        config=_cfg(
            hidden_size=4096,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=8,
            intermediate_size=14336,
            vocab_size=128256,
            tie_word_embeddings=False,
            hidden_act="silu",
            max_position_embeddings=8192,
            rms_norm_eps=1e-5,
            rope_theta=500000.0,
            attention_bias=False,
            mlp_bias=False,
            initializer_range=0.02,
            bos_token_id=128000,
            eos_token_id=128001,
        ),
        storage_dtype="bfloat16",
        tokenizer=TokenizerSpec(
            special_tokens=_llama3_specials(),
            eos_token="<|end_of_text|>",
            bos_token="<|begin_of_text|>",
            chat_template="llama3",
            add_bos=True,
        ),
        description="Meta-Llama-3-8B",
        published_parameters=8_030_000_000,
        published_label="8.03B",
        original="meta-llama/Meta-Llama-3-8B",
        default_max_shard_size="5GB",  # the hub checkpoint is 4 files, the first three ~5 GB
    ),
)

PRESETS: Mapping[str, Preset] = MappingProxyType({p.name: p for p in _PRESET_LIST})


def get_preset(name: str) -> Preset:
    """The preset called ``name``; UserError listing the known ones otherwise."""
    preset = PRESETS.get(name.strip().lower())
    if preset is None:
        raise UserError(
            f"unknown synthetic preset {name!r}: use one of {', '.join(PRESETS)} "
            "(e.g. synthetic:qwen2-0.5b)"
        )
    return preset


def count_parameters(preset: Preset) -> int:
    """Parameters of the preset's model, by arithmetic on its config (tied weights once).

    Mirrors the layer shapes of transformers' Llama, Qwen2 and GPT-2 models; the
    tests check it against a model built on the meta device.
    """
    c = preset.config
    v = int(c["vocab_size"])
    if preset.model_type == "gpt2":
        d, n_layer = int(c["n_embd"]), int(c["n_layer"])
        inner = int(c.get("n_inner") or 4 * d)
        # fmt: off
        per_layer = (
            2 * d                    # ln_1
            + d * 3 * d + 3 * d      # c_attn (fused q, k, v) with bias
            + d * d + d              # attn c_proj
            + 2 * d                  # ln_2
            + d * inner + inner      # mlp c_fc
            + inner * d + d          # mlp c_proj
        )
        # fmt: on
        total = v * d + int(c["n_positions"]) * d + n_layer * per_layer + 2 * d
        if not preset.tied:
            total += v * d
        return total
    if preset.model_type in ("llama", "qwen2"):
        h = int(c["hidden_size"])
        n_heads = int(c["num_attention_heads"])
        n_kv = int(c.get("num_key_value_heads") or n_heads)
        head_dim = int(c.get("head_dim") or h // n_heads)
        inter = int(c["intermediate_size"])
        q, kv = n_heads * head_dim, n_kv * head_dim
        attn = h * q + 2 * h * kv + q * h
        if preset.model_type == "qwen2":
            attn += q + 2 * kv  # Qwen2 always has biases on q, k and v (not on o)
        elif c.get("attention_bias"):
            attn += q + 2 * kv + h
        mlp = 3 * h * inter + (2 * inter + h if c.get("mlp_bias") else 0)
        per_layer = attn + mlp + 2 * h  # two RMSNorms
        total = v * h + int(c["num_hidden_layers"]) * per_layer + h
        if not preset.tied:
            total += v * h
        return total
    raise ValueError(f"no parameter arithmetic for model_type {preset.model_type!r}")


def weight_bytes(preset: Preset, dtype: str | None = None) -> int:
    """Bytes of the weight tensors written to disk at ``dtype`` (default: the preset's)."""
    return count_parameters(preset) * DTYPE_BYTES[normalize_dtype(dtype or preset.storage_dtype)]
