"""`llmprof decode --variants` with input that makes no sense: one line naming the
problem and the fix, exit 2, and no model loaded (the source resolver must not run)."""

from __future__ import annotations

import pytest

from profiler import cli
from profiler.run import decode_variants


@pytest.fixture(autouse=True)
def no_model_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*_a: object, **_k: object) -> None:
        raise AssertionError("a model was resolved before the input was checked")

    monkeypatch.setattr(decode_variants, "resolve_source", fail)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--variants", "static,warp-drive"], "unknown variant 'warp-drive'"),
        (["--variants", "attn:magic"], "unknown attention implementation 'magic'"),
        (["--variants", "--in-process"], "drop --in-process"),
        (["--variants", "static", "--batch", "1,4"], "pass a single --batch"),
        (["--variants", "static", "--repeat", "2"], "drop --repeat"),
        (["--variants", "graph-loop", "--temperature", "0.7"], "decodes greedily"),
        (["--variants", "static", "--new-tokens", "1"], "--new-tokens 1"),
    ],
)
def test_bad_variant_input(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["decode", "smollm2-135m", *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert needle in err
    assert len(err.strip().splitlines()) == 1 and err.startswith("llmprof: ")
    assert "Traceback" not in err
