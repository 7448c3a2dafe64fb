"""Which ways of decoding ``llmprof decode --variants`` compares, checked before any work.

No torch here: the command calls :func:`plan_decode_variants` while parsing, so a bad
variant list is one line and exit 2 before any model loads.

The variants
------------
``generate``
    ``model.generate()`` as the user calls it (the model's own generation config:
    a dynamic KV cache, no compilation).
``static``
    ``cache_implementation="static"`` with ``disable_compile=True``: the
    preallocated cache alone, so its effect is not mixed with compilation.
``static-compile``
    ``cache_implementation="static"`` left as transformers runs it. transformers
    (``GenerationMixin._valid_auto_compile_criteria``, 5.x) compiles the decoding
    forward by itself when the cache is compileable (static) and the model sits on
    cuda, xpu, neuron or tpu, with its default ``CompileConfig`` (inductor,
    ``mode="reduce-overhead"``: CUDA graphs, ``fullgraph=False``). The prefill runs
    uncompiled. On CPU it does not compile, so the variant would equal ``static``.
``static-fullgraph``
    The same with ``CompileConfig(fullgraph=True)``: a graph break becomes an error
    instead of a silent fallback to eager code.
``attn:NAME``
    ``generate()`` with the attention implementation ``NAME`` set on the loaded
    model (sdpa, eager; flash_attention_2 when the package imports).
``seed-loop``
    The hand-written loop of the project's seed notes: ``model(ids)`` per token with
    a KV cache, then ``softmax(logits / temperature)`` + ``multinomial`` (argmax at
    temperature 0), one token at a time, reading the token on the host each step.
``graph-loop``
    A decode loop outside ``generate()`` over a static cache whose step (forward +
    argmax) is compiled with ``torch.compile(mode="reduce-overhead", fullgraph=True)``:
    one CUDA graph replay per token and no host synchronisation inside the loop.
    CUDA only; greedy only (the argmax is inside the graph).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from profiler.errors import UserError
from profiler.records.job import DecodeSpec

# Attention implementations transformers 5 knows by name; availability is checked
# separately (flash attention needs its package).
KNOWN_ATTENTION = ("sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention")

# The attention variants of the default list: the ones a stock install can have.
DEFAULT_ATTENTION = ("sdpa", "eager", "flash_attention_2")

FIXED_VARIANTS = (
    "generate",
    "static",
    "static-compile",
    "static-fullgraph",
    "seed-loop",
    "graph-loop",
)

# The variant every other is compared with (speed, output agreement, pay-back).
REFERENCE = "generate"

DESCRIPTIONS = {
    "generate": "generate() as the user calls it (dynamic cache)",
    "static": "static KV cache, compilation disabled",
    "static-compile": "static KV cache, transformers' own auto-compile",
    "static-fullgraph": "static KV cache, CompileConfig(fullgraph=True)",
    "seed-loop": "hand-written token loop with KV cache (seed notes)",
    "graph-loop": "static cache, compiled step in a CUDA graph, no host sync",
}

# Variants whose greedy choice is fixed inside compiled code: no sampling.
GREEDY_ONLY = ("graph-loop",)


@dataclass(frozen=True)
class PlannedVariant:
    """One variant to run, or to list with the reason it cannot run here."""

    name: str
    description: str
    skip_reason: str | None = None


def attention_of(name: str) -> str | None:
    """The attention implementation an ``attn:NAME`` variant sets; None otherwise."""
    return name.split(":", 1)[1] if name.startswith("attn:") else None


def describe(name: str) -> str:
    attn = attention_of(name)
    if attn is not None:
        return f"generate() with attn_implementation={attn}"
    return DESCRIPTIONS.get(name, name)


def _check_name(name: str) -> None:
    attn = attention_of(name)
    if attn is not None:
        if attn not in KNOWN_ATTENTION:
            raise UserError(
                f"--variants {name}: unknown attention implementation {attn!r}: use one "
                f"of {', '.join(KNOWN_ATTENTION)}"
            )
        return
    if name not in FIXED_VARIANTS:
        known = ", ".join((*FIXED_VARIANTS, "attn:NAME"))
        raise UserError(f"--variants: unknown variant {name!r}: use some of {known}")


def parse_variant_list(text: str | None) -> tuple[str, ...]:
    """The names in ``--variants a,b`` (all of them for an empty or ``all`` value)."""
    if text is None or text.strip() in ("", "all"):
        attn = tuple(f"attn:{a}" for a in DEFAULT_ATTENTION)
        return (*FIXED_VARIANTS[:4], *attn, *FIXED_VARIANTS[4:])
    names = tuple(dict.fromkeys(x.strip() for x in text.split(",") if x.strip()))
    for name in names:
        _check_name(name)
    return names


def check_variant_options(
    names: tuple[str, ...], spec: DecodeSpec, *, repeat: int, in_process: bool
) -> None:
    """Raise :class:`UserError` for options that make no sense with these variants."""
    if in_process:
        raise UserError(
            "--variants runs every variant in a fresh process (compiled code and caches "
            "would leak between them): drop --in-process"
        )
    if len(spec.batch_sizes) != 1:
        raise UserError(
            "--variants compares at one batch size: pass a single --batch (run again "
            "for another size)"
        )
    if repeat != 1:
        raise UserError("--variants runs each variant once: drop --repeat (use --warm-calls)")
    for name in names:
        if name in GREEDY_ONLY and spec.temperature > 0:
            raise UserError(
                f"--variants {name} decodes greedily (its argmax is inside the CUDA "
                "graph): drop --temperature or leave the variant out"
            )


def _skip_reason(name: str, device: str) -> str | None:
    cuda = device.startswith("cuda")
    if name == "graph-loop" and not cuda:
        return "needs CUDA graphs: CUDA devices only"
    if name in ("static-compile", "static-fullgraph") and not cuda:
        return (
            "transformers auto-compiles a static cache on cuda/xpu/neuron/tpu only; on "
            "cpu this would run the same code as `static`"
        )
    attn = attention_of(name)
    if attn and attn.startswith("flash_attention") and not cuda:
        return f"{attn} runs on CUDA devices only"
    if attn == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
        return "flash_attn is not installed"
    if attn == "flash_attention_3" and importlib.util.find_spec("flash_attn_interface") is None:
        return "flash_attn_interface (flash attention 3) is not installed"
    return None


def plan_decode_variants(names: tuple[str, ...], device: str) -> list[PlannedVariant]:
    """The variants in the order asked, the reference first, each with why it cannot
    run on ``device`` where that is known before loading."""
    ordered = (REFERENCE, *(n for n in names if n != REFERENCE))
    return [PlannedVariant(n, describe(n), _skip_reason(n, device)) for n in ordered]
