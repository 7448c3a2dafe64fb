"""A pickle checkpoint (``pytorch_model.bin``) looked at before torch unpickles it.

llmprof loads ``.bin`` files with ``torch.load(weights_only=True)``, which refuses
any pickle that imports more than tensors and containers. Its refusal is a long
message that ends by suggesting ``weights_only=False``, the one thing never to do
with an untrusted file. The scan here finds such imports first (without running
anything) and says so in one line.
"""

from __future__ import annotations

import io
import pickletools
import zipfile
from pathlib import Path

from profiler.errors import UserError

# What a plain state dict saved by torch.save imports: torch's tensor rebuilders and
# storages, and a few containers (never builtins such as eval or exec).
_ALLOWED_PREFIX = "torch."
_ALLOWED = frozenset(
    {
        "collections.OrderedDict",
        "builtins.set",
        "builtins.frozenset",
        "builtins.slice",
        "builtins.bytearray",
        "_codecs.encode",
    }
)
_MAX_PICKLE = 64 * 1024 * 1024  # the pickle part (tensors are stored beside it)


def _globals(data: bytes) -> list[str]:
    """``module.name`` of every global a pickle stream imports, across the several
    pickles a legacy torch file holds; stops at the first non-pickle byte."""
    found: list[str] = []
    stream = io.BytesIO(data)
    for _ in range(8):
        if stream.tell() >= len(data):
            break
        strings: list[str] = []
        try:
            for op, arg, _pos in pickletools.genops(stream):
                if isinstance(arg, str):
                    strings.append(arg)
                if op.name == "GLOBAL" and isinstance(arg, str):
                    found.append(arg.replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    found.append(f"{strings[-2]}.{strings[-1]}")
        except Exception:  # noqa: BLE001 - not (or no longer) pickle: the tensors' bytes
            break
    return found


def pickle_bytes(path: Path) -> bytes:
    """The pickle part of a torch checkpoint: ``data.pkl`` of a zip file, or the
    head of a legacy file."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            name = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
            if name is None:
                return b""
            with z.open(name) as f:
                return f.read(_MAX_PICKLE)
    with open(path, "rb") as f:
        return f.read(_MAX_PICKLE)


def check_pickle(path: Path) -> None:
    """Refuse a pickle checkpoint that imports anything but tensors and containers."""
    try:
        data = pickle_bytes(path)
    except (OSError, zipfile.BadZipFile) as e:
        raise UserError(f"{path}: unreadable pickle checkpoint ({e}): re-download it") from e
    for name in _globals(data):
        if not (name.startswith(_ALLOWED_PREFIX) or name in _ALLOWED):
            raise UserError(
                f"{path}: the pickle imports {name[:60]}, which torch.load(weights_only=True) "
                "refuses and llmprof never runs: use a safetensors checkpoint"
            )
