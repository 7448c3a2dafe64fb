"""Pure parts of the hardening (issue 12): pickle scan, JSON nesting, record field
types, output paths. The CLI behaviour is in tests/adversarial/."""

from __future__ import annotations

import dataclasses
import os
import pickle
from pathlib import Path

import pytest

from profiler.errors import UserError


def test_pickle_scan_accepts_what_torch_save_writes(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from profiler.load.pickle_scan import check_pickle

    sd = {"a": torch.ones(2, 2, dtype=torch.bfloat16), "b": torch.arange(3)}
    torch.save(sd, tmp_path / "zip.bin")
    torch.save(sd, tmp_path / "legacy.bin", _use_new_zipfile_serialization=False)
    check_pickle(tmp_path / "zip.bin")
    check_pickle(tmp_path / "legacy.bin")


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("true",))


def test_pickle_scan_refuses_an_import_of_os_system(tmp_path: Path) -> None:
    from profiler.load.pickle_scan import check_pickle

    p = tmp_path / "evil.bin"
    p.write_bytes(pickle.dumps({"w": _Evil()}))
    with pytest.raises(UserError, match=r"imports (posix|os)\.system"):
        check_pickle(p)


def test_pickle_scan_refuses_builtins_eval(tmp_path: Path) -> None:
    from profiler.load.pickle_scan import check_pickle

    p = tmp_path / "eval.bin"
    p.write_bytes(b"cbuiltins\neval\n(S'1'\ntR.")
    with pytest.raises(UserError, match="builtins.eval"):
        check_pickle(p)


def test_nesting_depth_skips_brackets_inside_strings() -> None:
    from profiler.records.validate import nesting_depth

    assert nesting_depth('{"a": [1, {"b": "[[[[{{{"}]}') == 3
    assert nesting_depth('["\\"[[["]') == 1


def test_parse_json_refuses_nan_and_deep_nesting() -> None:
    from profiler.records.validate import parse_json

    with pytest.raises(ValueError, match="non-finite"):
        parse_json('{"a": NaN}')
    with pytest.raises(ValueError, match="nested"):
        parse_json("[" * 1000 + "]" * 1000)


def test_a_good_record_has_no_bad_field_and_a_string_time_is_found() -> None:
    from profiler.records.validate import bad_field
    from tests.support.fake_runs import cpu_cold_warm

    run = cpu_cold_warm(1)[0]
    assert bad_field(run) is None
    stage = dataclasses.replace(run.stages[1], end_ns="5")  # type: ignore[arg-type]
    broken = dataclasses.replace(run, stages=(run.stages[0], stage))
    assert bad_field(broken) == "stages[1].end_ns = '5'"


def test_check_output_follows_a_link_and_refuses_a_fifo(tmp_path: Path) -> None:
    from profiler.files import check_output

    real = tmp_path / "real.json"
    real.write_text("{}")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    assert check_output(link, option="--json") == real
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(UserError, match="FIFO"):
        check_output(fifo, option="--json")
    with pytest.raises(UserError, match="also an input"):
        check_output(link, option="--json", inputs=[real])


def test_write_file_writes_through_a_link(tmp_path: Path) -> None:
    from profiler.files import write_file

    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    write_file(link, b"new")
    assert link.is_symlink() and real.read_text() == "new"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
