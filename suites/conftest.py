"""pytest set-up for the benchmarks in suites/ (pytest-benchmark).

These benchmarks take seconds to minutes: each round starts fresh processes and
loads a model. The normal test run (``pytest`` from the repository root) never
collects this folder (``testpaths = ["tests"]``); in addition, tests marked
``llmprof_bench`` are skipped unless ``--benchmark-only`` is given, so a stray
``pytest .`` or ``pytest tests suites`` does not spend minutes here. Run them with

    pytest suites/ --benchmark-only --benchmark-json=bench.json
"""

from __future__ import annotations

import pytest

MARKER = "llmprof_bench"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}: llmprof benchmark (seconds per round): runs only with --benchmark-only",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        only = bool(config.getoption("benchmark_only"))
    except ValueError:  # pytest-benchmark not installed: the benchmarks skip themselves
        only = False
    if only:
        return
    skip = pytest.mark.skip(reason="llmprof benchmark: run with `pytest suites/ --benchmark-only`")
    for item in items:
        if item.get_closest_marker(MARKER) is not None:
            item.add_marker(skip)
