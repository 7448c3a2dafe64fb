"""A short diagnosis of a load (and decode) against the machine's ceilings.

Which stage dominates, what bounds it, how much headroom the hardware leaves: a
few sentences built from measured figures only. Where a figure is missing the text
says so ("no ceiling measured for X") rather than guessing a cause.

Pure functions: run records and ceilings in, sentences out.
"""

from __future__ import annotations

from collections.abc import Sequence

from profiler.analysis.decode_metrics import (
    CEILINGS_SOURCE_PREFIX,
    DecodeFigures,
    ceilings_source,
    decode_figures,
    group_by_shape,
    matmul_rate,
    prefill_mfu,
)
from profiler.analysis.grouping import RunGroup, key_of
from profiler.analysis.stats import median
from profiler.analysis.step_text import step_lines
from profiler.analysis.summaries import StageSummary, summarize_group
from profiler.machine.bounds import (
    DESCRIPTIONS,
    ceiling_candidates,
    decode_bandwidth_ceiling,
    matmul_ceiling,
    page_state_of,
    pick_ceiling,
)
from profiler.records.ceilings import Ceilings
from profiler.records.decode import DecodeRecord
from profiler.records.run import RunRecord
from profiler.render.format import human_seconds, num, percent_text, ratio

BOUND = 0.7  # at or above this fraction of its ceiling a stage is called bound by it
MIN_SHARE = 0.2  # stages below this share of the load get no line of their own
MAX_STAGE_LINES = 3
OVER = 1.1  # above the ceiling by more than this: the comparison itself is suspect


def _med(values: Sequence[float | None]) -> float | None:
    xs = [float(v) for v in values if v is not None]
    return median(xs) if xs else None


def _check_group(runs: Sequence[RunRecord]) -> None:
    keys = {key_of(r) for r in runs}
    if len(keys) > 1:
        raise ValueError(
            "diagnose() takes repetitions of one group (same model, device, dtype, cache "
            f"state, variant and machine), got {len(keys)} groups"
        )


# The decode lines below write rates and shares by these short names; both are the
# one formatter's (profiler.render.format), as for the stage lines.
_rate = num
_pct = percent_text


def _measured(name: str, ceilings: Ceilings | None) -> float | None:
    return ceilings.value(name) if ceilings is not None else None


def _verdict(
    s: StageSummary, bound: str, frac: float, ceilings: Ceilings | None
) -> tuple[str, str]:
    """(extra comparison, verdict) for a stage at ``frac`` of the ceiling ``bound``."""
    headroom = ratio(1 / frac)
    gbps = s.gbps.median if s.gbps is not None else 0.0
    if frac > OVER:
        return "", (
            "faster than the measured ceiling, so this comparison does not hold: check the "
            "page-cache state of the run, or re-measure with `llmprof ceilings --refresh`"
        )
    if s.name == "read_copy":
        if frac >= BOUND:
            return "", f"bound by {DESCRIPTIONS.get(bound, bound)}, the slower of read and copy"
        return "", (
            f"the slower of read and copy ({DESCRIPTIONS.get(bound, bound)}) allows {headroom} this"
        )
    if bound == "disk_read":
        if frac >= BOUND:
            return "", "the load is disk-bound; a faster disk or a smaller checkpoint is the lever"
        return "", (
            f"the disk can deliver {headroom} this, so the disk is not the limit; "
            "larger reads issued in parallel are the lever"
        )
    if bound == "page_cache_read":
        if frac >= BOUND:
            return "", (
                "bound by copying out of the page cache; fewer copies or a smaller "
                "checkpoint is the lever"
            )
        one = _measured("page_cache_read_1t", ceilings)
        headroom_text = f"the page cache can deliver {headroom} this, so reading is not the limit"
        if one and 0.6 * one <= gbps <= 1.25 * one:
            near = f", close to the single-thread page-cache rate ({num(one)} GB/s)"
            if s.threads is not None and s.threads > 1:
                return f"{near} though it read with {s.threads} threads", headroom_text
            return near, "reading with several threads is the lever"
        return "", headroom_text
    if bound in ("host_memcpy", "device_memory"):
        skip = "a checkpoint stored in the loaded dtype skips this stage"
        where = "host" if bound == "host_memcpy" else "device"
        if frac >= BOUND:
            return "", f"bound by {where} memory bandwidth; {skip}"
        return "", f"{where} memory allows {headroom} this, so memory is not the limit; {skip}"
    if bound == "h2d_pageable":
        pinned = _measured("h2d_pinned", ceilings)
        if pinned:
            extra = f", {percent_text(gbps / pinned)} of pinned ({num(pinned)} GB/s)"
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
        return "", f"pageable copies could run {headroom} faster"
    if bound == "h2d_pinned":
        if frac >= BOUND:
            return "", "bound by the host-to-device link; fewer bytes to copy is the lever"
        return "", (
            f"the link can carry {headroom} this; overlapping reads with asynchronous "
            "copies is the lever"
        )
    return "", f"the ceiling allows {headroom} this"


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
        if s.ceiling_scale is None:
            return best.name, None, None
        return best.name, best.gbps * s.ceiling_scale, None
    if s.ceiling_name in cands and s.ceiling_gbps:
        return s.ceiling_name, s.ceiling_gbps, None  # attached: already in stage bytes
    return None, None, cands[0]


