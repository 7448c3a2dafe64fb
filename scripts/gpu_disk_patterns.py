"""Cold read patterns on a lent machine's disk: which one a ceiling must include.

    python scripts/gpu_disk_patterns.py MODEL_FOLDER OUT_JSON

Each safetensors shard is read once per pattern after being evicted from the page
cache (fsync + fadvise DONTNEED, residency checked with mincore), so every pattern
reads bytes that are not in this guest's memory. A shard read twice in a row after
eviction shows whether the host caches the virtual disk (the second read is faster).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

from profiler.caches.page import evict

MiB = 1 << 20


def read(path: Path, threads: int, chunk: int, direct: bool) -> float:
    size = path.stat().st_size
    flags = os.O_RDONLY | (os.O_DIRECT if direct else 0)
    fd = os.open(path, flags)
    import mmap

    offsets = list(range(0, size, chunk))
    lock = threading.Lock()

    def work() -> None:
        buf = mmap.mmap(-1, chunk)
        view = memoryview(buf)
        while True:
            with lock:
                if not offsets:
                    return
                off = offsets.pop(0)
            n = min(chunk, size - off)
            want = -(-n // 4096) * 4096 if direct else n
            os.preadv(fd, [view[:want]], off)

    t0 = time.perf_counter()
    ts = [threading.Thread(target=work) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    dt = time.perf_counter() - t0
    os.close(fd)
    return size / dt / 1e9


def main() -> None:
    folder, out = Path(sys.argv[1]), Path(sys.argv[2])
    shards = sorted(folder.glob("*.safetensors"))
    patterns = [
        ("buffered 1 thread 16 MiB", 1, 16, False),
        ("O_DIRECT 4 threads 16 MiB", 4, 16, True),
        ("buffered 4 threads 64 MiB", 4, 64, False),
        ("O_DIRECT 16 threads 16 MiB", 16, 16, True),
        ("buffered 16 threads 16 MiB", 16, 16, False),
        ("O_DIRECT 8 threads 64 MiB", 8, 64, True),
    ]
    rows = []
    for i, (name, threads, chunk, direct) in enumerate(patterns):
        shard = shards[i % len(shards)]
        resident = evict([shard]).fraction
        rate = read(shard, threads, chunk * MiB, direct)
        rows.append(
            {"pattern": name, "shard": shard.name, "resident_before": resident, "gbps": rate}
        )
        print(
            f"  {name:28s} {shard.name:34s} resident {resident:5.1%}  {rate:6.2f} GB/s", flush=True
        )
        out.write_text(json.dumps(rows, indent=1))
    shard = shards[0]
    again = []
    for _ in range(2):
        r = evict([shard]).fraction
        again.append((r, read(shard, 4, 16 * MiB, False)))
    rows.append({"reread_after_evict": again})
    print("  same shard, evicted and read twice:", again, flush=True)
    out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
