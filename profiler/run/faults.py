"""TODO: docstring."""

from __future__ import annotations

import os


def injected_slowdowns(env: dict[str, str] | None = None) -> dict[str, float]:
    """Test-only switch: ``LLMPROF_INJECT_SLOWDOWN="weight_read=0.2,tokenizer=0.05"``
    makes the named stages sleep that many seconds. The CI self-check uses it to
    prove that ``llmprof compare`` flags exactly the slowed stages."""
    raw = (env if env is not None else os.environ).get("LLMPROF_INJECT_SLOWDOWN", "")
    out: dict[str, float] = {}
    for item in filter(None, (x.strip() for x in raw.split(","))):
        name, _, secs = item.partition("=")
        try:
            out[name.strip()] = float(secs)
        except ValueError:
            continue
    return out
