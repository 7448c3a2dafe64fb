"""A load split across devices: ``llmprof load MODEL --device-map auto`` (or a JSON map,
or a file holding one, optionally with ``--max-memory``).

The map is checked before any work (:func:`parse_placement`): unknown devices,
malformed JSON and sizes without units give one line and exit status 2. The load
then runs in this process, a fresh one (the command just started), as
``from_pretrained(device_map=..., max_memory=...)`` with its stages timed; after
it, every parameter and buffer is counted on the device it landed on, and on GPUs
the host-to-device copies are split per device from the torch profiler's trace and
each device's memory is read from torch and NVML. The figures are stored as
counters of the ``from_pretrained`` stage (see :mod:`profiler.analysis.placement`).
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from profiler.analysis.placement import counter_key, h2d_by_device
from profiler.errors import UserError
from profiler.measure.h2d_trace import H2DTrace
from profiler.records.run import CacheState, RunRecord
from profiler.run.request import ProfileRequest

NAMED_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")
_PLACES = ("cpu", "disk")


@dataclass(frozen=True)
class PlacementPlan:
    """A checked device map and memory budget, in the form transformers takes."""

    device_map: str | dict[str, int | str]
    label: str  # how the report names it: auto, a file name, or "custom"
    max_memory: dict[int | str, int] | None = None

    def gpus(self) -> set[int]:
        """GPU indices the plan names (they must exist before the load starts)."""
        named: set[int] = set()
        places = (
            list(self.device_map.values()) if isinstance(self.device_map, dict) else []
        ) + list(self.max_memory or {})
        for v in places:
            if isinstance(v, int):
                named.add(v)
            elif isinstance(v, str) and v.startswith("cuda:"):
                named.add(int(v.split(":", 1)[1]))
        return named


def _place(value: Any, where: str) -> int | str:
    """One device of a map: a GPU index, ``cuda:N``, ``cpu`` or ``disk``."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise UserError(f"{where}: {value!r} is not a device: use a GPU index, cuda:N, cpu or disk")
    if isinstance(value, int):
        if value < 0:
            raise UserError(f"{where}: GPU index {value} is negative")
        return value
    if value in _PLACES:
        return value
    if value.startswith("cuda:") and value[5:].isdigit():
        return value
    if value.isdigit():
        return int(value)
    raise UserError(f"{where}: unknown device {value!r}: use a GPU index, cuda:N, cpu or disk")


def _map_from_text(text: str) -> tuple[dict[str, Any], str]:
    if text.lstrip().startswith("{"):
        source, label = text, "custom"
    else:
        path = Path(text)
        if not path.is_file():
            raise UserError(
                f"--device-map {text!r}: use auto, balanced, sequential, a JSON object "
                "such as '{\"\": 0}' or an existing JSON file"
            )
        try:
            source = path.read_text()
        except OSError as e:
            raise UserError(f"--device-map: cannot read {path}: {e.strerror}") from None
        label = path.name
    try:
        data = json.loads(source)
    except json.JSONDecodeError as e:
        raise UserError(
            f"--device-map: not valid JSON ({e.msg} at line {e.lineno} column {e.colno}): "
            'give an object such as {"model.embed_tokens": 0, "": "cpu"}'
        ) from None
    if not isinstance(data, dict) or not data:
        raise UserError('--device-map: the JSON must be a non-empty object {"module": device}')
    return data, label


def parse_max_memory(text: str | None) -> dict[int | str, int] | None:
    """``0=70GiB,1=70GiB,cpu=100GB`` → ``{0: bytes, 1: bytes, "cpu": bytes}``."""
    if not text:
        return None
    from profiler.sources.sizes import parse_size

    out: dict[int | str, int] = {}
    for item in (x.strip() for x in text.split(",") if x.strip()):
        dev, sep, size = item.partition("=")
        if not sep or not size.strip():
            raise UserError(
                f"--max-memory {item!r}: write DEVICE=SIZE, such as 0=70GiB or cpu=100GB"
            )
        key = _place(dev.strip(), f"--max-memory {item!r}")
        if key == "disk":
            raise UserError("--max-memory: disk has no memory budget: name GPUs or cpu")
        if isinstance(key, str) and key.startswith("cuda:"):
            key = int(key[5:])
        out[key] = parse_size(size.strip(), f"--max-memory {dev.strip()}")
    return out


