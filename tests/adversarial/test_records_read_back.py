"""Records read back defensively: report and compare give one line and exit 2 (never
1, which means regression) for any malformed record; NaN never reaches a verdict."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.adversarial.conftest import assert_refused


def _doc(records_file: Path) -> dict[str, Any]:
    return json.loads(records_file.read_text())


def _first_stage(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["runs"][0]["stages"][0]


def _set(
    path: Callable[[dict[str, Any]], dict[str, Any]], key: str, value: Any
) -> Callable[[dict[str, Any]], Any]:
    def edit(doc: dict[str, Any]) -> Any:
        path(doc)[key] = value
        return doc

    return edit


def _all_stage_times(value: Any) -> Callable[[dict[str, Any]], Any]:
    def edit(doc: dict[str, Any]) -> Any:
        for r in doc["runs"]:
            for s in r["stages"]:
                s["end_ns"] = value
        return doc

    return edit


EDITS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "document is a list": lambda d: [d],
    "document is a number": lambda d: 3,
    "runs not a list": _set(lambda d: d, "runs", {"a": 1}),
    "run is a string": _set(lambda d: d, "runs", ["run"]),
    "schema version string": _set(lambda d: d, "schema_version", "3"),
    "schema version float": _set(lambda d: d, "schema_version", 2.5),
    "schema version bool": _set(lambda d: d, "schema_version", True),
    "schema version future": _set(lambda d: d, "schema_version", 10**6),
    "run schema version future": _set(lambda d: d["runs"][0], "schema_version", 10**6),
    "stages not a list": _set(lambda d: d["runs"][0], "stages", "fast"),
    "stage end_ns string": _set(_first_stage, "end_ns", "100"),
    "stage end NaN": _all_stage_times(float("nan")),
    "stage end Infinity": _all_stage_times(float("inf")),
    "stage end negative inf": _all_stage_times(float("-inf")),
    "stage name number": _set(_first_stage, "name", 5),
    "model not a dict": _set(lambda d: d["runs"][0], "model", [1]),
    "status number": _set(lambda d: d["runs"][0], "status", 0),
    "repetition string": _set(lambda d: d["runs"][0], "repetition", "one"),
}


def _write(tmp_path: Path, records_file: Path, name: str) -> Path:
    doc = EDITS[name](_doc(records_file))
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(doc))  # allow_nan: writes NaN / Infinity as Python does
    return p


@pytest.mark.parametrize("name", sorted(EDITS))
def test_compare_malformed(cli, tmp_path: Path, records_file: Path, name: str) -> None:
    bad = _write(tmp_path, records_file, name)
    assert_refused(cli("compare", records_file, bad))


@pytest.mark.parametrize(
    "name",
    [
        "document is a list",
        "schema version string",
        "stage end NaN",
        "stages not a list",
        "schema version future",
    ],
)
def test_report_malformed(cli, tmp_path: Path, records_file: Path, name: str) -> None:
    bad = _write(tmp_path, records_file, name)
    out = tmp_path / "r.md"
    run = cli("report", bad, "-o", out, "--no-plots")
    assert run.code == 2, run.stderr
    assert "Traceback" not in run.stderr
    assert not out.exists()


def test_absurd_nesting(cli, tmp_path: Path, records_file: Path) -> None:
    p = tmp_path / "deep.json"
    p.write_text("[" * 100000 + "]" * 100000)
    assert_refused(cli("compare", records_file, p), says="nest")


def test_absurd_nesting_inside_run(cli, tmp_path: Path, records_file: Path) -> None:
    doc = _doc(records_file)
    doc["runs"][0]["notes"] = json.loads("[" * 500 + "]" * 500)
    p = tmp_path / "deep.json"
    p.write_text(json.dumps(doc))
    assert_refused(cli("compare", records_file, p))


def test_not_utf8(cli, tmp_path: Path, records_file: Path) -> None:
    p = tmp_path / "bin.json"
    p.write_bytes(b"\xff\xfe\x00\x01" * 10)
    assert_refused(cli("compare", records_file, p))


def test_empty_file(cli, tmp_path: Path, records_file: Path) -> None:
    p = tmp_path / "empty.json"
    p.write_text("")
    assert_refused(cli("compare", records_file, p))


def test_nan_timing_never_averaged(cli, tmp_path: Path, records_file: Path) -> None:
    # One NaN sample among good ones: refused, or at least never a NaN in the verdict.
    doc = _doc(records_file)
    doc["runs"][0]["stages"][0]["end_ns"] = float("nan")
    p = tmp_path / "one-nan.json"
    p.write_text(json.dumps(doc))
    run = cli("compare", records_file, p)
    assert "Traceback" not in run.stderr
    assert run.code == 2 or "nan" not in run.stdout.lower(), run.stdout
