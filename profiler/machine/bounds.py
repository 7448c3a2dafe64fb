"""Which measured ceiling bounds which load stage, and filling it into the records.

A stage's rate means something only next to the ceiling of the work it did: a read
against the disk or the page cache (per the page-cache state the run was judged
in), a cast against memory bandwidth, a host-to-device copy against the pageable or
pinned copy rate. :func:`ceiling_candidates` is that table; :func:`pick_ceiling`
picks the bound among measured ceilings; :func:`attach_ceilings` writes it into a
run's stages. The diagnosis reads the same functions, so a table and a sentence
never disagree on the bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from profiler.analysis.decode_metrics import ceilings_source
from profiler.analysis.rates import dtype_size
from profiler.records.ceilings import MATMUL, Ceiling, Ceilings
from profiler.records.run import RunRecord
from profiler.records.stage import StageRecord
from profiler.run.device_kind import is_gpu

# How each ceiling is named in sentences (diagnosis, tables).
DESCRIPTIONS: dict[str, str] = {
    "disk_read": "this disk",
    "page_cache_read_1t": "the single-thread page-cache read",
    "page_cache_read": "the best page-cache read",
    "host_memcpy": "host memory bandwidth",
    "h2d_pageable": "pageable host-to-device",
    "h2d_pinned": "pinned host-to-device",
    "d2h_pinned": "pinned device-to-host",
    "device_memory": "device memory bandwidth",
    MATMUL: "the bf16 matmul rate",
}


# Not a cold/warm verdict (profiler.caches.page holds those, for measured residency):
# with the page cache uncontrolled, a read is compared with the ceiling of the
# source that served most of its bytes, per the kernel's count of bytes fetched.
READ_FROM_DISK_MIN_FRACTION = 0.5


def cast_traffic_per_byte(stage: StageRecord, run: RunRecord | None = None) -> float | None:
    """Memory traffic of a cast per source byte: 1 (read) + output/input size.

    From the stage's ``bytes_out`` counter when it has one, else from the sizes of the
    checkpoint's storage dtype and the loaded dtype; None when neither is known.
    """
    out = stage.counters.get("bytes_out")
    if isinstance(out, (int, float)) and stage.bytes:
        return 1.0 + float(out) / stage.bytes
    if run is not None:
        src = dtype_size(run.model.storage_dtype)
        dst = dtype_size(run.dtype_resolved)
        if src and dst:
            return 1.0 + dst / src
    return None


def cast_on_device(stage: StageRecord) -> bool:
    """Whether a dtype_cast ran on the GPU (llmprof's fast path casts where the weights
    already are; the staged view casts on the CPU)."""
    flag = stage.counters.get("on_device")
    if flag is not None:
        try:
            return bool(int(flag))
        except (TypeError, ValueError):
            return False
    return "on the device" in stage.bytes_what


def _read_ceiling(page_state: str, disk_read_bytes: int | None, nbytes: int | None) -> str | None:
    if page_state == "cold":
        return "disk_read"
    if page_state == "warm":
        return "page_cache_read"
    # Page state not controlled (or cold asked but not verified): the kernel's own
    # count of bytes fetched from storage says which path served the reads.
    if disk_read_bytes is not None and nbytes:
        from_disk = disk_read_bytes >= READ_FROM_DISK_MIN_FRACTION * nbytes
        return "disk_read" if from_disk else "page_cache_read"
    return None


def ceiling_candidates(
    name: str,
    *,
    page_state: str,
    device: str,
    pinned: bool,
    disk_read_bytes: int | None = None,
    nbytes: int | None = None,
    on_device: bool = False,
) -> tuple[str, ...]:
    """The ceilings that bound the stage called ``name``; the slowest of them bounds it
    (a stage that reads and copies at once can go no faster than either).

    - ``weight_read``: cold page cache → ``disk_read``; warm → ``page_cache_read``;
      otherwise decided by ``disk_read_bytes`` (see READ_FROM_DISK_MIN_FRACTION),
      none when that was not measured;
    - ``read_copy`` (the fast path's overlapped read and copy): the read ceiling and,
      on a GPU, the host-to-device one;
    - ``dtype_cast`` → ``host_memcpy`` (``device_memory`` for a cast on the GPU);
    - ``h2d_copy`` → ``h2d_pinned`` or ``h2d_pageable`` (per ``pinned``); none on CPU;
    - every other stage → none.
    """
    h2d = "h2d_pinned" if pinned else "h2d_pageable"
    if name == "weight_read":
        read = _read_ceiling(page_state, disk_read_bytes, nbytes)
        return (read,) if read else ()
    if name == "read_copy":  # fast path: reads overlapped with host-to-device copies
        read = _read_ceiling(page_state, disk_read_bytes, nbytes)
        if read is None:
            return ()
        return (read, h2d) if is_gpu(device) else (read,)
    if name == "dtype_cast":
        return ("device_memory",) if on_device and is_gpu(device) else ("host_memcpy",)
    if name == "h2d_copy":
        return (h2d,) if is_gpu(device) else ()
    # hub_download is network-bound (no ceiling measured for a network); the other
    # stages move no bulk bytes.
    return ()


def stage_pinned(stage: StageRecord) -> bool:
    """Whether a stage copied from pinned memory, per its ``pinned`` counter."""
    try:
        return bool(int(stage.counters.get("pinned", 0)))
    except (TypeError, ValueError):
        return False


def pick_ceiling(names: Sequence[str], ceilings: Ceilings) -> tuple[Ceiling | None, str | None]:
    """(the lowest measured GB/s ceiling among ``names``, None) or (None, the first name
    not measured): a bound is only known when every candidate was measured. A
    ``device_memory`` figure counts only from ceilings measured on a GPU."""
    found = []
    for n in names:
        c = ceilings.get(n)
        if c is None or c.gbps is None or (n == "device_memory" and not is_gpu(ceilings.device)):
            return None, n
        found.append(c)
    if not found:
        return None, None
    return min(found, key=lambda c: c.gbps or 0.0), None


def stage_ceiling_scale(stage: StageRecord, run: RunRecord | None = None) -> float | None:
    """Factor turning a ceiling into the stage's own bytes per second.

    Stages count their payload (bytes read, bytes copied); copy ceilings count bytes
    read plus written. A cast of N source bytes reads N and writes N·out/in, so at
    a memory bandwidth B it handles at most B / traffic source bytes per second.
    None when that traffic is unknown. Every other stage: 1.
    """
    if stage.name != "dtype_cast":
        return 1.0
    traffic = cast_traffic_per_byte(stage, run)
    return 1.0 / traffic if traffic else None


def page_state_of(run: RunRecord) -> str:
    """The page-cache state to judge a run by: cold only when it was verified cold."""
    page = run.cache.page
    if page == "cold" and run.cache.page_verified is False:
        return "not-cold"
    return page


def decode_bandwidth_ceiling(ceilings: Ceilings, device: str) -> Ceiling | None:
    """The bandwidth decode is bounded by: ``device_memory`` on a GPU, ``host_memcpy``
    on the CPU; None when not measured (or measured for another kind of device)."""
    if is_gpu(device):
        if not is_gpu(ceilings.device):
            return None
        c = ceilings.get("device_memory")
    else:
        c = ceilings.get("host_memcpy")
    return c if c is not None and c.measured else None


def matmul_ceiling(ceilings: Ceilings, device: str) -> Ceiling | None:
    """The matmul rate of the kind of device a run used, when it was measured there."""
    if is_gpu(device) != is_gpu(ceilings.device):
        return None
    c = ceilings.get(MATMUL)
    return c if c is not None and c.measured else None


def attach_ceilings(run: RunRecord, ceilings: Ceilings) -> RunRecord:
    """A copy of ``run`` with ``ceiling_name``/``ceiling_gbps`` filled on each stage a
    measured ceiling bounds, and the decode records' ``memory_bandwidth_gbps`` filled
    from the ceilings where the run did not measure one itself. Everything else is
    left as it was.

    ``ceiling_gbps`` is in the stage's own bytes (see :func:`stage_ceiling_scale`),
    so ``stage.ceiling_fraction`` is right as it stands: for a bf16→fp32 cast it is
    ``host_memcpy / 3``, each source byte costing 1 byte read and 2 written.
    """
    page_state = page_state_of(run)
    stages = []
    for st in run.stages:
        cands = ceiling_candidates(
            st.name,
            page_state=page_state,
            device=run.device,
            pinned=stage_pinned(st),
            disk_read_bytes=st.disk_read_bytes,
            nbytes=st.bytes,
            on_device=cast_on_device(st),
        )
        best, _missing = pick_ceiling(cands, ceilings)
        scale = stage_ceiling_scale(st, run)
        if best is not None and best.gbps is not None and scale is not None:
            st = replace(st, ceiling_name=best.name, ceiling_gbps=best.gbps * scale)
        stages.append(st)
    decode = []
    bw = decode_bandwidth_ceiling(ceilings, run.device)
    for d in run.decode:
        if d.memory_bandwidth_gbps is None and bw is not None:
            d = replace(
                d, memory_bandwidth_gbps=bw.value, bandwidth_source=ceilings_source(bw.name)
            )
        decode.append(d)
    return replace(run, stages=tuple(stages), decode=tuple(decode))
