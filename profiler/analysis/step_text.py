"""Sentences on what bounds a decode step, its energy and its noise, for the diagnosis.

Figures come from :mod:`profiler.analysis.decode_metrics` (attribution, energy) and
:mod:`profiler.analysis.decode_noise`; this module only words them, so the
diagnosis, the findings and the report say the same thing.
"""

from __future__ import annotations

from collections.abc import Sequence

from profiler.analysis.decode_metrics import (
    BOUND_HOST,
    BOUND_KERNELS,
    BOUND_MATMUL,
    BOUND_MEMORY,
    DecodeFigures,
    StepAttribution,
    decode_energy,
    matmul_rate,
    step_attribution,
)
from profiler.analysis.decode_noise import SPREAD_LIMIT, TAIL_LIMIT, DecodeNoise, decode_noise
from profiler.analysis.stats import median
from profiler.records.decode import DecodeRecord
from profiler.render.format import num


def _ms(seconds: float) -> str:
    return f"{num(seconds * 1e3)} ms"


LEVERS = {
    (BOUND_HOST, True): (
        "host-side launch overhead: the GPU idles while the host launches kernels one by "
        "one; fewer launches (a static KV cache with torch.compile / CUDA graphs) is the lever"
    ),
    (BOUND_HOST, False): (
        "framework overhead: Python and generate()'s bookkeeping between torch ops; "
        "compiling the step (torch.compile) or a leaner loop is the lever"
    ),
    (BOUND_MEMORY, True): "memory bandwidth: fewer bytes per weight or a larger batch",
    (BOUND_MEMORY, False): "memory bandwidth: fewer bytes per weight or a larger batch",
    (BOUND_MATMUL, True): "the matmul rate: a faster dtype for this device",
    (BOUND_MATMUL, False): (
        "the matmul rate in this dtype: a dtype the CPU multiplies faster, or more cores"
    ),
    (BOUND_KERNELS, True): (
        "kernel time above the bandwidth floor: attention and small kernels run below "
        "bandwidth; fused kernels (flash attention, torch.compile) are the lever"
    ),
    (BOUND_KERNELS, False): (
        "op time above the floors: small ops and attention run far from bandwidth and "
        "matmul rate; fusing them (torch.compile) is the lever"
    ),
}


# The bound as a table cell names it, per (bound, on a GPU).
SHORT_BOUNDS = {
    (BOUND_HOST, True): "host launches",
    (BOUND_HOST, False): "framework overhead",
    (BOUND_MEMORY, True): "memory bandwidth",
    (BOUND_MEMORY, False): "memory bandwidth",
    (BOUND_MATMUL, True): "matmul rate",
    (BOUND_MATMUL, False): "matmul rate",
    (BOUND_KERNELS, True): "kernels above floor",
    (BOUND_KERNELS, False): "ops above floor",
}


def attribution_line(
    a: StepAttribution, records: Sequence[DecodeRecord], batch: int, on_gpu: bool
) -> str:
    """One sentence: where a warm step's time goes and what binds it."""
    profiles = [d.step_profile for d in records if d.step_profile is not None]
    launches = [p.launches_per_step for p in profiles if p.launches_per_step is not None]
    floors = []
    if a.memory_floor_s is not None:
        floors.append(f"memory {_ms(a.memory_floor_s)}")
    rate = matmul_rate(records)
    if a.matmul_floor_s is not None and rate is not None:
        floors.append(
            f"{rate[1]} matmul {_ms(a.matmul_floor_s)} at {num(rate[0])} TFLOP/s measured in "
            "the run"
        )
    busy = "GPU busy" if on_gpu else "in torch ops"
    idle = "GPU idle" if on_gpu else "outside ops"
    what = "launches" if on_gpu else "top-level ops"
    text = (
        f"step attribution (batch {batch}): {busy} {_ms(a.busy_s)} of {_ms(a.step_s)} = floor "
        f"{_ms(a.floor_s)} ({'; '.join(floors) or 'no floor measured'}) + "
        f"{_ms(a.above_floor_s)} above it; {idle} {_ms(a.idle_s)}"
    )
    if launches:
        text += f"; {round(median(launches)):,} {what} per step"
    if a.busy_capped:
        text += " (profiled busy time exceeded the timed step: capped at it)"
    return text + f"; bound by {LEVERS[(a.bound, on_gpu)]}"


def energy_line(records: Sequence[DecodeRecord]) -> str | None:
    """Joules per token and mean power of the warm calls, or why they are missing."""
    e = decode_energy(records)
    if e is None:
        notes = [d.energy_note for d in records if d.energy_note]
        return notes[0] if notes else None
    return (
        f"energy: {num(e.joules_per_token)} J per token ({num(e.joules_per_call)} J per call, "
        f"mean {num(e.mean_power_w)} W over {e.n_calls} warm calls; whole GPU, NVML counter, "
        "prefill included)"
    )


def noise_line(n: DecodeNoise) -> str | None:
    """One sentence when the decode is noisy (rules of decode_noise), else None."""
    if not n.noisy:
        return None
    parts = []
    if n.call_spread is not None and n.call_spread > SPREAD_LIMIT:
        parts.append(
            f"per-call step times vary by {n.call_spread:.0%} (MAD/median; limit "
            f"{SPREAD_LIMIT:.0%})"
        )
    if n.tail_ratio is not None and n.tail_ratio > TAIL_LIMIT:
        parts.append(f"p90 token interval {num(n.tail_ratio)}x the median")
    if n.bimodal is not None:
        b = n.bimodal
        parts.append(
            f"bimodal steps: {1 - b.high_fraction:.0%} near {_ms(b.low_median_s)}, "
            f"{b.high_fraction:.0%} near {_ms(b.high_median_s)}"
        )
    cause = "; likely cause: " + "; ".join(n.causes) if n.causes else "; cause not measured"
    return "noisy decode: " + ", ".join(parts) + cause


def step_lines(
    records: Sequence[DecodeRecord], f: DecodeFigures, device: str, cores: int | None
) -> list[str]:
    """Attribution, energy and noise sentences of one decode shape."""
    on_gpu = device.startswith("cuda")
    lines = []
    a = step_attribution(records, f)
    if a is not None:
        lines.append(attribution_line(a, records, f.batch_size, on_gpu))
    e = energy_line(records)
    if e:
        lines.append(e)
    noise = decode_noise(records, cores)
    text = noise_line(noise) if noise is not None else None
    if text:
        lines.append(text)
    return lines
