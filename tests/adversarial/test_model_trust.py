"""Model folders are a trust boundary: index entries stay inside the folder, custom
code is never run, pickles stay on weights_only, nothing outside is shown."""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import pytest

from tests.adversarial.conftest import (
    REPO_ROOT,
    TINY_CONFIG,
    assert_refused,
    stub_model,
    write_safetensors,
)

FAST = ("--no-decode", "--no-native", "--ceilings", "off")
SECRET = "TOP-SECRET-OUTSIDE-CONTENT"


def _indexed(folder: Path, shard: str) -> Path:
    stub_model(folder)
    (folder / "model.safetensors").unlink()
    index = {"metadata": {}, "weight_map": {"w": shard}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return folder


def _outside(tmp_path: Path) -> Path:
    out = tmp_path / "outside"
    out.mkdir(exist_ok=True)
    write_safetensors(
        out / "x.safetensors",
        {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}},
        bytes(8),
    )
    (out / "secret.txt").write_text(SECRET * 4)
    return out


@pytest.mark.parametrize(
    "shard",
    ["../outside/x.safetensors", "../outside/secret.txt", "sub/../../outside/x.safetensors"],
)
def test_index_names_file_outside(cli, tmp_path: Path, shard: str) -> None:
    _outside(tmp_path)
    model = _indexed(tmp_path / "m", shard)
    line = assert_refused(cli("load", model, *FAST), says="outside")
    assert SECRET not in line


def test_index_absolute_path(cli, tmp_path: Path) -> None:
    out = _outside(tmp_path)
    model = _indexed(tmp_path / "m", str(out / "x.safetensors"))
    assert_refused(cli("load", model, *FAST), says="outside")


def test_index_etc_passwd(cli, tmp_path: Path) -> None:
    model = _indexed(tmp_path / "a" / "m", "../../../../../../../../etc/passwd")
    line = assert_refused(cli("load", model, *FAST), says="outside")
    assert "root:" not in line


def test_index_shard_symlink_points_outside(cli, tmp_path: Path) -> None:
    out = _outside(tmp_path)
    model = _indexed(tmp_path / "m", "model-00001.safetensors")
    (model / "model-00001.safetensors").symlink_to(out / "x.safetensors")
    assert_refused(cli("load", model, *FAST), says="outside")


def test_single_weights_symlink_points_outside(cli, tmp_path: Path) -> None:
    out = _outside(tmp_path)
    model = stub_model(tmp_path / "m")
    (model / "model.safetensors").unlink()
    (model / "model.safetensors").symlink_to(out / "x.safetensors")
    assert_refused(cli("load", model, *FAST), says="outside")


def test_secret_in_corrupt_shard_not_shown(cli, tmp_path: Path) -> None:
    model = stub_model(tmp_path / "m")
    (model / "model.safetensors").write_bytes(b"\xff" * 8 + SECRET.encode() * 20)
    line = assert_refused(cli("load", model, *FAST))
    assert SECRET not in line


def test_index_weight_map_not_a_dict(cli, tmp_path: Path) -> None:
    model = _indexed(tmp_path / "m", "x")
    (model / "model.safetensors.index.json").write_text(json.dumps({"weight_map": ["a", "b"]}))
    assert_refused(cli("load", model, *FAST), says="index")


def test_index_shard_name_not_a_string(cli, tmp_path: Path) -> None:
    model = _indexed(tmp_path / "m", "x")
    (model / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"w": 7}}))
    assert_refused(cli("load", model, *FAST), says="index")


def test_remote_code_config_refused(cli, tmp_path: Path) -> None:
    cfg = {
        **TINY_CONFIG,
        "model_type": "evilnet",
        "auto_map": {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel"},
    }
    model = stub_model(tmp_path / "m", config=cfg)
    (model / "evil.py").write_text(f"open({str(tmp_path / 'PWNED')!r}, 'w').write('x')\n")
    line = assert_refused(cli("load", model, *FAST), says="trust_remote_code=False")
    assert "custom code" in line
    assert not (tmp_path / "PWNED").exists()


def test_remote_code_in_process_refused(cli, tmp_path: Path) -> None:
    cfg = {**TINY_CONFIG, "auto_map": {"AutoModelForCausalLM": "evil.EvilModel"}}
    model = stub_model(tmp_path / "m", config=cfg)
    (model / "evil.py").write_text(f"open({str(tmp_path / 'PWNED')!r}, 'w').write('x')\n")
    assert_refused(cli("load", model, *FAST, "--in-process"), says="trust_remote_code=False")
    assert not (tmp_path / "PWNED").exists()


def test_remote_code_tokenizer_refused(cli, tmp_path: Path) -> None:
    model = stub_model(tmp_path / "m")
    (model / "tokenizer_config.json").write_text(
        json.dumps({"auto_map": {"AutoTokenizer": ["evil.Tok", None]}})
    )
    assert_refused(cli("load", model, *FAST), says="trust_remote_code=False")


def test_pickle_checkpoint_refused_one_line(cli, tmp_path: Path) -> None:
    import pickle

    class Evil:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (os.system, (f"touch {tmp_path / 'PWNED'}",))

    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(TINY_CONFIG))
    (model / "pytorch_model.bin").write_bytes(pickle.dumps({"w": Evil()}))
    line = assert_refused(cli("load", model, *FAST), says="pickle")
    assert "weights_only=False" not in line
    assert not (tmp_path / "PWNED").exists()


def _transformer_calls() -> list[tuple[str, int, str]]:
    """Every ``X.from_pretrained(...)`` call in profiler/ on an Auto*/config/tokenizer
    class, and the keywords it passes."""
    found = []
    for path in (REPO_ROOT / "profiler").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            if node.func.attr != "from_pretrained":
                continue
            owner = ast.unparse(node.func.value)
            if "GenerationConfig" in owner:
                continue  # accepts no trust_remote_code: never runs code
            kws = {k.arg for k in node.keywords}
            ok = "trust_remote_code" in kws
            found.append((str(path.relative_to(REPO_ROOT)), node.lineno, "ok" if ok else owner))
    return found


def test_every_from_pretrained_passes_trust_remote_code() -> None:
    calls = _transformer_calls()
    assert calls, "found no from_pretrained call: the scan is broken"
    missing = [f"{p}:{n} ({o})" for p, n, o in calls if o != "ok"]
    assert missing == []


def test_trust_remote_code_is_false_literal() -> None:
    for path in (REPO_ROOT / "profiler").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.keyword) and node.arg == "trust_remote_code":
                assert isinstance(node.value, ast.Constant) and node.value.value is False, path
