"""llmprof's own copier (profiler.load.copier) at several plans, warm, on one GPU.

    python scripts/gpu_copier_sweep.py MODEL_FOLDER OUT_DIR [DEVICE]

Reads every safetensors file of MODEL_FOLDER, page cache warm, into one device
buffer per file with each plan, in one process (the pinned pool is set up by the
first plan and grown when a later one needs more: its set-up time is reported per
plan). Each plan runs twice; both rates are kept. The first and last MiB of every
file are checked on the device against the file. Writes OUT_DIR/copier-sweep.json
and OUT_DIR/copier-sweep.md (rows to paste under the prediction table of
reports/gpu-h200/fastpath-sweep.md). GB/s = 1e9 checkpoint bytes per second.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from profiler.caches.page import warm
from profiler.load.copier import CopyPlan, start_copy

MIB = 1 << 20

# (threads, chunk MiB, slots, predicted GB/s, why)
PLANS: list[tuple[int, int, int, float, str]] = [
    (16, 4, 3, 50.0, "the default: the sweep's best through ctypes (51.8)"),
    (24, 4, 3, 50.0, "more readers than the 16 cores: reads wait on memory, not CPU"),
    (32, 2, 4, 40.0, "InstantTensor's shape (32t × 2 MiB): 31.8 in the standalone sweep"),
    (16, 8, 3, 48.0, "fewer calls, slots still cache-sized per thread"),
    (16, 16, 2, 45.0, "the old plan's chunks through ctypes (44.9)"),
    (16, 4, 6, 51.0, "more copies in flight per thread"),
]


def check(files: list[Path], dst: list) -> None:  # type: ignore[type-arg]
    for f, d in zip(files, dst, strict=True):
        size = f.stat().st_size
        with open(f, "rb") as fh:
            for off in (0, max(0, size - MIB)):
                fh.seek(off)
                want = fh.read(MIB)
                got = d[off : off + len(want)].cpu().numpy().tobytes()
                if got != want:
                    raise SystemExit(f"bytes differ in {f.name} at {off}")


def main(argv: list[str]) -> int:
    import torch

    folder, out = Path(argv[0]), Path(argv[1])
    device = argv[2] if len(argv) > 2 else "cuda:0"
    out.mkdir(parents=True, exist_ok=True)
    files = sorted(folder.glob("*.safetensors"))
    total = sum(f.stat().st_size for f in files)
    warm(files)
    rows = []
    for threads, chunk, slots, predicted, why in PLANS:
        plan = CopyPlan(threads, chunk * MIB, slots)
        rates, setup = [], []
        for _ in range(2):
            t0 = time.perf_counter()
            res = start_copy(files, device, plan).wait()
            dt = time.perf_counter() - t0
            rates.append(total / dt / 1e9)
            if res.pool_start_ns is not None and res.pool_end_ns is not None:
                setup.append((res.pool_end_ns - res.pool_start_ns) / 1e9)
            check(files, res.buffers)
            engine = res.engine
            del res
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
        row = {
            "plan": f"{threads}t × {chunk} MiB × {slots}",
            "predicted_gbps": predicted,
            "gbps": rates,
            "pool_setup_s": setup,
            "engine": engine,
            "why": why,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    (out / "copier-sweep.json").write_text(json.dumps({"bytes": total, "rows": rows}, indent=1))
    md = [
        "| plan (llmprof copier) | predicted GB/s | measured GB/s (2 runs) | pool set-up s | why |"
    ]
    md.append("|---|---:|---:|---:|---|")
    for r in rows:
        got = ", ".join(f"{g:.1f}" for g in r["gbps"])
        pool = ", ".join(f"{s:.3f}" for s in r["pool_setup_s"])
        md.append(
            f"| {r['plan']} ({r['engine']}) | {r['predicted_gbps']:.0f} | {got} | {pool} "
            f"| {r['why']} |"
        )
    (out / "copier-sweep.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
