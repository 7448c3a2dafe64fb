"""Test-only fault switches, read from the environment and nowhere else.

They let the tests and the CI self-check break a run on purpose: a repetition that
dies, raises or hangs, and stages that run slower by a known amount. Unset, they
cost one environment lookup per child and per stage."""

from __future__ import annotations

import os
import time


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


def inject_fault(repetition: int) -> None:
    """Test-only switch: ``LLMPROF_INJECT_FAULT="kill@1"`` makes repetition 1 die by
    SIGKILL (as the OOM killer does), ``raise@0`` raise, ``hang@0`` sleep forever.
    tests/integration/test_runner.py uses it to prove one broken repetition does
    not take the others down."""
    spec = os.environ.get("LLMPROF_INJECT_FAULT", "")
    for item in filter(None, spec.split(",")):
        what, _, rep = item.partition("@")
        if rep and int(rep) != repetition:
            continue
        if what == "kill":
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
        elif what == "raise":
            raise RuntimeError("injected failure (LLMPROF_INJECT_FAULT)")
        elif what == "hang":
            time.sleep(3600)
