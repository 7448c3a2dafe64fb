"""profiler.fastload.from_pretrained returns the model transformers returns: every
tensor, dtype, device, buffer and tie, on several architectures, sharded or not,
tied or not; what it does not support is refused in one line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from profiler.fastload import POINTER, Unsupported, from_pretrained
from tests.support.tiny import make_tiny_model

CASES: dict[str, dict[str, Any]] = {
    "llama-untied": dict(arch="llama", dtype="bfloat16", tied=False),
    "llama-tied-sharded": dict(arch="llama", dtype="bfloat16", tied=True, max_shard_size="100KB"),
    "llama-untied-sharded-fp32": dict(
        arch="llama", dtype="float32", tied=False, max_shard_size="100KB"
    ),
    "gpt2-tied": dict(arch="gpt2", dtype="float32", tied=True),
}


def _native(folder: Path, dtype: Any, device: str) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).to(device).eval()


def assert_same_model(fast: Any, native: Any) -> None:
    assert type(fast) is type(native)
    assert not fast.training and not native.training
    a, b = fast.state_dict(), native.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        assert a[k].device == b[k].device, k
        assert torch.equal(a[k], b[k]), k
    bufs_a, bufs_b = dict(fast.named_buffers()), dict(native.named_buffers())
    assert bufs_a.keys() == bufs_b.keys()
    for k in bufs_a:
        assert bufs_a[k].device == bufs_b[k].device, k
        assert torch.equal(bufs_a[k], bufs_b[k]), k
    tied_a = fast.get_output_embeddings().weight is fast.get_input_embeddings().weight
    tied_b = native.get_output_embeddings().weight is native.get_input_embeddings().weight
    assert tied_a == tied_b
    assert fast.config.to_dict() == native.config.to_dict()


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", ["auto", torch.float16])
def test_fastload_equals_transformers(tmp_path: Path, case: str, dtype: Any) -> None:
    kw = CASES[case]
    folder = make_tiny_model(tmp_path / case, **kw)
    if "sharded" in case:
        assert (folder / "model.safetensors.index.json").is_file()
    fast = from_pretrained(folder, dtype=dtype, device="cpu")
    native = _native(folder, getattr(torch, kw["dtype"]) if dtype == "auto" else dtype, "cpu")
    assert_same_model(fast, native)


@pytest.mark.gpu
@pytest.mark.parametrize("case", CASES)
def test_fastload_equals_transformers_on_gpu(tmp_path: Path, case: str) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    folder = make_tiny_model(tmp_path / case, **CASES[case])
    fast = from_pretrained(folder, dtype=torch.bfloat16, device="cuda")
    assert_same_model(fast, _native(folder, torch.bfloat16, "cuda"))
    again = from_pretrained(folder, dtype=torch.bfloat16, device="cuda")  # pool reused
    assert_same_model(again, fast)


def test_torch_dtype_is_the_same_as_dtype(tmp_path: Path) -> None:
    folder = make_tiny_model(tmp_path / "m", arch="llama", dtype="bfloat16")
    model = from_pretrained(folder, torch_dtype=torch.float16)
    assert {p.dtype for p in model.parameters()} == {torch.float16}


def test_same_logits(tmp_path: Path) -> None:
    folder = make_tiny_model(tmp_path / "m", arch="llama", dtype="float32")
    ids = torch.tensor([[2, 5, 9, 11]])
    with torch.no_grad():
        a = from_pretrained(folder)(ids).logits
        b = _native(folder, torch.float32, "cpu")(ids).logits
    assert torch.equal(a, b)


def test_unsupported_gets_one_line_pointing_to_from_pretrained(tmp_path: Path) -> None:
    binf = make_tiny_model(tmp_path / "bin", arch="gpt2", dtype="float32", tied=True, fmt="bin")
    with pytest.raises(Unsupported) as e:
        from_pretrained(binf)
    assert "bin weights not supported" in str(e.value) and POINTER in str(e.value)
    assert "\n" not in str(e.value)

    q = make_tiny_model(tmp_path / "q", arch="llama", dtype="bfloat16")
    cfg = json.loads((q / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True}
    (q / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(Unsupported, match=r"quantized checkpoint \(bitsandbytes\)"):
        from_pretrained(q)

    ok = make_tiny_model(tmp_path / "ok", arch="llama", dtype="bfloat16")
    with pytest.raises(Unsupported, match="device_map not supported"):
        from_pretrained(ok, device_map="auto")
    with pytest.raises(Unsupported, match="offloading"):
        from_pretrained(ok, device="disk")
    with pytest.raises(Unsupported, match="not a local model folder"):
        from_pretrained(tmp_path / "missing")
