"""Bad prompt lengths for decode: one line on stderr, exit 2, before any model loads."""

from __future__ import annotations

import json

import pytest

from profiler.cli import main


def _no_child(*args, **kwargs):
    raise AssertionError("a child process was started for a refused request")


@pytest.fixture
def folder(tmp_path):
    """A local model folder whose config says 1024 positions (no weights needed:
    the refusal must come before anything reads them)."""
    (tmp_path / "config.json").write_text(
        json.dumps({"model_type": "llama", "max_position_embeddings": 1024})
    )
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 16)
    return tmp_path


@pytest.mark.parametrize("command", ["decode", "load"])
def test_prompt_lengths_beyond_the_context_are_refused_before_loading(
    command, folder, capsys, monkeypatch
):
    import profiler.run.repetitions as repetitions

    monkeypatch.setattr(repetitions, "run_child", _no_child)
    monkeypatch.setattr(repetitions, "run_in_process", _no_child)
    code = main([command, str(folder), "--prompt-tokens", "32,512,2048", "--ceilings", "off"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    last = err[-1]
    assert last.startswith("llmprof: prompt of 2048 tokens + 64 new tokens = 2112")
    assert "context of 1024 positions" in last and "shorten the prompt" in last
    assert not any("Traceback" in line for line in err)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("32,abc", "--prompt-tokens '32,abc': give whole numbers"),
        ("32,0", "--prompt-tokens 0: use 1 or more prompt tokens"),
        ("32,32", "repeats a length"),
    ],
)
def test_malformed_prompt_lengths_are_one_line(value, message, capsys):
    # The model does not exist: the refusal must come before any lookup.
    code = main(["decode", "org/does-not-exist", "--prompt-tokens", value])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and "\n" not in err
