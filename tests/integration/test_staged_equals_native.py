"""The staged view must build the very model from_pretrained builds."""

from __future__ import annotations

import pytest
import torch

from profiler.load.common import LoadOptions
from profiler.load.staged import load_staged
from profiler.measure.recorder import Recorder
from tests.support.tiny import make_tiny_model

CASES = {
    "llama-bf16-untied": dict(arch="llama", dtype="bfloat16", tied=False),
    "llama-tied-sharded": dict(arch="llama", dtype="bfloat16", tied=True, max_shard_size="100KB"),
    "gpt2-fp32-bin": dict(arch="gpt2", dtype="float32", tied=True, fmt="bin"),
}


def _native(folder, dtype):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype)).eval()


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", ["auto", "float16"])
def test_staged_model_equals_from_pretrained(tmp_path, case, dtype):
    kw = CASES[case]
    folder = make_tiny_model(tmp_path / case, **kw)
    rec = Recorder(progress=False)
    loaded = load_staged(folder, LoadOptions(dtype=dtype), rec)
    resolved = kw["dtype"] if dtype == "auto" else dtype
    assert loaded.dtype_resolved == resolved
    native = _native(folder, resolved)
    staged = loaded.model
    assert not staged.training and not native.training
    a, b = staged.state_dict(), native.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        assert a[k].device == b[k].device, k
        assert torch.equal(a[k], b[k]), k
    bufs_a, bufs_b = dict(staged.named_buffers()), dict(native.named_buffers())
    assert bufs_a.keys() == bufs_b.keys()
    for k in bufs_a:
        assert torch.equal(bufs_a[k], bufs_b[k]), k
    tied_a = staged.get_output_embeddings().weight is staged.get_input_embeddings().weight
    tied_b = native.get_output_embeddings().weight is native.get_input_embeddings().weight
    assert tied_a == tied_b == kw["tied"]

    # Stage records: every stage present once, byte counts consistent with the files.
    names = [r.name for r in rec.records]
    for expected in (
        "tokenizer",
        "config",
        "model_init",
        "weight_read",
        "deserialize",
        "dtype_cast",
        "h2d_copy",
        "attach",
        "eval",
    ):
        assert names.count(expected) == 1, expected
    read = next(r for r in rec.records if r.name == "weight_read")
    assert (
        read.bytes
        == loaded.weight_bytes
        == sum(p.stat().st_size for p in folder.iterdir() if p.suffix in (".safetensors", ".bin"))
    )
    cast = next(r for r in rec.records if r.name == "dtype_cast")
    if resolved == kw["dtype"]:
        assert cast.status == "skipped" and kw["dtype"] in cast.notes[0]
    else:
        assert cast.status == "ok" and cast.bytes > 0
    h2d = next(r for r in rec.records if r.name == "h2d_copy")
    assert h2d.status == "skipped" and "cpu" in h2d.notes[0]


def test_same_output_logits(tmp_path):
    folder = make_tiny_model(tmp_path / "m", arch="llama", dtype="float32")
    staged = load_staged(folder, LoadOptions(), Recorder(progress=False)).model
    native = _native(folder, "float32")
    ids = torch.tensor([[2, 5, 9, 11]])
    with torch.no_grad():
        assert torch.equal(staged(ids).logits, native(ids).logits)


@pytest.mark.parametrize("dtype", ["auto", "float16"])
def test_fast_path_model_equals_from_pretrained(tmp_path, dtype):
    from profiler.load.fast import load_fast

    folder = make_tiny_model(
        tmp_path / "m", arch="llama", dtype="bfloat16", tied=True, max_shard_size="100KB"
    )
    rec = Recorder(progress=False)
    loaded = load_fast(folder, LoadOptions(dtype=dtype), rec, threads=3, chunk_bytes=4096)
    native = _native(folder, loaded.dtype_resolved)
    a, b = loaded.model.state_dict(), native.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
    rc = next(r for r in rec.records if r.name == "read_copy")
    assert rc.bytes == loaded.weight_bytes


