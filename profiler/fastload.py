"""llmprof's fast loader as a library call: ``from_pretrained(path, dtype=..., device=...)``.

For a service whose profile shows a slow load: the same model transformers builds
(every tensor, dtype, device, buffer and tie), with the checkpoint read in parallel
into a reused pinned pool and copied to the GPU while the model is built on the meta
device (:mod:`profiler.load.fast`). Measured speed-ups are in the README.

On a CPU device it is no lever: transformers maps the file and reads pages at first
use, this reads every byte up front (README, "The fast loader in your own code").

What it does not do (quantized checkpoints, ``.bin`` weights, offloading or
``device_map``) raises :class:`Unsupported` with one line pointing to transformers'
``from_pretrained``, which does.

    from profiler.fastload import from_pretrained
    model = from_pretrained("/models/qwen2-7b", dtype="bfloat16", device="cuda")
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from profiler.errors import UserError

POINTER = "use transformers' AutoModelForCausalLM.from_pretrained for this model"


class Unsupported(ValueError):
    """The checkpoint or the request is beyond the fast loader; the message says what."""


def _dtype_name(dtype: Any) -> str:
    if isinstance(dtype, str):
        return dtype
    name = str(dtype)
    return name.removeprefix("torch.")


def check_supported(folder: Path, device: str, extra: dict[str, Any]) -> None:
    """Unsupported (one line) for what the fast loader does not handle."""
    from profiler.load.checkpoint import find_checkpoint

    if extra:
        raise Unsupported(f"fastload: {', '.join(sorted(extra))} not supported: {POINTER}")
    if device in ("auto", "disk", "meta") or device.startswith("disk"):
        raise Unsupported(f"fastload: device {device!r} (offloading) not supported: {POINTER}")
    if not folder.is_dir():
        raise Unsupported(f"fastload: {folder} is not a local model folder: {POINTER}")
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise Unsupported(f"fastload: {folder}/config.json unreadable ({e}): {POINTER}") from e
    if config.get("quantization_config"):
        method = config["quantization_config"].get("quant_method", "?")
        raise Unsupported(f"fastload: quantized checkpoint ({method}) not supported: {POINTER}")
    try:
        ckpt = find_checkpoint(folder)
    except UserError as e:
        raise Unsupported(f"fastload: {e}: {POINTER}") from e
    if ckpt.fmt != "safetensors":
        raise Unsupported(
            f"fastload: {ckpt.fmt} weights not supported (safetensors only): {POINTER}"
        )


def from_pretrained(
    path: str | Path, *, dtype: Any = "auto", device: str = "cpu", **kwargs: Any
) -> Any:
    """The model in the local folder ``path``, on ``device``, in ``dtype`` ("auto":
    the config's dtype, else the stored one, as transformers 5 does; a
    ``torch.dtype`` or its name), in eval mode. Any other keyword
    (``device_map``, ``quantization_config``, ...) raises :class:`Unsupported`."""
    from profiler.load.common import LoadOptions
    from profiler.load.fast import load_fast
    from profiler.measure.recorder import NullRecorder
    from profiler.run.devices import parse_device

    folder = Path(path).expanduser()
    if "torch_dtype" in kwargs:  # transformers 4's name for it, still common in services
        dtype = kwargs.pop("torch_dtype")
    check_supported(folder, str(device), kwargs)
    options = LoadOptions(dtype=_dtype_name(dtype), device=parse_device(str(device)))
    return load_fast(folder, options, NullRecorder(), tokenizer=False).model