def parse_placement(map_text: str, max_memory: str | None) -> PlacementPlan:
    """Check ``--device-map MAP`` and ``--max-memory`` (no torch, no files opened
    except the map file): a :class:`PlacementPlan` or one UserError."""
    budget = parse_max_memory(max_memory)
    if map_text in NAMED_MAPS:
        return PlacementPlan(map_text, map_text, budget)
    data, label = _map_from_text(map_text)
    checked: dict[str, int | str] = {}
    for module, dev in data.items():
        checked[module] = _place(dev, f"--device-map module {module!r}")
    return PlacementPlan(checked, label, budget)


def check_gpus(plan: PlacementPlan) -> None:
    """Refuse GPU indices this machine does not have (torch is imported here)."""
    named = plan.gpus()
    if not named:
        return
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    missing = sorted(i for i in named if i >= n)
    if missing and n == 0:
        raise UserError(
            f"--device-map/--max-memory name GPU {', '.join(map(str, missing))} but no GPU "
            "is visible: place modules on cpu or disk, or run on a GPU machine"
        )
    if missing:
        raise UserError(
            f"--device-map/--max-memory name GPU {', '.join(map(str, missing))} but "
            f"{n} GPU(s) are visible: use indices below {n}, or cpu"
        )


def profile_placement(
    req: ProfileRequest, plan: PlacementPlan, log: Callable[[str], None]
) -> list[RunRecord]:
    """Load once with the plan (this process), account per device, decode."""
    from profiler.measure.recorder import Recorder
    from profiler.run.source import model_files, resolve_source

    if len(req.page_states) != 1:
        raise UserError("--device-map MAP measures one page-cache state: run once per state")
    check_gpus(plan)  # before a synthetic build or any load
    src = resolve_source(req, log)
    if src.folder is None:
        raise UserError(f"{req.spec}: --device-map MAP needs a local model: download it first")
    rec = Recorder(progress=False)
    with rec.stage("import"):
        import torch
        import transformers  # noqa: F401
    cache = _page_cache(req.page_states[0], model_files(src.folder, None))
    on_gpu = torch.cuda.is_available() and bool(plan.gpus() or isinstance(plan.device_map, str))
    model, dtype = _load(req, plan, rec, src.folder, on_gpu)
    decode, notes = _decode(req, model)
    primary = _input_device(model)
    from profiler.measure.environment import fingerprint

    run = RunRecord(
        model=dataclasses.replace(src.model, path=str(src.folder)),
        device=primary,
        dtype_requested=req.dtype,
        dtype_resolved=dtype,
        cache=cache,
        environment=fingerprint(src.folder, primary),
        stages=tuple(rec.records),
        decode=tuple(decode),
        notes=(f"device_map={plan.label} (this process, fresh)", *notes),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        run_id=uuid.uuid4().hex[:12],
        variant=f"device_map={plan.label}",
    )
    return [run]


def _page_cache(state: str, files: list[Path]) -> CacheState:
    from profiler.caches.page import evict, residency, verify, warm

    if state == "cold":
        measured = evict(files)
    elif state == "warm":
        measured = warm(files)
    else:
        measured = residency(files)
    ok = verify(state, measured)[0] if state in ("cold", "warm") else None  # type: ignore[arg-type]
    return CacheState(page=state, page_resident_fraction_before=measured.fraction, page_verified=ok)


