"""A short diagnosis of a load (and decode) against the machine's ceilings.

Which stage dominates, what bounds it, how much headroom the hardware leaves: a
few sentences built from measured figures only. Where a figure is missing the text
says so ("no ceiling measured for X") rather than guessing a cause.

Pure functions: run records and ceilings in, sentences out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from profiler.analysis.decode_metrics import (
    CEILINGS_SOURCE_PREFIX,
    DecodeFigures,
    ceilings_source,
    decode_figures,
    group_by_shape,
    prefill_mfu,
)
from profiler.analysis.stats import median
from profiler.machine.bounds import (
    DESCRIPTIONS,
    cast_on_device,
    ceiling_candidates,
    decode_bandwidth_ceiling,
    matmul_ceiling,
    page_state_of,
    pick_ceiling,
    stage_ceiling_scale,
    stage_pinned,
)
from profiler.records.ceilings import Ceilings
from profiler.records.run import RunRecord

BOUND = 0.7  # at or above this fraction of its ceiling a stage is called bound by it
MIN_SHARE = 0.2  # stages below this share of the load get no line of their own
MAX_STAGE_LINES = 3
OVER = 1.1  # above the ceiling by more than this: the comparison itself is suspect


@dataclass(frozen=True)
class StageSummary:
    """One stage over a group of runs: medians of the repetitions that ran it."""

    name: str
    duration_s: float
    bytes: float | None = None
    gbps: float | None = None
    disk_read_bytes: float | None = None
    pinned: bool = False
    on_device: bool = False  # a dtype_cast done on the GPU
    threads: int | None = None  # the stage's "threads" counter (readers), if it has one
    # Ceiling GB/s → the stage's own bytes per second (a cast moves more bytes than
    # it counts); None when unknown. See profiler.machine.bounds.stage_ceiling_scale.
    scale: float | None = 1.0
    ceiling_name: str | None = None  # as attached to the records, if they were
    ceiling_gbps: float | None = None
    runs: int = 1


def _med(values: Sequence[float | None]) -> float | None:
    xs = [float(v) for v in values if v is not None]
    return median(xs) if xs else None


def _check_group(runs: Sequence[RunRecord]) -> None:
    keys = {(r.model.spec, r.device, r.dtype_resolved, r.cache.label) for r in runs}
    if len(keys) > 1:
        raise ValueError(
            "diagnose() takes repetitions of one group (same model, device, dtype and "
            f"cache state), got {len(keys)} groups"
        )


def _as_int(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


def summarize_stages(runs: Sequence[RunRecord]) -> list[StageSummary]:
    """Median duration, bytes, GB/s and disk bytes of each stage that ran ("ok") in
    ``runs``, in the order stages first occur."""
    names: list[str] = []
    for r in runs:
        for s in r.stages:
            if s.status == "ok" and s.name not in names:
                names.append(s.name)
    out = []
    for name in names:
        pairs = [(r, st) for r in runs if (st := r.stage(name)) is not None and st.status == "ok"]
        stages = [st for _r, st in pairs]
        pins = [1.0 if stage_pinned(s) else 0.0 for s in stages]
        on_dev = [1.0 if cast_on_device(s) else 0.0 for s in stages]
        scales = [stage_ceiling_scale(st, r) for r, st in pairs]
        threads = _med([_as_int(st.counters.get("threads")) for st in stages])
        attached = [s for s in stages if s.ceiling_name is not None]
        out.append(
            StageSummary(
                name=name,
                duration_s=median([s.duration_s for s in stages]),
                bytes=_med([s.bytes for s in stages]),
                gbps=_med([s.gbps for s in stages]),
                disk_read_bytes=_med([s.disk_read_bytes for s in stages]),
                pinned=median(pins) >= 0.5,
                on_device=median(on_dev) >= 0.5,
                threads=None if threads is None else round(threads),
                scale=None if None in scales else median([x for x in scales if x is not None]),
                ceiling_name=attached[0].ceiling_name if attached else None,
                ceiling_gbps=_med([s.ceiling_gbps for s in attached]),
                runs=len(stages),
            )
        )
    return out


def _rate(gbps: float) -> str:
    if gbps >= 100:
        return f"{gbps:.0f}"
    if gbps >= 10:
        return f"{gbps:.1f}".rstrip("0").rstrip(".")
    if gbps >= 1:
        return f"{gbps:.1f}"
    return f"{gbps:.2f}"


def _pct(fraction: float) -> str:
    return f"{fraction:.0%}" if fraction >= 0.01 else f"{fraction:.1%}"


def _measured(name: str, ceilings: Ceilings | None) -> float | None:
    return ceilings.value(name) if ceilings is not None else None


def _verdict(
    s: StageSummary, bound: str, frac: float, ceilings: Ceilings | None
) -> tuple[str, str]:
    """(extra comparison, verdict) for a stage at ``frac`` of the ceiling ``bound``."""
    headroom = 1 / frac
    gbps = s.gbps or 0.0
    if frac > OVER:
        return "", (
            "faster than the measured ceiling, so this comparison does not hold: check the "
            "page-cache state of the run, or re-measure with `llmprof ceilings --refresh`"
        )
    if s.name == "read_copy":
        if frac >= BOUND:
            return "", f"bound by {DESCRIPTIONS.get(bound, bound)}, the slower of read and copy"
        return "", (
            f"the slower of read and copy ({DESCRIPTIONS.get(bound, bound)}) allows "
            f"{headroom:.1f}× this"
        )
    if bound == "disk_read":
        if frac >= BOUND:
            return "", "the load is disk-bound; a faster disk or a smaller checkpoint is the lever"
        return "", (
            f"the disk can deliver {headroom:.1f}× this, so the disk is not the limit; "
            "larger reads issued in parallel are the lever"
        )
    if bound == "page_cache_read":
        if frac >= BOUND:
            return "", (
                "bound by copying out of the page cache; fewer copies or a smaller "
                "checkpoint is the lever"
            )
        one = _measured("page_cache_read_1t", ceilings)
        headroom_text = (
            f"the page cache can deliver {headroom:.1f}× this, so reading is not the limit"
        )
        if one and 0.6 * one <= gbps <= 1.25 * one:
            near = f", close to the single-thread page-cache rate ({_rate(one)} GB/s)"
            if s.threads is not None and s.threads > 1:
                return f"{near} though it read with {s.threads} threads", headroom_text
            return near, "reading with several threads is the lever"
        return "", headroom_text
    if bound in ("host_memcpy", "device_memory"):
        skip = "a checkpoint stored in the loaded dtype skips this stage"
        where = "host" if bound == "host_memcpy" else "device"
        if frac >= BOUND:
            return "", f"bound by {where} memory bandwidth; {skip}"
        return "", f"{where} memory allows {headroom:.1f}× this, so memory is not the limit; {skip}"
    if bound == "h2d_pageable":
        pinned = _measured("h2d_pinned", ceilings)
        if pinned:
            extra = f", {_pct(gbps / pinned)} of pinned ({_rate(pinned)} GB/s)"
            if gbps < BOUND * pinned:
                return extra, (
                    "weights are copied from pageable memory; staging through pinned memory "
                    "or loading straight to the GPU is the lever"
                )
            return extra, "bound by the host-to-device link"
        if frac >= BOUND:
            return "", (
                "bound by pageable host-to-device copies; no ceiling measured for h2d_pinned "
                "to compare with"
            )
        return "", f"pageable copies could run {headroom:.1f}× faster"
    if bound == "h2d_pinned":
        if frac >= BOUND:
            return "", "bound by the host-to-device link; fewer bytes to copy is the lever"
        return "", (
            f"the link can carry {headroom:.1f}× this; overlapping reads with asynchronous "
            "copies is the lever"
        )
    return "", f"the ceiling allows {headroom:.1f}× this"


def _resolve(
    s: StageSummary, cands: Sequence[str], ceilings: Ceilings | None
) -> tuple[str | None, float | None, str | None]:
    """(bound, its GB/s in the stage's bytes, the name of a ceiling not measured)."""
    if not cands:
        return None, None, None
    if ceilings is not None:
        best, missing = pick_ceiling(cands, ceilings)
        if (
            best is not None
            and best.name == "device_memory"
            and not ceilings.device.startswith("cuda")
        ):
            best, missing = None, "device_memory"
        if best is None or best.gbps is None:
            return None, None, missing or cands[0]
        if s.scale is None:
            return best.name, None, None
        return best.name, best.gbps * s.scale, None
    if s.ceiling_name in cands and s.ceiling_gbps:
        return s.ceiling_name, s.ceiling_gbps, None  # attached: already in stage bytes
    return None, None, cands[0]


def stage_line(
    s: StageSummary,
    share: float,
    *,
    page_state: str,
    device: str,
    ceilings: Ceilings | None,
) -> str:
    """One sentence on one stage: its share, its rate, its ceiling and the headroom."""
    cands = ceiling_candidates(
        s.name,
        page_state=page_state,
        device=device,
        pinned=s.pinned,
        disk_read_bytes=None if s.disk_read_bytes is None else int(s.disk_read_bytes),
        nbytes=None if s.bytes is None else int(s.bytes),
        on_device=s.on_device,
    )
    qual = ""
    if s.name in ("weight_read", "read_copy"):
        if page_state in ("cold", "warm"):
            qual = f" ({page_state})"
        elif "disk_read" in cands:
            qual = " (served from disk)"
        elif "page_cache_read" in cands:
            qual = " (served from the page cache)"
    head = f"{s.name}{qual} takes {_pct(share)} of the load ({s.duration_s:.2f} s)"
    at = f" at {_rate(s.gbps)} GB/s" if s.gbps is not None else ""
    if s.name == "hub_download":
        return f"{head}{at}: a network transfer; no ceiling measured for the network"
    if s.gbps is None:
        return f"{head}: it moves no measured bytes, so no bandwidth ceiling applies"
    if not cands:
        why = (
            "the page-cache state is unknown"
            if s.name in ("weight_read", "read_copy")
            else "none measured"
        )
        return f"{head}{at}: no ceiling applies to {s.name} ({why})"
    bound, ceil, missing = _resolve(s, cands, ceilings)
    if missing:
        return f"{head}{at}; no ceiling measured for {missing}"
    if bound is None or not ceil:
        return f"{head}{at}: no ceiling applies ({s.name}'s source and target dtype sizes unknown)"
    frac = s.gbps / ceil
    extra, verdict = _verdict(s, bound, frac, ceilings)
    desc = DESCRIPTIONS.get(bound, bound)
    if s.scale is not None and abs(s.scale - 1.0) > 1e-9:
        raw = ceil / s.scale
        compare = (
            f" = {_pct(frac)} of what {desc} allows for this cast ({_rate(ceil)} GB/s of "
            f"source: {_rate(raw)} GB/s read+written, {1 / s.scale:.1f} bytes moved per "
            "source byte)"
        )
    else:
        compare = f" = {_pct(frac)} of {desc} ({_rate(ceil)} GB/s)"
    return f"{head}{at}{compare}{extra}: {verdict}"


def diagnose_stages(
    stages: Sequence[StageSummary],
    *,
    page_state: str,
    device: str,
    ceilings: Ceilings | None,
    min_share: float = MIN_SHARE,
    max_lines: int = MAX_STAGE_LINES,
) -> list[str]:
    """Lines on the dominant stage and on any other stage with at least ``min_share``
    of the load (at most ``max_lines``), largest first."""
    total = sum(s.duration_s for s in stages)
    if total <= 0:
        return []
    ranked = sorted(stages, key=lambda s: s.duration_s, reverse=True)
    lines = []
    for i, s in enumerate(ranked[:max_lines]):
        share = s.duration_s / total
        if i > 0 and share < min_share:
            break
        lines.append(stage_line(s, share, page_state=page_state, device=device, ceilings=ceilings))
    return lines


def _sig3(x: float) -> str:
    """About three significant digits, as the tables print them."""
    a = abs(x)
    return f"{x:,.{0 if a >= 100 else 1 if a >= 10 else 2 if a >= 1 else 3}f}"


def _bytes(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{_sig3(n / 1e6)} MB"


def _bandwidth_text(f: DecodeFigures) -> str:
    """Which bandwidth an MBU is against, as the rule of decode_metrics picks it."""
    bw = _rate(f.bandwidth_gbps or 0.0)
    if f.bandwidth_from_run:
        return f"the memory bandwidth measured in the same run ({bw} GB/s)"
    name = (f.bandwidth_source or "")[len(CEILINGS_SOURCE_PREFIX) :]
    return f"{DESCRIPTIONS.get(name, name)} ({bw} GB/s, from the ceilings: the run measured none)"


def decode_line(f: DecodeFigures, device: str) -> str | None:
    """One sentence on decode at one shape: step time, tokens/s, MBU and what bounds it."""
    if f.step is None or f.tokens_per_s_seq is None or f.tokens_per_s_batch is None:
        return None
    step = f.step.median
    text = (
        f"decode (batch {f.batch_size}): {_sig3(step * 1e3)} ms per step (median over "
        f"{f.step.n} warm calls), {_sig3(f.tokens_per_s_seq)} tokens/s per sequence"
    )
    if f.batch_size > 1:
        text += f", {_sig3(f.tokens_per_s_batch)} for the batch"
    if f.bytes_per_step is None or f.achieved_gbps is None:
        return text + "; bytes read per step not measured, so no bandwidth comparison"
    if f.mbu is None or not f.bandwidth_gbps:
        what = "device_memory" if device.startswith("cuda") else "host_memcpy"
        return text + f"; no memory bandwidth measured in the run and no ceiling for {what}"
    what = "" if f.kv_counted else " (weights only; KV-cache bytes not measured)"
    text += (
        f"; reads {_bytes(f.bytes_per_step)} per step{what} = {_rate(f.achieved_gbps)} "
        f"GB/s: MBU {f.mbu:.1%} of {_bandwidth_text(f)}"
    )
    if f.mbu > OVER:
        return text + ": above the measured bandwidth, so the byte count or the bandwidth is off"
    if f.mbu >= BOUND:
        return (
            text + ": decode is memory-bound; a larger batch or fewer bytes per weight is the lever"
        )
    floor = f.bytes_per_step / (f.bandwidth_gbps * 1e9)
    return text + (
        f": reading those bytes takes {_sig3(floor * 1e3)} ms, so memory bandwidth is not "
        "what limits a step"
    )


def _decode_lines(
    runs: Sequence[RunRecord], ceilings: Ceilings | None, num_params: int | None
) -> list[str]:
    device = runs[0].device
    fallback = None
    if ceilings is not None:
        c = decode_bandwidth_ceiling(ceilings, device)
        if c is not None and c.value:
            fallback = (c.value, ceilings_source(c.name))
    lines = []
    for recs in group_by_shape(d for r in runs for d in r.decode):
        f = decode_figures(recs, fallback)
        line = decode_line(f, device)
        if line is None:
            continue
        lines.append(line)
        prefill = _prefill_line(f, ceilings, num_params, device, runs[0].dtype_resolved)
        if prefill:
            lines.append(prefill)
    return lines


def _prefill_line(
    f: DecodeFigures, ceilings: Ceilings | None, num_params: int | None, device: str, dtype: str
) -> str | None:
    if f.ttft is None or f.ttft.median <= 0 or not num_params or ceilings is None:
        return None
    c = matmul_ceiling(ceilings, device)
    if c is None or not c.value:
        return None
    ttft = f.ttft.median
    mfu = prefill_mfu(num_params, f.prompt_tokens, f.batch_size, ttft, c.value)
    text = (
        f"prefill (batch {f.batch_size}, {f.prompt_tokens} prompt tokens): first token after "
        f"{ttft * 1e3:.1f} ms = {_pct(mfu)} of {DESCRIPTIONS[c.name]} ({_rate(c.value)} "
        "TFLOP/s); that time includes one decode step"
    )
    if dtype != "bfloat16":
        text += f"; the model runs in {dtype}, the rate was measured in bf16"
    return text


def _machine_line(run: RunRecord, ceilings: Ceilings) -> str | None:
    fp = ceilings.fingerprint
    env = run.environment
    diffs = []
    if fp.get("cpu_model") and env.cpu_model and fp["cpu_model"] != env.cpu_model:
        diffs.append(f"CPU {fp['cpu_model']} vs {env.cpu_model}")
    if (
        run.device.startswith("cuda")
        and fp.get("gpu_name")
        and env.gpu_name
        and (fp["gpu_name"] != env.gpu_name)
    ):
        diffs.append(f"GPU {fp['gpu_name']} vs {env.gpu_name}")
    if not diffs:
        return None
    return (
        "the ceilings were measured on another machine (" + "; ".join(diffs) + "): the "
        "percentages compare different hardware"
    )


def diagnose(
    runs: RunRecord | Sequence[RunRecord],
    ceilings: Ceilings | None = None,
    *,
    min_share: float = MIN_SHARE,
) -> list[str]:
    """A short diagnosis of one run, or of the repetitions of one group (medians).

    Lines: the load's total, the dominant stage (and any other taking at least
    ``min_share`` of the load) with its rate, ceiling and headroom, then decode per
    batch size (bandwidth utilisation, prefill MFU). Ceilings come from ``ceilings``
    or, when None, from what :func:`profiler.machine.bounds.attach_ceilings` left on the
    stages. Only successful runs count.
    """
    group = [runs] if isinstance(runs, RunRecord) else list(runs)
    ok = [r for r in group if r.status == "ok"]
    if not ok:
        return ["no successful run to diagnose"]
    _check_group(ok)
    lines: list[str] = []
    if ceilings is not None:
        other = _machine_line(ok[0], ceilings)
        if other:
            lines.append(other)
    stages = summarize_stages(ok)
    if stages:
        total = sum(s.duration_s for s in stages)
        reps = f", median of {len(ok)} runs" if len(ok) > 1 else ""
        lines.append(f"load: {total:.2f} s over {len(stages)} stages{reps}")
        lines.extend(
            diagnose_stages(
                stages,
                page_state=page_state_of(ok[0]),
                device=ok[0].device,
                ceilings=ceilings,
                min_share=min_share,
            )
        )
    lines.extend(_decode_lines(ok, ceilings, ok[0].model.num_parameters))
    if ceilings is not None and ceilings.quick and lines:
        lines.append("ceilings from a quick measurement: the percentages are rough")
    return lines
