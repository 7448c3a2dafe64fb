"""Reading and writing run records as JSON, atomically.

A results file holds either one run (``"kind": "llmprof.run"``) or several
(``"kind": "llmprof.runs"``). Writes go to a temporary file in the same folder,
are flushed to disk, then renamed over the target: a reader never sees half a file
and a crash never leaves a file that claims success.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from profiler.errors import UserError
from profiler.records.fields import SCHEMA_VERSION, UNITS
from profiler.records.run import RunRecord


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` so that the file is either complete or absent."""
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent)
    except OSError as e:
        raise UserError(f"cannot write {target}: {e.strerror}: choose a writable path") from e
    try:
        # mkstemp creates 0600 files; results are ordinary files, so honour the umask.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def runs_to_json(runs: Sequence[RunRecord]) -> str:
    """The JSON document of several runs (``"kind": "llmprof.runs"``)."""
    doc: dict[str, Any] = {
        "kind": "llmprof.runs",
        "schema_version": SCHEMA_VERSION,
        "units": UNITS,
        "runs": [r.to_dict() for r in runs],
    }
    return json.dumps(doc, indent=1, sort_keys=False)


def save_runs(path: str | os.PathLike[str], runs: Sequence[RunRecord]) -> None:
    """Write runs to ``path`` atomically."""
    write_atomic(path, runs_to_json(runs).encode())


def parse_runs(doc: Any, origin: str = "<data>") -> list[RunRecord]:
    """Turn a decoded JSON document into run records, or raise UserError naming origin."""
    try:
        if isinstance(doc, dict) and doc.get("kind") == "llmprof.runs":
            version = doc.get("schema_version", 0)
            if isinstance(version, int) and version > SCHEMA_VERSION:
                raise UserError(
                    f"record has schema version {version}, this llmprof reads up to "
                    f"{SCHEMA_VERSION}: upgrade llmprof"
                )
            return [RunRecord.from_dict(r) for r in doc.get("runs", [])]
        return [RunRecord.from_dict(doc)]
    except UserError as e:
        raise UserError(f"{origin}: {e}") from e
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{origin}: malformed llmprof record ({type(e).__name__}: {e})") from e


def load_runs(path: str | os.PathLike[str]) -> list[RunRecord]:
    """Load the runs of one results file."""
    p = Path(path)
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise UserError(f"{p}: cannot read ({reason})") from e
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{p}: not JSON ({e.msg} at line {e.lineno})") from e
    return parse_runs(doc, str(p))


def expand_paths(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files as given, and the ``*.json`` files inside any folder, sorted."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*.json") if q.is_file()))
        else:
            out.append(p)
    return out
