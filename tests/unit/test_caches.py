"""Page-cache residency, eviction and warming (profiler/caches.py) on real files."""

from __future__ import annotations

import mmap
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from profiler.caches.hub import hub_cache_env, temporary_hub_cache
from profiler.caches.page import (
    COLD_MAX_FRACTION,
    PAGE_SIZE,
    FileResidency,
    Residency,
    evict,
    residency,
    verify,
    warm,
)
from profiler.errors import UserError

PS = PAGE_SIZE
REPO_ROOT = Path(__file__).resolve().parents[2]
# Filesystems where POSIX_FADV_DONTNEED is known not to drop pages: memory-backed
# ones (the page cache *is* the file) and stacked ones that keep the lower pages.
NO_EVICT_FS = {"tmpfs", "ramfs", "overlay", "overlayfs", "fuse", "squashfs"}


def fs_type(path: Path) -> str:
    """Filesystem type of ``path``: the longest mount point above it in /proc/self/mounts."""
    real = os.path.realpath(path)
    best, kind = "", "unknown"
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            mnt = fields[1].replace("\\040", " ")
            inside = real == mnt or real.startswith(mnt.rstrip("/") + "/")
            if inside and len(mnt) >= len(best):
                best, kind = mnt, fields[2]
    return kind


def write(path: Path, n: int) -> Path:
    path.write_bytes(os.urandom(n))
    return path


def evict_or_skip(paths: list[Path]) -> Residency:
    """Evict; skip (with the measured reason) only where the filesystem ignores it."""
    r = evict(paths)
    if r.fraction > COLD_MAX_FRACTION:
        kind = fs_type(paths[0])
        if kind in NO_EVICT_FS:
            pytest.skip(
                f"{kind} does not evict: {r.fraction:.1%} of {r.total_bytes} B "
                f"still resident after POSIX_FADV_DONTNEED"
            )
    return r


