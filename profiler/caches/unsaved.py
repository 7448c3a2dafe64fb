"""Where records go when the save the user asked for fails at the end of a run.

A profile can take minutes of machine time: an output path that turned out to be
unwritable (disk full, folder removed, permissions changed) must not throw the
measurements away. They are written to a fallback file in the temporary folder
(or the current folder), whose path the command prints.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from profiler.errors import UserError
from profiler.records.run import RunRecord


def save_fallback(runs: Sequence[RunRecord]) -> Path | None:
    """Write ``runs`` to a new file that is not the failed path; its path, or None
    when no fallback place is writable either."""
    from profiler.records.io import runs_to_json

    # Not named like a temporary file (llmprof-*): it is kept, not cleaned up.
    name = f"unsaved-llmprof-runs-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.json"
    data = runs_to_json(runs).encode()
    for folder in (Path(tempfile.gettempdir()), Path.cwd()):
        path = folder / name
        try:
            with open(path, "xb") as f:
                f.write(data)
            return path
        except OSError:
            continue
    return None


def save_or_fallback(path: str, runs: Sequence[RunRecord]) -> tuple[bool, str]:
    """Save ``runs`` to ``path``; on failure to the fallback file. Returns (saved
    where asked, the line to print)."""
    from profiler.records.io import save_runs

    try:
        save_runs(path, runs)
        return True, f"wrote {len(runs)} run record(s) to {path}"
    except (UserError, OSError) as e:
        reason = str(e) if isinstance(e, UserError) else (e.strerror or str(e))
        fallback = save_fallback(runs)
        if fallback is None:
            return False, f"{reason}; no fallback file could be written either: records lost"
        return False, f"{reason}; the {len(runs)} run record(s) were saved to {fallback} instead"
