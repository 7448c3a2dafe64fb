"""Builders of realistic RunRecords with fixed numbers, for tests of anything that reads them.

Every value is deterministic: stage times come from fixed tables times a fixed
per-repetition jitter, timestamps start at fixed instants, the environment is a
fixed machine. Golden files depend on that, so change numbers here only together
with ``LLMPROF_UPDATE_GOLDEN=1``.

Shapes follow a small real model (SmolLM2-135M in bfloat16: 269 MB of weights)
loaded on a 2-core CPU box, and the same model on an H100 for GPU-shaped records.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from profiler.records.decode import DecodeCall, DecodeRecord
from profiler.records.run import CacheState, Environment, ModelInfo, NativeView, RunRecord
from profiler.records.stage import MemorySnapshot, StageMemory, StageRecord

MIB = 1024 * 1024
SPEC = "HuggingFaceTB/SmolLM2-135M-Instruct"
WEIGHT_BYTES = 269_060_552  # 134.5M parameters × 2 bytes
KV_BYTES_PER_TOKEN = 30 * 2 * 3 * 64 * 2  # layers × (K, V) × kv heads × head dim × bf16

# Per-repetition multipliers: medians and MADs of three repetitions are then known
# exactly (median factor 1.00, MAD factor 0.02).
JITTER: tuple[float, ...] = (1.00, 1.03, 0.98, 1.01, 0.99)

# (name, seconds cold, seconds warm, payload bytes, bytes_what, skipped reason on CPU)
CPU_STAGES: tuple[tuple[str, float, float, int | None, str], ...] = (
    ("python_start", 0.040, 0.040, None, ""),
    ("import", 1.100, 0.950, None, ""),
    ("tokenizer", 0.085, 0.060, 2_104_000, "tokenizer files read"),
    ("config", 0.012, 0.008, 1_024, "config.json read"),
    ("model_init", 0.160, 0.150, None, ""),
    ("weight_read", 0.950, 0.110, WEIGHT_BYTES, "bytes read from the checkpoint files"),
    ("dtype_cast", 0.045, 0.044, WEIGHT_BYTES, "bytes cast"),
    ("attach", 0.030, 0.028, None, ""),
    ("eval", 0.002, 0.002, None, ""),
)
GPU_EXTRA: dict[str, tuple[float, float, int | None, str]] = {
    "cuda_init": (0.900, 0.880, None, ""),
    "h2d_copy": (0.021, 0.020, WEIGHT_BYTES, "bytes copied to the device"),
}

T0_NS = 1_000_000_000_000


def cpu_environment(tool_version: str = "0.1.0") -> Environment:
    return Environment(
        python="3.12.3",
        platform="Linux-6.8.0-x86_64-with-glibc2.39",
        cpu_model="AMD EPYC 7B13",
        cpu_count=2,
        ram_bytes=8 * 1024**3,
        torch="2.13.0+cpu",
        transformers="5.23.0",
        huggingface_hub="2.4.0",
        safetensors="0.8.0",
        weights_filesystem="ext4",
        weights_device="sda1",
        hostname="bench-cpu-1",
        tool_version=tool_version,
    )


def gpu_environment(tool_version: str = "0.1.0") -> Environment:
    return Environment(
        python="3.12.3",
        platform="Linux-6.8.0-x86_64-with-glibc2.39",
        cpu_model="Intel Xeon Platinum 8480+",
        cpu_count=16,
        ram_bytes=128 * 1024**3,
        torch="2.11.0+cu128",
        transformers="5.17.0",
        huggingface_hub="1.33.0",
        safetensors="0.8.0",
        cuda="12.8",
        gpu_name="NVIDIA H100 80GB HBM3",
        gpu_driver="570.86.15",
        gpu_memory_bytes=80 * 1024**3,
        gpu_pci_bus_id="00000000:19:00.0",
        weights_filesystem="xfs",
        weights_device="nvme0n1",
        hostname="bench-gpu-1",
        tool_version=tool_version,
    )


def model_info(
    spec: str = SPEC,
    *,
    source_kind: str = "hub",
    random_weights: bool = False,
    weight_bytes: int = WEIGHT_BYTES,
) -> ModelInfo:
    return ModelInfo(
        spec=spec,
        source_kind=source_kind,
        path=f"/cache/{spec.replace('/', '--')}",
        revision="12fd25f77366fa6b3b4b768ec3050bf629380bac" if source_kind == "hub" else None,
        architecture="LlamaForCausalLM",
        num_parameters=weight_bytes // 2,
        weight_format="safetensors",
        weight_files=("model.safetensors",),
        weight_bytes=weight_bytes,
        storage_dtype="bfloat16",
        random_weights=random_weights,
    )


def _snapshot(anon_mib: float, file_mib: float, gpu_mib: float | None) -> MemorySnapshot:
    anon = int(anon_mib * MIB)
    file = int(file_mib * MIB)
    return MemorySnapshot(
        rss_bytes=anon + file,
        rss_anon_bytes=anon,
        rss_file_bytes=file,
        gpu_used_bytes=None if gpu_mib is None else int(gpu_mib * MIB),
        torch_allocated_bytes=None if gpu_mib is None else int(max(gpu_mib - 500, 0) * MIB),
        torch_reserved_bytes=None if gpu_mib is None else int(max(gpu_mib - 480, 0) * MIB),
    )


STAGE_ORDER = (
    "python_start",
    "import",
    "cuda_init",
    "tokenizer",
    "config",
    "model_init",
    "weight_read",
    "dtype_cast",
    "h2d_copy",
    "attach",
    "eval",
)
# What the product's child writes when a stage does not apply on a CPU.
CPU_SKIPS = {
    "cuda_init": "device is cpu",
    "h2d_copy": "device is cpu: weights stay in host memory",
}


def _ceiling(name: str, warm: bool, gpu: bool) -> tuple[str | None, float | None]:
    """The ceiling attach_ceilings would put on the stage (names as the product writes)."""
    if name == "weight_read":
        return ("page_cache_read", 6.0) if warm else ("disk_read", 1.2)
    if name == "h2d_copy" and gpu:
        return "h2d_pageable", 25.0
    return None, None


@dataclass
class _Memory:
    """Resident memory of the fake process, in MiB, as the stages go by."""

    anon: float
    file: float
    gpu: float | None

    def snapshot(self) -> MemorySnapshot:
        return _snapshot(self.anon, self.file, self.gpu)

    def grow(self, name: str, scale: float) -> None:
        """Memory a stage adds: imports, the model skeleton, the file pages, the copies."""
        weights_mib = WEIGHT_BYTES / MIB * scale
        if name == "import":
            self.anon += 380.0
        elif name == "model_init":
            self.anon += 12.0
        elif name == "weight_read":
            self.file += weights_mib
        elif name == "dtype_cast" and self.gpu is None:
            self.anon += weights_mib
        elif name == "cuda_init" and self.gpu is not None:
            self.anon += 220.0
        elif name == "h2d_copy" and self.gpu is not None:
            self.gpu += weights_mib


def build_stages(
    cache: str,
    repetition: int,
    *,
    gpu: bool = False,
    scale: float = 1.0,
    skip: dict[str, str] | None = None,
) -> tuple[StageRecord, ...]:
    """The staged view of one load; ``skip`` maps stage names to skip reasons."""
    warm = cache == "warm"
    jitter = JITTER[repetition % len(JITTER)]
    skip = {**({} if gpu else CPU_SKIPS), **(skip or {})}
    by_name = {row[0]: row for row in CPU_STAGES}
    by_name |= {name: (name, *values) for name, values in GPU_EXTRA.items()}
    t = T0_NS + repetition * 10_000_000_000
    mem = _Memory(anon=30.0, file=12.0, gpu=520.0 if gpu else None)
    out = []
    for name in STAGE_ORDER:
        if name in skip:
            out.append(
                StageRecord(name=name, status="skipped", start_ns=t, end_ns=t, notes=(skip[name],))
            )
            continue
        _, cold_s, warm_s, nbytes, what = by_name[name]
        seconds = (warm_s if warm else cold_s) * jitter * scale
        start, end = t, t + int(round(seconds * 1e9))
        t = end + 50_000  # 50 µs between stages, as the recorder leaves
        before = mem.snapshot()
        mem.grow(name, scale)
        after = mem.snapshot()
        payload = None if nbytes is None else int(nbytes * scale)
        ceiling_name, ceiling = _ceiling(name, warm, gpu)
        out.append(
            StageRecord(
                name=name,
                status="ok",
                start_ns=start,
                end_ns=end,
                bytes=payload,
                bytes_what=what,
                disk_read_bytes=(0 if warm else payload) if name == "weight_read" else None,
                memory=StageMemory(
                    before=before,
                    after=after,
                    peak_rss_bytes=after.rss_bytes + int(8 * MIB),
                    peak_rss_anon_bytes=after.rss_anon_bytes + int(8 * MIB),
                    peak_gpu_used_bytes=after.gpu_used_bytes,
                    torch_peak_allocated_bytes=after.torch_allocated_bytes,
                    torch_peak_reserved_bytes=after.torch_reserved_bytes,
                ),
                ceiling_name=ceiling_name,
                ceiling_gbps=ceiling,
                notes=("read through mmap: pages faulted in on first touch",)
                if name == "weight_read" and not warm
                else (),
                counters={"major_faults": 4100 if name == "weight_read" and not warm else 0},
            )
        )
    return tuple(out)


def build_native(
    cache: str, repetition: int, *, gpu: bool = False, scale: float = 1.0
) -> NativeView:
    """Plain from_pretrained (and .to() on GPU): a little faster than the staged load."""
    jitter = JITTER[repetition % len(JITTER)]
    warm = cache == "warm"
    fp = (0.36 if warm else 1.10) * jitter * scale
    t = T0_NS + 500_000_000_000 + repetition * 10_000_000_000
    stages = [StageRecord("from_pretrained", "ok", t, t + int(round(fp * 1e9)))]
    if gpu:
        t2 = stages[-1].end_ns + 10_000
        stages.append(
            StageRecord(
                "to_device",
                "ok",
                t2,
                t2 + int(round(0.025 * 1e9)),
                bytes=WEIGHT_BYTES,
                bytes_what="bytes copied to the device",
            )
        )
    return NativeView(
        stages=tuple(stages),
        load_kwargs={"dtype": "bfloat16"},
        attribution={
            "from_pretrained.disk_read_bytes": 0 if warm else WEIGHT_BYTES,
            "from_pretrained.major_faults": 0 if warm else 4100,
        },
        unattributed=("0.21 s between the last weight read and the first forward",),
    )


def build_call(start_ns: int, ttft_s: float, intervals_s: Sequence[float]) -> DecodeCall:
    times = [start_ns + int(round(ttft_s * 1e9))]
    for dt in intervals_s:
        times.append(times[-1] + int(round(dt * 1e9)))
    return DecodeCall(
        start_ns=start_ns,
        end_ns=times[-1] + 200_000,
        token_times_ns=tuple(times),
        prompt_start_ns=start_ns + 100_000,
    )


def build_decode(
    batch_size: int,
    repetition: int = 0,
    *,
    new_tokens: int = 8,
    prompt_tokens: int = 16,
    gpu: bool = False,
) -> DecodeRecord:
    """Decode at one batch size: a slow first call, then three warm calls."""
    per_token = (0.0040 if gpu else 0.020) * (1 + 0.1 * (batch_size - 1))
    ttft = (0.008 if gpu else 0.030) * batch_size**0.5
    base = T0_NS + 900_000_000_000 + repetition * 10_000_000_000 + batch_size * 1_000_000_000
    # The first call pays for lazy initialization: a long first token and slower steps.
    first = build_call(base, ttft * 4, [per_token * 2.0] + [per_token * 1.25] * (new_tokens - 2))
    calls = []
    for i, factor in enumerate((1.00, 1.02, 0.99)):
        # One slow step in each call (a scheduler hiccup) so p99 and max differ from p50.
        steps = [per_token * factor] * (new_tokens - 1)
        steps[3] = per_token * factor * 1.6
        calls.append(build_call(base + (i + 1) * 100_000_000, ttft * factor, steps))
    hooked = [c.wall_s for c in calls]
    return DecodeRecord(
        batch_size=batch_size,
        prompt_tokens=prompt_tokens,
        new_tokens=new_tokens,
        temperature=0.0,
        seed=0,
        first_call=first,
        calls=tuple(calls),
        plain_calls_s=tuple(round(h * 0.99, 9) for h in hooked),
        weight_bytes=WEIGHT_BYTES,
        kv_bytes_per_token=KV_BYTES_PER_TOKEN,
        memory_bandwidth_gbps=3350.0 if gpu else 20.0,
        bandwidth_source="spec sheet" if gpu else "measured (llmprof ceilings)",
        peak_gpu_allocated_bytes=WEIGHT_BYTES + 40 * MIB if gpu else None,
        kv_cache_bytes=KV_BYTES_PER_TOKEN * batch_size * (prompt_tokens + new_tokens),
        attention_backend="sdpa",
        text="The capital of France is Paris. It is"
        if batch_size == 1
        else "The capital of France is Paris. It is",
    )


def make_run(
    *,
    cache: str = "cold",
    repetition: int = 0,
    spec: str = SPEC,
    gpu: bool = False,
    dtype: str = "bfloat16",
    decode_batches: Sequence[int] = (1, 4),
    native: bool = True,
    status: str = "ok",
    source_kind: str = "hub",
    random_weights: bool = False,
    scale: float = 1.0,
    resident_before: float | None = None,
    page_verified: bool | None = True,
    skip: dict[str, str] | None = None,
    tool_version: str = "0.1.0",
) -> RunRecord:
    """One repetition with fixed numbers. ``cache`` is the requested page-cache state."""
    if resident_before is None:
        resident_before = 0.0 if cache == "cold" else 1.0
    env = gpu_environment(tool_version) if gpu else cpu_environment(tool_version)
    failed = status != "ok"
    stages = build_stages(cache, repetition, gpu=gpu, scale=scale, skip=skip)
    if failed:
        stages = stages[:5]  # killed while building the model
    hour = 10 + (0 if cache == "cold" else 1) + (2 if gpu else 0)
    return RunRecord(
        model=model_info(
            spec,
            source_kind=source_kind,
            random_weights=random_weights,
            weight_bytes=int(WEIGHT_BYTES * scale),
        ),
        device="cuda:0" if gpu else "cpu",
        dtype_requested="auto",
        dtype_resolved=dtype,
        cache=CacheState(
            hub="n/a",
            page=cache,
            process="fresh",
            page_resident_fraction_before=resident_before,
            page_verified=page_verified,
        ),
        environment=env,
        repetition=repetition,
        stages=stages,
        native=None
        if failed or not native
        else build_native(cache, repetition, gpu=gpu, scale=scale),
        decode=()
        if failed
        else tuple(build_decode(b, repetition, gpu=gpu) for b in decode_batches),
        status=status,
        error="Traceback (most recent call last):\n  ...\nRuntimeError: killed by the OOM killer"
        if failed
        else None,
        exit_code=137 if failed else None,
        created_at=f"2025-06-01T{hour:02d}:{repetition * 5:02d}:00+00:00",
        run_id=f"{'gpu' if gpu else 'cpu'}-{cache}-{spec.rsplit('/', 1)[-1]}-{repetition}",
    )


def cpu_cold_warm(n: int = 3) -> list[RunRecord]:
    """n cold and n warm repetitions of the small model on the CPU box, decode at 1 and 4."""
    return [make_run(cache=c, repetition=i) for c in ("cold", "warm") for i in range(n)]


def gpu_cold_warm(n: int = 3) -> list[RunRecord]:
    return [make_run(cache=c, repetition=i, gpu=True) for c in ("cold", "warm") for i in range(n)]


def failed_run(repetition: int = 3) -> RunRecord:
    """A cold repetition that died (exit 137) after the first stages."""
    return make_run(cache="cold", repetition=repetition, status="failed")


def not_cold_run(repetition: int = 0) -> RunRecord:
    """Asked for a cold page cache, but 42% of the weights were resident."""
    return make_run(
        cache="cold",
        repetition=repetition,
        resident_before=0.42,
        page_verified=False,
        decode_batches=(),
    )


def synthetic_run(repetition: int = 0) -> RunRecord:
    """A random-weights model built from a config, 4× smaller, warm cache, no decode."""
    return make_run(
        cache="warm",
        repetition=repetition,
        spec="synthetic:llama-tiny",
        source_kind="synthetic",
        random_weights=True,
        scale=0.25,
        decode_batches=(1,),
    )


def mixed_runs() -> list[RunRecord]:
    """CPU cold/warm with a failed repetition, GPU cold/warm, and a synthetic model."""
    return [*cpu_cold_warm(), failed_run(), *gpu_cold_warm(), synthetic_run()]
