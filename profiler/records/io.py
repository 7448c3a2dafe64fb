"""Reading and writing run records as JSON, atomically.

A results file holds either one run (``"kind": "llmprof.run"``) or several
(``"kind": "llmprof.runs"``). Writes go to a temporary file in the same folder,
are flushed to disk, then renamed over the target: a reader never sees half a file
and a crash never leaves a file that claims success.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from profiler.errors import UserError
from profiler.records.fields import SCHEMA_VERSION, UNITS
from profiler.records.run import RunRecord


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` so that the file is either complete or absent
    (:func:`profiler.files.write_file`: links followed, devices never renamed over)."""
    from profiler.files import write_file

    write_file(path, data)


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
    """Turn a decoded JSON document into run records, or raise UserError naming origin.

    Every record is checked field by field (:mod:`profiler.records.validate`): a
    wrong type or a non-finite number is one line here, never a traceback later.
    """
    from profiler.records.validate import bad_field, check_version

    try:
        if isinstance(doc, dict) and doc.get("kind") == "llmprof.runs":
            check_version(doc.get("schema_version", 0))
            items = doc.get("runs", [])
            if not isinstance(items, list):
                raise UserError('"runs" is not a list: not an llmprof results file')
        else:
            items = [doc]
        runs = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise UserError(f"run {i} is not a JSON object: not an llmprof record")
            if "schema_version" in item:  # a missing one is from_dict's to refuse
                check_version(item["schema_version"], f"run {i}")
            run = RunRecord.from_dict(item)
            wrong = bad_field(run)
            if wrong:
                raise UserError(f"run {i}: malformed field {wrong}: not a valid llmprof record")
            runs.append(run)
        return runs
    except UserError as e:
        raise UserError(f"{origin}: {e}") from e
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise UserError(
            f"{origin}: malformed llmprof record ({type(e).__name__}: {str(e)[:120]})"
        ) from e


def load_runs(path: str | os.PathLike[str]) -> list[RunRecord]:
    """Load the runs of one results file."""
    from profiler.records.validate import parse_json

    p = Path(path)
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise UserError(f"{p}: cannot read ({reason})") from e
    try:
        doc = parse_json(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{p}: not JSON ({e.msg} at line {e.lineno})") from e
    except (ValueError, RecursionError) as e:
        raise UserError(f"{p}: not a valid llmprof results file ({e})") from e
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
