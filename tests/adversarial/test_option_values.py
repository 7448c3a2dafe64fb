"""Every option value is checked up front: one line, exit 2, before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.adversarial.conftest import assert_refused, stub_model

BAD_LOAD_OPTIONS: list[tuple[list[str], str]] = [
    (["--timeout", "0"], "--timeout"),
    (["--timeout", "-5"], "--timeout"),
    (["--timeout", "nan"], "--timeout"),
    (["--timeout", "inf"], "--timeout"),
    (["--temperature", "nan"], "--temperature"),
    (["--temperature", "-1"], "--temperature"),
    (["--temperature", "inf"], "--temperature"),
    (["--seed", "-1"], "--seed"),
    (["--seed", str(2**64)], "--seed"),
    (["--read-threads", "0"], "--read-threads"),
    (["--read-threads", "-3"], "--read-threads"),
    (["--cache", ","], "--cache"),
    (["--page", " , "], "--page"),
    (["--device", "cuda:abc"], "cuda:abc"),
    (["--device", "cuda:-1"], "cuda:-1"),
    (["--device", "cuda:"], "cuda:"),
    (["--device", "cudax"], "cudax"),
    (["--device", "gpu"], "gpu"),
    (["--new-tokens", "0"], "--new-tokens"),
    (["--new-tokens", "-4"], "--new-tokens"),
    (["--repeat", "0"], "--repeat"),
    (["--repeat", "-2"], "--repeat"),
    (["--batch", "0"], "batch"),
    (["--batch", ","], "--batch"),
    (["--warm-calls", "-1"], "--warm-calls"),
    (["--prompt-tokens", "0"], "--prompt-tokens"),
    (["--max-shard-size", "lots"], "--max-shard-size"),
    (["--dtype", "float128"], "dtype"),
]


@pytest.mark.parametrize(
    ("options", "says"), BAD_LOAD_OPTIONS, ids=lambda x: " ".join(x) if isinstance(x, list) else x
)
def test_bad_load_option(cli, tmp_path: Path, options: list[str], says: str) -> None:
    model = stub_model(tmp_path / "m")
    out = tmp_path / "out.json"
    assert_refused(
        cli("load", model, "--ceilings", "off", *options, "--json", out), outputs=[out], says=says
    )


@pytest.mark.parametrize(
    "options",
    [
        ["--timeout", "nan"],
        ["--new-tokens", "0"],
        ["--device", "cuda:abc"],
        ["--temperature", "-0.5"],
    ],
)
def test_bad_decode_option(cli, tmp_path: Path, options: list[str]) -> None:
    model = stub_model(tmp_path / "m")
    assert_refused(cli("decode", model, "--ceilings", "off", *options))


def test_new_tokens_bound_is_the_same_for_load_and_decode(cli, tmp_path: Path) -> None:
    model = stub_model(tmp_path / "m")
    a = assert_refused(cli("load", model, "--new-tokens", "0"))
    b = assert_refused(cli("decode", model, "--new-tokens", "0"))
    assert a == b


@pytest.mark.parametrize(
    "options",
    [["--threshold", "nan"], ["--alpha", "nan"], ["--floor", "s=nan"], ["--threshold", "inf"]],
)
def test_bad_compare_option(cli, records_file: Path, options: list[str]) -> None:
    assert_refused(cli("compare", records_file, records_file, *options))


def test_suite_repeat_zero(cli, tmp_path: Path) -> None:
    suite = Path(__file__).resolve().parents[2] / "suites" / "smoke.toml"
    if not suite.is_file():
        pytest.skip("no smoke suite")
    assert_refused(
        cli("suite", suite, "-o", tmp_path / "o", "--repeat", "0"), outputs=[tmp_path / "o"]
    )
