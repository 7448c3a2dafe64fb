"""`llmprof --help` must stay fast: no torch or transformers import on that path."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import sys
from profiler.cli import main
try:
    main({argv!r})
except SystemExit:
    pass
heavy = sorted(m for m in ("torch", "transformers", "safetensors.torch", "matplotlib")
               if m in sys.modules)
print("HEAVY=" + ",".join(heavy))
"""


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["load", "--help"],
        ["decode", "--help"],
        ["report", "--help"],
        ["compare", "--help"],
    ],
)
def test_help_does_not_import_torch(argv):
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True, text=True, check=True
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("HEAVY="))
    assert line == "HEAVY=", f"{argv} imported {line[6:]}"