def _load(
    req: ProfileRequest, plan: PlacementPlan, rec: Any, folder: Path, on_gpu: bool
) -> tuple[Any, str]:
    import torch
    from transformers import AutoConfig, AutoTokenizer

    from profiler.load.common import model_class, resolve_dtype

    with rec.stage("tokenizer"):
        AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    with rec.stage("config"):
        config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
    dtype = resolve_dtype(req.dtype, config, None)
    kwargs: dict[str, Any] = {"dtype": getattr(torch, dtype), "device_map": plan.device_map}
    if plan.max_memory:
        kwargs["max_memory"] = plan.max_memory
    if isinstance(plan.device_map, dict) and "disk" in plan.device_map.values():
        kwargs["offload_folder"] = _offload_folder()
    with rec.stage("from_pretrained", "bytes of weights placed on all devices") as st:
        trace = H2DTrace() if on_gpu else None
        with trace if trace is not None else _Nothing():
            model = model_class(config).from_pretrained(folder, trust_remote_code=False, **kwargs)
            if on_gpu:
                torch.cuda.synchronize()
        per_device = bytes_by_device(model)
        st.add_bytes(sum(per_device.values()))
        st.counters.update(
            device_counters(
                per_device, trace.events if trace else [], gpu_memory if on_gpu else None
            )
        )
        st.note(f"device_map={plan.label}")
    with rec.stage("eval"):
        model.eval()
    return model, dtype


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def _offload_folder() -> str:
    """A temporary folder for weights a map sends to ``disk``: never inside the user's
    model folder (nothing of theirs is written), removed when the process ends (the
    offloaded model reads from it until then)."""
    import atexit
    import shutil
    import tempfile

    from profiler.files import TEMP_PREFIX

    path = tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}offload-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def bytes_by_device(model: Any) -> dict[str, int]:
    """Bytes of parameters and buffers on each device; offloaded (meta) tensors count
    as ``disk`` (transformers keeps them on the meta device and reads them on use)."""
    seen: set[tuple[str, int]] = set()
    out: dict[str, int] = {}
    for t in list(model.parameters()) + list(model.buffers()):
        dev = "disk" if t.device.type == "meta" else str(t.device)
        key = (dev, t.data_ptr() if dev != "disk" else id(t))
        if key in seen:
            continue
        seen.add(key)
        out[dev] = out.get(dev, 0) + t.numel() * t.element_size()
    return out


def device_counters(
    per_device: Mapping[str, int],
    events: list[dict[str, Any]],
    memory: Callable[[str], dict[str, float | int | str]] | None = None,
) -> dict[str, float | int | str]:
    """The per-device counters of a split load: bytes placed, copies and, when
    ``memory`` is given (a GPU reader), each GPU's memory now."""
    out: dict[str, float | int | str] = {}
    for dev, n in per_device.items():
        out[counter_key("placed_bytes", dev)] = n
    for dev, (n, s) in h2d_by_device(events).items():
        out[counter_key("h2d_bytes", dev)] = n
        out[counter_key("h2d_time_s", dev)] = s
    for dev in per_device:
        if dev.startswith("cuda") and memory is not None:
            out.update(memory(dev))
    return out


def gpu_memory(dev: str) -> dict[str, float | int | str]:
    """torch allocator and NVML figures of GPU ``dev`` (``cuda:N``), now."""
    from profiler.measure.gpu import GpuProbe

    probe = GpuProbe(int(dev.split(":")[1]))
    alloc, reserved = probe.torch_now()
    out: dict[str, float | int | str] = {
        counter_key("torch_allocated_bytes", dev): alloc,
        counter_key("torch_reserved_bytes", dev): reserved,
    }
    used = probe.used_bytes()
    if used is not None:
        out[counter_key("nvml_used_bytes", dev)] = used
    return out


def _input_device(model: Any) -> str:
    dev = model.get_input_embeddings().weight.device
    return "cpu" if dev.type == "meta" else str(dev)


def _decode(req: ProfileRequest, model: Any) -> tuple[list[Any], list[str]]:
    if not req.decode.enabled:
        return [], []
    from profiler.decode.loop import profile_decode

    device = _input_device(model)
    return profile_decode(model, _tokenizer(model), req.decode, device=device, bandwidth=None), []


def _tokenizer(model: Any) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model.name_or_path, trust_remote_code=False)
