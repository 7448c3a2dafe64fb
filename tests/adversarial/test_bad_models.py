"""Bad models: one line, exit 2, from the parent, naming the cause and the fix;
never a failed repetition with a child's traceback."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path
from typing import Any

import pytest

from tests.adversarial.conftest import TINY_CONFIG, assert_refused, stub_model, write_safetensors

FAST = ("--no-decode", "--no-native", "--ceilings", "off")
W = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ("{not json", "config.json"),
        ("[1, 2, 3]", "config.json"),
        ('"a string"', "config.json"),
        ({**TINY_CONFIG, "hidden_size": "big"}, "hidden_size"),
        ({**TINY_CONFIG, "num_hidden_layers": -1}, "num_hidden_layers"),
        ({**TINY_CONFIG, "vocab_size": 1.5}, "vocab_size"),
        ({**TINY_CONFIG, "model_type": "nosuchmodel"}, "model_type"),
        ({**TINY_CONFIG, "model_type": 7}, "model_type"),
        ({k: v for k, v in TINY_CONFIG.items() if k != "model_type"}, "model_type"),
        ({**TINY_CONFIG, "architectures": "LlamaForCausalLM"}, "architectures"),
    ],
)
def test_malformed_config(cli, tmp_path: Path, config: Any, says: str) -> None:
    model = stub_model(tmp_path / "m", config=config)
    line = assert_refused(cli("load", model, *FAST), says=says)
    assert "tokenizer" not in line.lower(), "an invalid config.json is not a tokenizer problem"


def test_no_config(cli, tmp_path: Path) -> None:
    model = stub_model(tmp_path / "m")
    (model / "config.json").unlink()
    assert_refused(cli("load", model, *FAST), says="config.json")


def test_config_larger_than_memory(cli, tmp_path: Path) -> None:
    cfg = {
        **TINY_CONFIG,
        "hidden_size": 65536,
        "intermediate_size": 262144,
        "num_hidden_layers": 4096,
        "vocab_size": 256000,
    }
    model = stub_model(tmp_path / "m", config=cfg)
    assert_refused(cli("load", model, *FAST), says="memory")


@pytest.mark.parametrize(
    ("header", "says"),
    [
        ([1, 2, 3], "header"),
        ({"w": [0, 8]}, "header"),
        ({"w": {**W, "data_offsets": [-8, 0]}}, "offset"),
        ({"w": {**W, "data_offsets": [8, 0]}}, "offset"),
        ({"w": {**W, "data_offsets": "0-8"}}, "offset"),
        ({"a": {**W, "data_offsets": [0, 8]}, "b": {**W, "data_offsets": [4, 12]}}, "overlap"),
        ({"w": {**W, "shape": [3]}}, "shape"),
        ({"w": {**W, "shape": [-2]}}, "shape"),
        ({"w": {**W, "shape": "2"}}, "shape"),
        ({"w": {**W, "dtype": "F128"}}, "dtype"),
        ({"w": W, "__metadata__": [1]}, "metadata"),
    ],
)
def test_bad_safetensors_header(cli, tmp_path: Path, header: Any, says: str) -> None:
    model = stub_model(tmp_path / "m", header=header, data=bytes(16))
    assert_refused(cli("load", model, *FAST), says=says)


def test_absurd_header_length(cli, tmp_path: Path) -> None:
    model = stub_model(tmp_path / "m")
    (model / "model.safetensors").write_bytes(struct.pack("<Q", 2**62) + b"{}")
    assert_refused(cli("load", model, *FAST), says="header")


def test_empty_safetensors(cli, tmp_path: Path) -> None:
    model = stub_model(tmp_path / "m")
    (model / "model.safetensors").write_bytes(b"")
    assert_refused(cli("load", model, *FAST))


def test_header_not_utf8(cli, tmp_path: Path) -> None:
    model = stub_model(tmp_path / "m")
    write_safetensors(model / "model.safetensors", None, bytes(8), raw_header=b"\xff\xfe\x00{")
    assert_refused(cli("load", model, *FAST), says="header")


def test_embedding_shape_disagrees_with_config(cli, tmp_path: Path) -> None:
    n = TINY_CONFIG["vocab_size"] * 8
    header = {
        "model.embed_tokens.weight": {
            "dtype": "F32",
            "shape": [TINY_CONFIG["vocab_size"], 8],
            "data_offsets": [0, n * 4],
        }
    }
    model = stub_model(tmp_path / "m", header=header, data=bytes(n * 4))
    assert_refused(cli("load", model, *FAST), says="config")


def test_index_is_a_list(cli, tmp_path: Path) -> None:
    model = stub_model(tmp_path / "m")
    (model / "model.safetensors.index.json").write_text("[]")
    assert_refused(cli("load", model, *FAST), says="index")


def _gguf(path: Path, body: bytes, version: int = 3) -> Path:
    path.write_bytes(b"GGUF" + struct.pack("<I", version) + body)
    return path


@pytest.mark.parametrize(
    "body",
    [
        struct.pack("<QQ", 2**62, 1),  # absurd tensor count
        struct.pack("<QQ", 0, 2**62),  # absurd metadata count
        struct.pack("<QQ", 0, 1) + struct.pack("<Q", 2**60) + b"general",  # absurd key length
        struct.pack("<QQ", 0, 1) + struct.pack("<Q", 4) + b"abcd" + struct.pack("<I", 99),  # type
        b"",  # truncated
    ],
)
def test_malformed_gguf(cli, tmp_path: Path, body: bytes) -> None:
    f = _gguf(tmp_path / "m.gguf", body)
    assert_refused(cli("load", f, *FAST), says="gguf")


def test_gguf_bad_magic(cli, tmp_path: Path) -> None:
    f = tmp_path / "m.gguf"
    f.write_bytes(b"NOPE" + bytes(64))
    assert_refused(cli("load", f, *FAST), says="gguf")


# --- tokenizer problems: a real tiny model with one thing broken ---------------


def _copy(tiny_model: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "m"
    shutil.copytree(tiny_model, dst)
    return dst


def test_missing_tokenizer_files(cli, tmp_path: Path, tiny_model: Path) -> None:
    model = _copy(tiny_model, tmp_path)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (model / name).unlink(missing_ok=True)
    line = assert_refused(cli("load", model, "--no-native", "--ceilings", "off"), says="tokenizer")
    assert "prompt" not in line.lower()


def test_tokenizer_json_corrupt(cli, tmp_path: Path, tiny_model: Path) -> None:
    model = _copy(tiny_model, tmp_path)
    (model / "tokenizer.json").write_text("{broken")
    assert_refused(cli("load", model, "--no-native", "--ceilings", "off"), says="tokenizer")


def _set_template(model: Path, template: str) -> None:
    cfg_path = model / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["chat_template"] = template
    cfg_path.write_text(json.dumps(cfg))
    (model / "chat_template.jinja").unlink(missing_ok=True)


def test_chat_template_syntax_error(cli, tmp_path: Path, tiny_model: Path) -> None:
    model = _copy(tiny_model, tmp_path)
    _set_template(model, "{% for m in messages %}{{ m['content'] }")
    assert_refused(
        cli("load", model, "--no-native", "--ceilings", "off", "--chat"), says="chat template"
    )


def test_chat_template_raises(cli, tmp_path: Path, tiny_model: Path) -> None:
    model = _copy(tiny_model, tmp_path)
    _set_template(model, "{{ raise_exception('roles must alternate') }}")
    assert_refused(
        cli("load", model, "--no-native", "--ceilings", "off", "--chat"), says="chat template"
    )


def test_chat_without_template(cli, tmp_path: Path, tiny_model: Path) -> None:
    model = _copy(tiny_model, tmp_path)
    cfg_path = model / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.pop("chat_template", None)
    cfg_path.write_text(json.dumps(cfg))
    (model / "chat_template.jinja").unlink(missing_ok=True)
    assert_refused(
        cli("load", model, "--no-native", "--ceilings", "off", "--chat"), says="chat template"
    )


def test_special_token_missing_from_vocab(cli, tmp_path: Path, tiny_model: Path) -> None:
    model = _copy(tiny_model, tmp_path)
    cfg_path = model / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["eos_token"] = "<no-such-token>"
    cfg.pop("added_tokens_decoder", None)
    cfg_path.write_text(json.dumps(cfg))
    (model / "special_tokens_map.json").unlink(missing_ok=True)
    assert_refused(cli("load", model, "--no-native", "--ceilings", "off"), says="token")
