from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from profiler.errors import UserError
from profiler.load.checkpoint import (
    find_checkpoint,
    read_safetensors_header,
    tensors_from_buffer,
)
from profiler.load.read import read_file_into


@pytest.fixture
def st_file(tmp_path):
    tensors = {
        "a": torch.arange(12, dtype=torch.float32).reshape(3, 4),
        "b": torch.arange(5, dtype=torch.bfloat16),
        "c": torch.tensor([1, 2, 3], dtype=torch.int64),
        "odd": torch.arange(3, dtype=torch.float16),  # 6 bytes: shifts later offsets
        "z": torch.ones(2, 2, dtype=torch.float32),
    }
    path = tmp_path / "model.safetensors"
    save_file(tensors, str(path))
    return path, tensors


def test_header_offsets_cover_the_data(st_file):
    path, tensors = st_file
    h = read_safetensors_header(path)
    assert {t.name for t in h.tensors} == set(tensors)
    data_bytes = sum(t.end - t.begin for t in h.tensors)
    assert data_bytes == sum(v.numel() * v.element_size() for v in tensors.values())
    assert max(t.end for t in h.tensors) == path.stat().st_size


@pytest.mark.parametrize("threads,chunk", [(1, 1 << 20), (4, 7)])
def test_read_then_views_equal_safetensors_own_loader(st_file, threads, chunk):
    path, _ = st_file
    size = path.stat().st_size
    buf = torch.empty(size, dtype=torch.uint8)
    seen: list[int] = []
    assert (
        read_file_into(path, buf, threads=threads, chunk_bytes=chunk, on_bytes=seen.append) == size
    )
    assert sum(seen) == size
    views, _copied = tensors_from_buffer(read_safetensors_header(path), buf)
    ref = load_file(str(path))
    assert views.keys() == ref.keys()
    for k in ref:
        assert views[k].dtype == ref[k].dtype and torch.equal(views[k], ref[k])


def test_truncated_file_is_a_clear_error(st_file):
    path, _ = st_file
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    with pytest.raises(UserError, match="truncated safetensors file"):
        read_safetensors_header(path)


def test_bad_header_is_a_clear_error(tmp_path):
    p = tmp_path / "model.safetensors"
    p.write_bytes((10**12).to_bytes(8, "little") + b"{}")
    with pytest.raises(UserError, match="corrupt safetensors"):
        read_safetensors_header(p)
    p.write_bytes((5).to_bytes(8, "little") + b"{bad}")
    with pytest.raises(UserError, match="corrupt safetensors"):
        read_safetensors_header(p)
    p.write_bytes(b"abc")
    with pytest.raises(UserError, match="corrupt safetensors"):
        read_safetensors_header(p)


def test_find_checkpoint_prefers_safetensors_and_follows_indexes(tmp_path):
    with pytest.raises(UserError, match="has no model weights"):
        find_checkpoint(tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"x")
    assert find_checkpoint(tmp_path).fmt == "bin"
    save_file({"a": torch.zeros(1)}, str(tmp_path / "s1.safetensors"))
    save_file({"b": torch.zeros(1)}, str(tmp_path / "s2.safetensors"))
    index = {
        "metadata": {},
        "weight_map": {"a": "s1.safetensors", "b": "s2.safetensors", "c": "s1.safetensors"},
    }
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    ck = find_checkpoint(tmp_path)
    assert ck.fmt == "safetensors" and [f.name for f in ck.files] == [
        "s1.safetensors",
        "s2.safetensors",
    ]
    (tmp_path / "s2.safetensors").unlink()
    with pytest.raises(UserError, match="missing"):
        find_checkpoint(tmp_path)
