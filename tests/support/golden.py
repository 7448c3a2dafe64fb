"""Golden reports from real records: record once with the product, render every time.

The records under ``tests/data/runs/`` were written by ``llmprof load`` itself (real
children, real stages, real decode of ``synthetic:tiny`` on a CPU), so the goldens
under ``tests/data/golden/`` show the fields the product really writes. Times differ
from one recording to the next, so the records are committed and only rendering is
repeated: rendering a committed record is deterministic.

Regenerate (see tests/data/README.md):

- after a change of what a report shows: ``LLMPROF_UPDATE_GOLDEN=1 .venv/bin/python -m
  pytest tests/unit/test_golden.py``, then read the diff;
- after a change of what a record holds (new fields, new stages):
  ``.venv/bin/python -m tests.support.golden record`` (a few minutes on 2 cores),
  then regenerate the goldens as above.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from profiler.records.io import load_runs
from profiler.records.run import RunRecord

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
RUNS = DATA / "runs"
GOLDEN = DATA / "golden"

# name -> (what it shows, llmprof load arguments, fault switch). Repetition 2 of the
# load record is made to fail, so a failed repetition is in every cache state.
RECORDINGS: dict[str, tuple[str, list[str], str]] = {
    "load_cpu": (
        "staged and native views, cold and warm, 3 repetitions (the third fails), "
        "decode at batch 1 and 2, quick ceilings attached",
        [
            "synthetic:tiny",
            "--cache",
            "cold,warm",
            "--repeat",
            "3",
            "--batch",
            "1,2",
            "--new-tokens",
            "8",
            "--warm-calls",
            "2",
            "--ceilings",
            "quick",
        ],
        "raise@2",
    ),
    "variants_cpu": (
        "every way of loading on a CPU, cold and warm, float32 asked of bfloat16 weights",
        [
            "synthetic:tiny",
            "--variants",
            "--dtype",
            "float32",
            "--cache",
            "cold,warm",
            "--ceilings",
            "off",
        ],
        "",
    ),
}


def sanitize(text: str, replacements: dict[str, str]) -> str:
    """``text`` with this machine's absolute paths replaced by placeholders."""
    for path, placeholder in sorted(replacements.items(), key=lambda kv: -len(kv[0])):
        text = text.replace(path, placeholder)
    return text


def record(names: Sequence[str] = tuple(RECORDINGS)) -> list[Path]:
    """Run ``llmprof load`` for each recording and save its sanitized records."""
    written = []
    with tempfile.TemporaryDirectory(prefix="llmprof-golden-") as tmp:
        cache = Path(tmp, "cache")
        for name in names:
            _what, args, fault = RECORDINGS[name]
            out = Path(tmp, f"{name}.json")
            env = {**os.environ, "LLMPROF_CACHE": str(cache), "LLMPROF_INJECT_FAULT": fault}
            cmd = [sys.executable, "-m", "profiler.cli", "load", *args, "--json", str(out)]
            subprocess.run(cmd, env=env, cwd=REPO, check=False, stdout=subprocess.DEVNULL)
            text = sanitize(
                json.dumps(json.loads(out.read_text()), indent=1, ensure_ascii=False),
                {str(cache): "$LLMPROF_CACHE", str(REPO): "$REPO", tmp: "$TMP"},
            )
            RUNS.mkdir(parents=True, exist_ok=True)
            path = RUNS / f"{name}.json"
            path.write_text(text + "\n")
            written.append(path)
    return written


def recorded(name: str) -> list[RunRecord]:
    """The committed records of one recording."""
    return load_runs(RUNS / f"{name}.json")


if __name__ == "__main__":
    if sys.argv[1:2] != ["record"]:
        raise SystemExit("usage: python -m tests.support.golden record [NAME...]")
    for p in record(sys.argv[2:] or tuple(RECORDINGS)):
        print(f"wrote {p.relative_to(REPO)}")
