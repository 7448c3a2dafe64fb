"""Measure a loaded model's anatomy: bytes by module group, from its parameters.

Each unique tensor counts once (tied input embedding and ``lm_head`` share one
storage: it is counted under the group of the first name torch gives it, the
embeddings). A tensor's decode-step bytes are its bytes unless it is a lookup-only
embedding table (:func:`profiler.decode.model_facts.lookup_table_keys`), so the
groups' read bytes add up to the weight bytes the MBU counts.
"""

from __future__ import annotations

from typing import Any

from profiler.decode.model_facts import lookup_table_keys, tensor_key
from profiler.records.anatomy import GROUPS, AnatomyGroup, ModelAnatomy

# Name fragments per group, tried in this order: norms first, because
# "post_attention_layernorm" is a norm, not attention.
PATTERNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("norms", ("norm", "ln_", ".ln", "layer_norm")),
    ("head", ("lm_head", "embed_out", "output.weight")),
    ("embeddings", ("embed", "wte", "wpe", "tok_embeddings")),
    ("attention", ("attn", "attention", "q_proj", "k_proj", "v_proj", "o_proj")),
    ("mlp", ("mlp", "ffn", "feed_forward", "gate_proj", "up_proj", "down_proj", "fc")),
)


def group_of(name: str) -> str:
    """The module group of a parameter name (``model.layers.0.mlp.up_proj.weight``)."""
    low = name.lower()
    for group, fragments in PATTERNS:
        if any(f in low for f in fragments):
            return group
    return "other"


def model_anatomy(model: Any) -> ModelAnatomy:
    """Bytes by module group of ``model`` (see the module docstring)."""
    lookup = lookup_table_keys(model)
    seen: dict[tuple[int, int, str], str] = {}
    sums = {g: [0, 0, 0, 0] for g in GROUPS}  # params, load bytes, read bytes, tensors
    tied = False
    for name, p in model.named_parameters(remove_duplicate=False):
        k = tensor_key(p)
        if k in seen:
            tied = tied or {seen[k], group_of(name)} == {"embeddings", "head"}
            continue
        group = group_of(name)
        seen[k] = group
        nbytes = p.numel() * p.element_size()
        row = sums[group]
        row[0] += p.numel()
        row[1] += nbytes
        row[2] += 0 if k in lookup else nbytes
        row[3] += 1
    groups = tuple(
        AnatomyGroup(name=g, params=v[0], load_bytes=v[1], read_bytes=v[2], tensors=v[3])
        for g, v in sums.items()
        if v[3]
    )
    notes: tuple[str, ...] = ()
    if tied:
        notes = (
            "the output head is tied to the input embedding: counted once, under "
            "embeddings, and read in full every step as the head",
        )
    return ModelAnatomy(groups=groups, tied=tied, notes=notes)
