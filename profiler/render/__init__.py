"""Renderers: one per output format, one tiny interface.

A renderer turns run records into text and says which file extension that text
belongs in. :func:`get_renderer` maps a name to one; a user can also name their own
class by import path (``"package.module:Class"``), constructed without arguments.

Nothing under ``profiler.render`` imports torch: reports are made on machines that
only hold the JSON files. matplotlib is imported inside the plotting functions.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from profiler.errors import UserError
from profiler.records.run import RunRecord
from profiler.render.console import ConsoleRenderer, render_console
from profiler.render.markdown import MarkdownRenderer, render_markdown, write_report

__all__ = [
    "ConsoleRenderer",
    "JsonRenderer",
    "MarkdownRenderer",
    "Renderer",
    "get_renderer",
    "render_console",
    "render_markdown",
    "write_report",
]


@runtime_checkable
class Renderer(Protocol):
    """Turns runs into the text of one file format."""

    extension: str

    def render(self, runs: Sequence[RunRecord]) -> str: ...


class JsonRenderer:
    """The runs as an llmprof results document (what ``--json`` files hold)."""

    extension = ".json"

    def render(self, runs: Sequence[RunRecord]) -> str:
        from profiler.records.io import runs_to_json

        return runs_to_json(runs) + "\n"


BUILTIN: dict[str, type] = {
    "console": ConsoleRenderer,
    "markdown": MarkdownRenderer,
    "json": JsonRenderer,
}


def get_renderer(name: str) -> Renderer:
    """A renderer by name ("console", "markdown", "json") or by "package.module:Class"."""
    cls = BUILTIN.get(name)
    if cls is None:
        if ":" not in name:
            raise UserError(
                f"unknown renderer {name!r}: use one of {', '.join(BUILTIN)} "
                "or an import path such as mypkg.render:MyRenderer"
            )
        module_name, _, attr = name.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise UserError(
                f"renderer {name!r}: cannot import {module_name} ({e}): check the module path"
            ) from e
        cls = getattr(module, attr, None)
        if cls is None:
            raise UserError(f"renderer {name!r}: {module_name} has no {attr}: check the name")
    try:
        renderer = cls()
    except TypeError as e:
        raise UserError(
            f"renderer {name!r} cannot be built without arguments ({e}): give it defaults"
        ) from e
    if not isinstance(renderer, Renderer):
        raise UserError(f"renderer {name!r} lacks `extension` or `render(runs)`: implement both")
    return renderer
