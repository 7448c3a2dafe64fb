"""Renderers: one per output format, one tiny interface.

A renderer turns run records into text and says which file extension that text
belongs in: :class:`~profiler.render.console.ConsoleRenderer` (``console.py``),
:class:`~profiler.render.markdown.MarkdownRenderer` (``markdown.py``) and
:class:`~profiler.render.json.JsonRenderer` (``json.py``). :func:`get_renderer` maps
a name to one; a user can also name their own class by import path
(``"package.module:Class"``), constructed without arguments.

Renderer modules are imported when first asked for, so a module that only needs
the number formatter (:mod:`profiler.render.format`, used by the caches too) does
not load every renderer. Nothing under ``profiler.render`` imports torch: reports
are made on machines that only hold the JSON files. matplotlib is imported inside
the plotting functions.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from profiler.errors import UserError
from profiler.records.run import RunRecord

if TYPE_CHECKING:  # the same names, imported lazily at run time by __getattr__
    from profiler.render.console import ConsoleRenderer, render_console
    from profiler.render.json import JsonRenderer
    from profiler.render.markdown import MarkdownRenderer, render_markdown
    from profiler.render.report_files import write_report

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


BUILTIN: dict[str, str] = {
    "console": "profiler.render.console:ConsoleRenderer",
    "markdown": "profiler.render.markdown:MarkdownRenderer",
    "json": "profiler.render.json:JsonRenderer",
}

# Public names re-exported from the renderer modules, imported on first use.
_LAZY: dict[str, str] = {
    "ConsoleRenderer": "profiler.render.console",
    "render_console": "profiler.render.console",
    "MarkdownRenderer": "profiler.render.markdown",
    "render_markdown": "profiler.render.markdown",
    "write_report": "profiler.render.report_files",
    "JsonRenderer": "profiler.render.json",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'profiler.render' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def _load_class(name: str, path: str) -> Any:
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise UserError(
            f"renderer {name!r}: cannot import {module_name} ({e}): check the module path"
        ) from e
    cls = getattr(module, attr, None)
    if cls is None:
        raise UserError(f"renderer {name!r}: {module_name} has no {attr}: check the name")
    return cls


def get_renderer(name: str) -> Renderer:
    """A renderer by name ("console", "markdown", "json") or by "package.module:Class"."""
    path = BUILTIN.get(name, name)
    if ":" not in path:
        raise UserError(
            f"unknown renderer {name!r}: use one of {', '.join(BUILTIN)} "
            "or an import path such as mypkg.render:MyRenderer"
        )
    cls = _load_class(name, path)
    try:
        renderer = cls()
    except TypeError as e:
        raise UserError(
            f"renderer {name!r} cannot be built without arguments ({e}): give it defaults"
        ) from e
    if not isinstance(renderer, Renderer):
        raise UserError(f"renderer {name!r} lacks `extension` or `render(runs)`: implement both")
    return renderer
