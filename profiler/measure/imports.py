"""Lazy imports, timed where they happen.

transformers imports most of itself on first use: the first ``AutoTokenizer`` call of
a process imports hundreds of modules, the first model build hundreds more. A stage
timer that cannot see them bills that import time as work. :class:`ImportTracker`
sits first on ``sys.meta_path`` and records one :class:`~profiler.records.trace.Span`
per module actually loaded (search, creation and execution), on the thread that
loaded it, so any interval of the load can be split into "importing" and "the rest".

Only modules that are loaded count: a module already in ``sys.modules`` costs nothing
and is not seen; a probe such as ``importlib.util.find_spec`` that finds a module but
does not load it records nothing. Built-in and frozen modules are not timed (they are
found by classes, not loader instances, and cost microseconds).

The cost is a Python-level search and two wrapped calls per loaded module: a few
microseconds each, measured by suites/test_trace_overhead.py.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

from profiler.records.trace import Span

IMPORT = "import"
GC = "gc"


class _Open:
    __slots__ = ("name", "start_ns", "children_ns")

    def __init__(self, name: str, start_ns: int) -> None:
        self.name = name
        self.start_ns = start_ns
        self.children_ns = 0


class ImportTracker:
    """Records a span for every module loaded while installed.

    ``spans`` holds finished imports in the order they finished; ``args["self_ns"]``
    is the module's own time (its nested imports subtracted) and ``args["depth"]``
    the nesting depth on its thread (0 = an import not inside another import).
    """

    def __init__(self, clock: Callable[[], int] = time.monotonic_ns) -> None:
        self.clock = clock
        self.spans: list[Span] = []
        self._local = threading.local()
        self._lock = threading.Lock()
        self._finder: _TimingFinder | None = None
        # Called with a module's name once it has loaded (the load tracer installs
        # its hooks into transformers modules only when the load itself imports them).
        self.listeners: list[Callable[[str], None]] = []

    # -- installation -------------------------------------------------------------
    def install(self) -> None:
        if self._finder is None:
            self._finder = _TimingFinder(self)
            sys.meta_path.insert(0, self._finder)
            gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        """A garbage collection as a "gc" span: a fresh process's imports grow the heap
        by hundreds of thousands of objects, and the full collections that follow can
        land outside any import (measured: 0.28 s of SmolLM2's first tokenizer call)."""
        if phase == "start":
            self._local.gc_start = self.clock()
            return
        start = getattr(self._local, "gc_start", None)
        if start is None:
            return
        self._local.gc_start = None
        thread = threading.current_thread()
        span = Span(
            name=f"gc generation {info.get('generation', -1)}",
            category=GC,
            start_ns=start,
            end_ns=self.clock(),
            thread_id=thread.ident or 0,
            thread_name=thread.name,
            args={"collected": int(info.get("collected", 0))},
        )
        with self._lock:
            self.spans.append(span)

    def uninstall(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        if self._finder is not None:
            try:
                sys.meta_path.remove(self._finder)
            except ValueError:
                pass
            self._finder = None

    @property
    def installed(self) -> bool:
        return self._finder is not None

    # -- bookkeeping (called by the finder's loader wrappers) ---------------------
    def _stack(self) -> list[_Open]:
        stack = getattr(self._local, "stack", None)
        if stack is None:
            stack = []
            self._local.stack = stack
        return stack

    def _open(self, name: str, start_ns: int) -> None:
        self._stack().append(_Open(name, start_ns))

    def _close(self, name: str) -> None:
        stack = self._stack()
        # Find the entry (normally the top); a loader that failed half-way may leave
        # inner entries open, which are closed with it.
        while stack:
            entry = stack.pop()
            if entry.name == name:
                break
        else:
            return
        end = self.clock()
        duration = end - entry.start_ns
        if stack:
            stack[-1].children_ns += duration
        thread = threading.current_thread()
        span = Span(
            name=name,
            category=IMPORT,
            start_ns=entry.start_ns,
            end_ns=end,
            thread_id=thread.ident or 0,
            thread_name=thread.name,
            args={"self_ns": duration - entry.children_ns, "depth": len(stack)},
        )
        with self._lock:
            self.spans.append(span)
        if name in sys.modules:
            for listener in list(self.listeners):
                try:
                    listener(name)
                except Exception:  # noqa: BLE001 - a listener must never break an import
                    pass


class _TimingFinder:
    """A meta-path finder that finds nothing itself: it asks the finders behind it,
    then wraps the loader of what they found so that loading is timed."""

    def __init__(self, tracker: ImportTracker) -> None:
        self.tracker = tracker
        self._busy = threading.local()

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if getattr(self._busy, "on", False):
            return None
        start = self.tracker.clock()
        self._busy.on = True
        try:
            spec = self._search(fullname, path, target)
        finally:
            self._busy.on = False
        loader = getattr(spec, "loader", None) if spec is not None else None
        if spec is None or loader is None or isinstance(loader, type):
            return spec
        _wrap_loader(loader, self.tracker, fullname, start)
        return spec

    def _search(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None
    ) -> ModuleSpec | None:
        for finder in list(sys.meta_path):
            if finder is self:
                continue
            find = getattr(finder, "find_spec", None)
            if find is None:
                continue
            spec = find(fullname, path, target)
            if spec is not None:
                return spec  # type: ignore[no-any-return]
        return None

    def invalidate_caches(self) -> None:
        return None


def _wrap_loader(loader: Any, tracker: ImportTracker, name: str, found_at: int) -> None:
    """Time ``loader``'s create_module → exec_module for ``name``, starting from the
    moment the search began. Loader instances are made per module by the path
    finders, so the wrappers are instance attributes that touch no other module."""
    create = getattr(loader, "create_module", None)
    execute = getattr(loader, "exec_module", None)
    if execute is None:
        return
    opened = [False]

    def ensure_open() -> None:
        if not opened[0]:
            opened[0] = True
            tracker._open(name, found_at)

    def timed_create(spec: ModuleSpec) -> ModuleType | None:
        ensure_open()
        try:
            return create(spec) if create is not None else None  # type: ignore[no-any-return]
        except BaseException:
            tracker._close(name)
            raise

    def timed_exec(module: ModuleType) -> None:
        ensure_open()
        try:
            execute(module)
        finally:
            tracker._close(name)

    try:
        if create is not None:
            loader.create_module = timed_create
        loader.exec_module = timed_exec
    except (AttributeError, TypeError):
        return  # a loader that refuses attributes is simply not timed


@contextmanager
def tracking_imports(tracker: ImportTracker | None = None) -> Iterator[ImportTracker]:
    """Install ``tracker`` (or a new one) for the duration of the block."""
    t = tracker or ImportTracker()
    t.install()
    try:
        yield t
    finally:
        t.uninstall()
