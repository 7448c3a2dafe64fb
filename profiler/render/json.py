"""The JSON renderer: runs as an llmprof results document, what ``--json`` files hold."""

from __future__ import annotations

from collections.abc import Sequence

from profiler.records.io import runs_to_json
from profiler.records.run import RunRecord


class JsonRenderer:
    """The runs as an llmprof results document, lossless: reading it back gives equal runs."""

    extension = ".json"

    def render(self, runs: Sequence[RunRecord]) -> str:
        return runs_to_json(runs) + "\n"