def _read_qualifier(name: str, page_state: str, cands: Sequence[str]) -> str:
    """Where a read was served from, as the stage line names it."""
    if name not in ("weight_read", "read_copy"):
        return ""
    if page_state in ("cold", "warm"):
        return f" ({page_state})"
    if "disk_read" in cands:
        return " (served from disk)"
    if "page_cache_read" in cands:
        return " (served from the page cache)"
    return ""


def stage_line(
    s: StageSummary,
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
        disk_read_bytes=s.disk_read_bytes,
        nbytes=s.bytes,
        on_device=s.on_device,
    )
    qual = _read_qualifier(s.name, page_state, cands)
    took = human_seconds(s.time.median if s.time is not None else None)
    head = f"{s.name}{qual} takes {percent_text(s.share_of_total or 0.0)} of the load ({took})"
    if s.import_s and s.name != "import" and s.own_s is not None:
        # A first call pays lazy imports: say so, so they are not taken for its work.
        head += (
            f", of which {human_seconds(s.import_s)} importing {s.import_modules or 0} modules"
            f" (own work {human_seconds(s.own_s)})"
        )
    gbps = s.gbps.median if s.gbps is not None else None
    at = f" at {num(gbps)} GB/s" if gbps is not None else ""
    if s.name == "hub_download":
        return f"{head}{at}: a network transfer; no ceiling measured for the network"
    if gbps is None:
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
    frac = gbps / ceil
    extra, verdict = _verdict(s, bound, frac, ceilings)
    desc = DESCRIPTIONS.get(bound, bound)
    scale = s.ceiling_scale
    if scale is not None and abs(scale - 1.0) > 1e-9:
        compare = (
            f" = {percent_text(frac)} of what {desc} allows for this cast ({num(ceil)} GB/s "
            f"of source: {num(ceil / scale)} GB/s read+written, {num(1 / scale, 1)} bytes "
            "moved per source byte)"
        )
    else:
        compare = f" = {percent_text(frac)} of {desc} ({num(ceil)} GB/s)"
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
    of the staged total (at most ``max_lines``), largest first; stages that never
    completed are left out."""
    ran = [s for s in stages if s.time is not None and s.share_of_total is not None]
    ranked = sorted(ran, key=lambda s: s.share_of_total or 0.0, reverse=True)
    lines = []
    for i, s in enumerate(ranked[:max_lines]):
        if i > 0 and (s.share_of_total or 0.0) < min_share:
            break
        lines.append(stage_line(s, page_state=page_state, device=device, ceilings=ceilings))
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
        prefill = _prefill_line(f, ceilings, num_params, device, runs[0].dtype_resolved, recs)
        if prefill:
            lines.append(prefill)
        lines.extend(step_lines(recs, f, device, runs[0].environment.cpu_count))
    return lines


def _prefill_line(
    f: DecodeFigures,
    ceilings: Ceilings | None,
    num_params: int | None,
    device: str,
    dtype: str,
    records: Sequence[DecodeRecord] = (),
) -> str | None:
    if f.ttft is None or f.ttft.median <= 0 or not num_params:
        return None
    own = matmul_rate(records)
    if own is not None:  # measured in the run's own dtype: the rate its matmuls could reach
        mfu = prefill_mfu(num_params, f.prompt_tokens, f.batch_size, f.ttft.median, own[0])
        return (
            f"prefill (batch {f.batch_size}, {f.prompt_tokens} prompt tokens): first token "
            f"after {f.ttft.median * 1e3:.1f} ms = {_pct(mfu)} of the {own[1]} matmul rate "
            f"measured in the run ({_rate(own[0])} TFLOP/s); that time includes one decode step"
        )
    if ceilings is None:
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
    summary = summarize_group(RunGroup(key_of(ok[0]), tuple(ok)))
    ran = [st for st in summary.stages if st.time is not None]
    if ran and summary.staged_total is not None:
        reps = f", median of {len(ok)} runs" if len(ok) > 1 else ""
        total = human_seconds(summary.staged_total.median)
        stages = f"{len(ran)} stage{'s' if len(ran) != 1 else ''}"
        lines.append(f"load: {total} over {stages}{reps}")
        lines.extend(
            diagnose_stages(
                ran,
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