def test_encoder_loads_as_declared_and_decode_is_skipped(tmp_path):
    """An encoder (BERT) loads as the class its config declares; decode gives a reason."""
    from transformers import BertConfig, BertForMaskedLM

    from profiler.decode.model_facts import decode_skip_reason
    from tests.support.tiny import write_tokenizer

    folder = tmp_path / "bert"
    cfg = BertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        vocab_size=128,
        max_position_embeddings=64,
    )
    BertForMaskedLM(cfg).save_pretrained(folder)
    write_tokenizer(folder, 128)
    loaded = load_staged(folder, LoadOptions(), Recorder(progress=False))
    assert type(loaded.model).__name__ == "BertForMaskedLM"
    native = BertForMaskedLM.from_pretrained(folder).eval()
    a, b = loaded.model.state_dict(), native.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    reason = decode_skip_reason(loaded.model)
    assert reason and "\n" not in reason


def _shared_stages(rec: Recorder) -> dict[str, tuple]:
    """What the stages both views share recorded: status, notes, counter names."""
    shared = ("tokenizer", "config", "model_init", "attach", "eval")
    return {
        r.name: (r.status, r.notes, sorted(r.counters)) for r in rec.records if r.name in shared
    }


def test_fast_path_and_staged_view_record_the_shared_stages_alike(tmp_path):
    """The fast path runs the staged view's own tokenizer/config/model_init/attach/eval
    stages: same counters and notes (a copy of them had drifted: no vocab_size, no note
    for a missing generation_config.json, a missing-weights error without an example)."""
    from profiler.load.fast import load_fast

    folder = make_tiny_model(tmp_path / "m", arch="llama", dtype="bfloat16")
    (folder / "generation_config.json").unlink()
    staged, fast = Recorder(progress=False), Recorder(progress=False)
    load_staged(folder, LoadOptions(), staged)
    load_fast(folder, LoadOptions(), fast)
    assert _shared_stages(fast) == _shared_stages(staged)
    assert "no generation_config.json" in _shared_stages(fast)["config"][1][0]
    assert "vocab_size" in _shared_stages(fast)["tokenizer"][2]


def test_a_missing_weight_is_reported_alike_by_both_views(tmp_path):
    from safetensors.torch import load_file, save_file

    from profiler.errors import UserError
    from profiler.load.fast import load_fast

    folder = make_tiny_model(tmp_path / "m", arch="llama", dtype="float32")
    weights = load_file(str(folder / "model.safetensors"))
    del weights["model.norm.weight"]
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    messages = []
    for load in (load_staged, load_fast):
        with pytest.raises(UserError) as e:
            load(folder, LoadOptions(), Recorder(progress=False))
        messages.append(str(e.value))
    assert messages[0] == messages[1]
    assert "model.norm.weight" in messages[0]


@pytest.mark.gpu
@pytest.mark.parametrize("view", ["staged", "staged-pinned", "fast"])
def test_cuda_loads_equal_from_pretrained_on_the_device(tmp_path, view):
    """On a GPU: the staged view (pageable and pinned) and the fast path (pinned
    chunks, one stream per reader thread) give the model from_pretrained + .to()."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from profiler.load.fast import load_fast
    from profiler.measure.gpu import GpuProbe

    folder = make_tiny_model(
        tmp_path / "m", arch="llama", dtype="bfloat16", tied=True, max_shard_size="100KB"
    )
    gpu = GpuProbe(0)
    rec = Recorder(gpu=gpu, sync=torch.cuda.synchronize, progress=False)
    options = LoadOptions(dtype="float16", device="cuda:0", pinned=view == "staged-pinned")
    if view == "fast":
        loaded = load_fast(folder, options, rec, threads=3, chunk_bytes=4096)
    else:
        loaded = load_staged(folder, options, rec)
    native = _native(folder, "float16").to("cuda:0")
    a, b = loaded.model.state_dict(), native.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].device == b[k].device and a[k].dtype == b[k].dtype, k
        assert torch.equal(a[k], b[k]), k
    assert gpu.pci_bus_id is not None and gpu.note is None
    assert all(r.memory is None or r.memory.after.gpu_used_bytes for r in rec.records)
