"""Output paths: validated before any work; never a rename over a device, a FIFO or a
link; never the same file as an input; and no partial file on refusal."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.adversarial.conftest import REPO_ROOT, assert_refused, stub_model

FAST = ("--no-decode", "--no-native", "--ceilings", "off")


def test_json_into_existing_folder(cli, tmp_path: Path) -> None:
    model = stub_model(tmp_path / "m")
    out = tmp_path / "out"
    out.mkdir()
    assert_refused(cli("load", model, *FAST, "--json", out), says="folder")
    assert list(out.iterdir()) == []


def test_report_into_existing_folder(cli, tmp_path: Path, records_file: Path) -> None:
    out = tmp_path / "rep"
    out.mkdir()
    assert_refused(cli("report", records_file, "-o", out), says="folder")


def test_load_report_into_existing_folder(cli, tmp_path: Path) -> None:
    model = stub_model(tmp_path / "m")
    out = tmp_path / "rep"
    out.mkdir()
    assert_refused(cli("load", model, *FAST, "--report", out), says="folder")


def test_report_over_its_own_input(cli, tmp_path: Path, records_file: Path) -> None:
    inp = tmp_path / "runs.json"
    shutil.copy(records_file, inp)
    before = inp.read_bytes()
    assert_refused(cli("report", inp, "-o", inp), says="input")
    assert inp.read_bytes() == before


def test_compare_output_over_an_input(cli, tmp_path: Path, records_file: Path) -> None:
    inp = tmp_path / "runs.json"
    shutil.copy(records_file, inp)
    before = inp.read_bytes()
    assert_refused(cli("compare", inp, records_file, "-o", inp), says="input")
    assert inp.read_bytes() == before


def test_json_over_model_file(cli, tmp_path: Path) -> None:
    model = stub_model(tmp_path / "m")
    before = (model / "config.json").read_bytes()
    assert_refused(cli("load", model, *FAST, "--json", model / "config.json"), says="input")
    assert (model / "config.json").read_bytes() == before


def test_json_and_report_same_path(cli, tmp_path: Path) -> None:
    model = stub_model(tmp_path / "m")
    out = tmp_path / "x.json"
    assert_refused(cli("load", model, *FAST, "--json", out, "--report", out), outputs=[out])


def test_json_parent_is_a_file(cli, tmp_path: Path) -> None:
    model = stub_model(tmp_path / "m")
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "afile" / "out.json"
    assert_refused(cli("load", model, *FAST, "--json", out), says="cannot write")


def test_report_parent_is_a_file(cli, tmp_path: Path, records_file: Path) -> None:
    (tmp_path / "afile").write_text("x")
    assert_refused(cli("report", records_file, "-o", tmp_path / "afile" / "r.md"))


def test_compare_output_parent_is_a_file(cli, tmp_path: Path, records_file: Path) -> None:
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "afile" / "c.md"
    assert_refused(cli("compare", records_file, records_file, "-o", out))


def test_ceilings_json_into_folder(cli, tmp_path: Path) -> None:
    assert_refused(cli("ceilings", "--json", tmp_path), says="folder")


def test_suite_output_is_a_file(cli, tmp_path: Path) -> None:
    f = tmp_path / "afile"
    f.write_text("x")
    suite = REPO_ROOT / "suites" / "smoke.toml"
    if not suite.is_file():
        pytest.skip("no smoke suite in this checkout")
    assert_refused(cli("suite", suite, "-o", f), says="folder")


def test_json_to_fifo_refused_one_line(cli, tmp_path: Path) -> None:
    model = stub_model(tmp_path / "m")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert_refused(cli("load", model, *FAST, "--json", fifo, timeout=60), says="fifo")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode), "the FIFO was replaced"


def test_report_to_fifo_refused(cli, tmp_path: Path, records_file: Path) -> None:
    fifo = tmp_path / "pipe.md"
    os.mkfifo(fifo)
    assert_refused(cli("report", records_file, "-o", fifo, timeout=60), says="fifo")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_compare_to_fifo_refused(cli, tmp_path: Path, records_file: Path) -> None:
    fifo = tmp_path / "pipe.md"
    os.mkfifo(fifo)
    assert_refused(cli("compare", records_file, records_file, "-o", fifo, timeout=60), says="fifo")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_compare_output_symlink_written_through(cli, tmp_path: Path, records_file: Path) -> None:
    target = tmp_path / "real.md"
    target.write_text("old")
    link = tmp_path / "link.md"
    link.symlink_to(target)
    run = cli("compare", records_file, records_file, "-o", link)
    assert run.code == 0, run.stderr
    assert link.is_symlink(), "the link was replaced by a file"
    assert target.read_text() != "old"


def test_report_output_symlink_written_through(cli, tmp_path: Path, records_file: Path) -> None:
    target = tmp_path / "real.md"
    target.write_text("old")
    link = tmp_path / "link.md"
    link.symlink_to(target)
    run = cli("report", records_file, "-o", link, "--no-plots")
    assert run.code == 0, run.stderr
    assert link.is_symlink(), "the link was replaced by a file"
    assert "old" != target.read_text()


def test_symlink_to_folder_refused(cli, tmp_path: Path, records_file: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    link = tmp_path / "link.md"
    link.symlink_to(d)
    assert_refused(cli("report", records_file, "-o", link), says="folder")
    assert link.is_symlink()


def _namespace_ok() -> bool:
    if not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode == 0


NS = pytest.mark.skipif(not _namespace_ok(), reason="no private mount namespace (unshare -rm)")


def _in_namespace(
    tmp_path: Path, args: list[str], device: str = "/dev/null"
) -> subprocess.CompletedProcess[str]:
    """Run llmprof with a character device bind-mounted over ``tmp_path/dev``: the
    real /dev is never the target, and the mount vanishes with the namespace."""
    dev = tmp_path / "dev"
    dev.write_text("")
    script = (
        f"mount --bind {device} {dev} && "
        f"{sys.executable} -m profiler {' '.join(args)}; code=$?; "
        f"test -c {dev} || echo REPLACED >&2; exit $code"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TMPDIR": str(tmp_path)}
    return subprocess.run(
        ["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, env=env, timeout=120
    )


@NS
def test_json_to_char_device_in_namespace(tmp_path: Path) -> None:
    model = stub_model(tmp_path / "m")
    p = _in_namespace(tmp_path, ["load", str(model), *FAST, "--json", str(tmp_path / "dev")])
    assert "REPLACED" not in p.stderr
    assert "Traceback" not in p.stderr
    assert p.returncode == 2, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "device" in p.stderr


@NS
def test_report_to_char_device_in_namespace(tmp_path: Path, records_file: Path) -> None:
    p = _in_namespace(tmp_path, ["report", str(records_file), "-o", str(tmp_path / "dev")])
    assert "REPLACED" not in p.stderr and "Traceback" not in p.stderr
    assert p.returncode == 2, p.stderr


@NS
def test_compare_to_char_device_written_directly(tmp_path: Path, records_file: Path) -> None:
    # compare's markdown may be sent to a device: written into it, never renamed over.
    p = _in_namespace(
        tmp_path, ["compare", str(records_file), str(records_file), "-o", str(tmp_path / "dev")]
    )
    assert "REPLACED" not in p.stderr and "Traceback" not in p.stderr
    assert p.returncode in (0, 2), p.stderr


@NS
def test_json_to_dev_full_in_namespace(tmp_path: Path) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    model = stub_model(tmp_path / "m")
    p = _in_namespace(
        tmp_path, ["load", str(model), *FAST, "--json", str(tmp_path / "dev")], device="/dev/full"
    )
    assert "REPLACED" not in p.stderr and "Traceback" not in p.stderr
    assert p.returncode == 2, p.stderr


def test_dev_null_untouched_after_suite() -> None:
    # The real /dev/null is only looked at, never a target: it must still be a device.
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_json_to_link_to_fifo_like_dev_stdout(cli, tmp_path: Path) -> None:
    # /dev/stdout is a link to /proc/self/fd/1, a pipe under a pipeline: the link
    # must survive and nothing may block on the pipe.
    model = stub_model(tmp_path / "m")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    link = tmp_path / "stdout"
    link.symlink_to(fifo)
    assert_refused(cli("load", model, *FAST, "--json", link, timeout=60), says="fifo")
    assert link.is_symlink() and stat.S_ISFIFO(os.stat(link).st_mode)