@pytest.fixture
def disk_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder on a disk-backed filesystem: tmp_path, else one under the checkout.

    When /tmp is tmpfs, eviction can only be tested on a real disk; the checkout is
    the one place we know is writable. The folder is removed afterwards.
    """
    if fs_type(tmp_path) not in NO_EVICT_FS:
        yield tmp_path
        return
    if fs_type(REPO_ROOT) in NO_EVICT_FS:
        pytest.skip(f"no disk-backed folder: /tmp and {REPO_ROOT} are {fs_type(REPO_ROOT)}")
    folder = Path(tempfile.mkdtemp(prefix=".test-caches-", dir=REPO_ROOT))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_warm_makes_a_new_file_fully_resident(tmp_path: Path) -> None:
    f = write(tmp_path / "w.bin", 3 * PS + 123)
    r = warm([f])
    assert r.files == (FileResidency(str(f), 3 * PS + 123, 3 * PS + 123),)
    assert r.total_bytes == r.resident_bytes == 3 * PS + 123
    assert r.fraction == 1.0


def test_evict_drops_pages_where_tmp_is(tmp_path: Path) -> None:
    f = write(tmp_path / "e.bin", 2 * 1024 * 1024)
    assert warm([f]).fraction == 1.0
    r = evict_or_skip([f])
    assert r.resident_bytes == 0
    assert verify("cold", r)[0]


def test_evict_then_warm_on_a_disk_backed_folder(disk_dir: Path) -> None:
    # Runs even when /tmp is tmpfs (see disk_dir), so eviction is always tested
    # somewhere it must work.
    assert fs_type(disk_dir) not in NO_EVICT_FS
    files = [write(disk_dir / f"d{i}.bin", (i + 1) * 512 * 1024 + i) for i in range(3)]
    cold = evict(files)
    assert cold.resident_bytes == 0, f"{fs_type(disk_dir)} kept {cold.resident_bytes} B"
    assert [x.size_bytes for x in cold.files] == [(i + 1) * 512 * 1024 + i for i in range(3)]
    hot = warm(files, chunk_bytes=64 * 1024)
    assert hot.resident_bytes == hot.total_bytes == sum(x.size_bytes for x in cold.files)


def test_residency_counts_pages_up_to_the_end_of_the_file(disk_dir: Path) -> None:
    f = write(disk_dir / "p.bin", 3 * PS + 100)
    evict_or_skip([f])
    fd = os.open(f, os.O_RDONLY)
    try:
        # No readahead: one byte read brings exactly its own page in.
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        os.pread(fd, 1, 3 * PS + 5)  # the last, partial page: 100 bytes of file
        assert residency([f]).resident_bytes == 100
        os.pread(fd, 1, PS + 5)  # a full page
        r = residency([f])
        assert r.resident_bytes == PS + 100
        assert r.fraction == pytest.approx((PS + 100) / (3 * PS + 100))
    finally:
        os.close(fd)


def test_a_live_mapping_keeps_pages_and_residency_does_not(disk_dir: Path) -> None:
    f = write(disk_dir / "m.bin", 8 * PS)
    warm([f])
    with open(f, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        touched = sum(mm[i * PS] for i in range(8))  # fault every page in
        assert touched >= 0
        kept = evict([f])
    # Linux does not drop pages that a process maps: the caveat evict() documents.
    assert kept.resident_bytes == 8 * PS
    # Once that mapping is gone eviction works, so residency() and evict() left
    # no mapping of their own behind.
    after = evict_or_skip([f])
    assert after.resident_bytes == 0


def test_empty_files_count_zero_bytes(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.touch()
    r = residency([empty])
    assert r.files == (FileResidency(str(empty), 0, 0),)
    assert (r.total_bytes, r.resident_bytes, r.fraction) == (0, 0, 1.0)
    assert evict([empty]).total_bytes == 0
    full = write(tmp_path / "full", PS)
    both = warm([empty, full])
    assert (both.total_bytes, both.resident_bytes) == (PS, PS)


def test_folders_are_walked_and_each_inode_counted_once(tmp_path: Path) -> None:
    snap = tmp_path / "snap"
    (snap / "sub").mkdir(parents=True)
    a = write(snap / "a.bin", PS)
    write(snap / "sub" / "b.bin", 2 * PS)
    (snap / "link.bin").symlink_to(a)  # a hub snapshot is a folder of symlinks
    r = warm([snap])
    assert sorted(Path(x.path).name for x in r.files) == ["a.bin", "b.bin"]
    assert r.total_bytes == 3 * PS


def test_missing_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no-such.bin"):
        residency([tmp_path / "no-such.bin"])


MIB = 1024 * 1024


def res(total: int, resident: int) -> Residency:
    return Residency((FileResidency("x", total, resident),))


def test_verify_cold() -> None:
    ok, note = verify("cold", res(512 * MIB, round(0.37 * 512 * MIB)))
    assert not ok
    assert note == "not cold: 37.0% of 537 MB resident before the run"
    ok, note = verify("cold", res(512 * MIB, int(0.02 * 512 * MIB)))
    assert ok and note == "cold: 2.0% of 537 MB resident before the run"
    assert not verify("cold", res(1000, 21))[0]


def test_verify_warm_and_edges() -> None:
    assert verify("warm", res(1000, 980)) == (
        True,
        "warm: 98.0% of 1.00 kB resident before the run",
    )
    ok, note = verify("warm", res(2 * 1024 * MIB, 1024 * MIB))
    assert not ok and note == "not warm: 50.0% of 2.15 GB resident before the run"
    # nothing to measure: both states hold, and the note says why
    assert verify("cold", Residency(())) == (True, "cold: no file bytes to measure")
    with pytest.raises(ValueError):
        verify("lukewarm", res(1, 1))  # type: ignore[arg-type]


def test_residency_aggregates() -> None:
    r = Residency((FileResidency("a", 100, 50), FileResidency("b", 300, 0)))
    assert (r.total_bytes, r.resident_bytes, r.fraction) == (400, 50, 0.125)
    assert FileResidency("c", 0, 0).fraction == 1.0


def test_temporary_hub_cache_removes_only_itself(tmp_path: Path) -> None:
    keep = write(tmp_path / "user-file", 10)
    with temporary_hub_cache(tmp_path) as root:
        assert root.parent == tmp_path
        assert sorted(p.name for p in root.iterdir()) == ["hub", "xet"]
        blob = root / "hub" / "models--a--b" / "blobs" / "x"
        blob.parent.mkdir(parents=True)
        write(blob, 5).chmod(0o444)
        blob.parent.chmod(0o555)  # read-only folder, as some caches have
    assert not root.exists()
    assert keep.read_bytes() and sorted(p.name for p in tmp_path.iterdir()) == ["user-file"]


def test_temporary_hub_cache_cleans_up_on_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), temporary_hub_cache(tmp_path) as root:
        raise RuntimeError("boom")
    assert not root.exists()


def test_hub_cache_env_points_everything_under_root(tmp_path: Path) -> None:
    env = hub_cache_env(tmp_path)
    assert env["HF_HUB_CACHE"] == env["HUGGINGFACE_HUB_CACHE"] == str(tmp_path / "hub")
    assert env["HF_XET_CACHE"] == str(tmp_path / "xet")
    assert all(Path(v).is_relative_to(tmp_path) for v in env.values())
    assert "HF_HOME" not in env  # the user's token lives there
