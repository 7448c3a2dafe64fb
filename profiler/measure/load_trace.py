"""A timeline of the user's own ``from_pretrained``: spans from hooks in transformers.

The native view runs ``from_pretrained`` exactly as a user does; this module makes it
observable without changing what it does. Each hook wraps one function of
transformers 5.x (found by reading its source; see :data:`HOOK_POINTS`) and records a
:class:`~profiler.records.trace.Span` around the original call, on whatever thread
transformers runs it:

- ``core_model_loading._materialize_copy``: the per-tensor work of the loader's
  thread pool, split into the read out of the checkpoint (``tensor[...]``: mmap page
  faults and the copy into a tensor) and the conversion (``.to(device, dtype)``: a
  cast on the CPU, a host-to-device copy, or both). It is re-stated here with the
  same two statements so the two halves can be timed apart; if its signature differs
  from the one read, the whole call is timed as one "materialize" span instead;
- ``core_model_loading.set_param_for_module``: attaching each tensor to the model;
- ``modeling_utils.safe_open``: opening each checkpoint shard;
- ``modeling_utils.convert_and_load_state_dict_in_model``: the whole weight load (a
  framing span; its state dict also names the tensors the workers materialize);
- ``PreTrainedModel.get_init_context``: model construction on the meta device;
- ``PreTrainedModel._finalize_model_loading`` and ``tie_weights``;
- ``modeling_utils.caching_allocator_warmup``;
- ``PreTrainedConfig.get_config_dict``: reading config.json;
- ``TokenizersBackend.convert_to_native_format``: reading and parsing the tokenizer
  files (tokenizer.json through json or the Rust parser), apart from the Python
  wrapper's own set-up; ``tokenization_utils_tokenizers.TokenizerFast.from_file`` /
  ``from_str``: the Rust parse inside it, where the tokenizer class takes that path
  (classes with their own ``__init__``, Qwen2's among them, rebuild the vocabulary
  in Python instead, which then counts as the wrapper's set-up);
- ``torch.Tensor.to`` while :meth:`LoadTracer.tensor_copies` is active (the user's
  ``model.to(device)`` after the load).

A hook point missing in the running transformers is listed in the trace's
``missing_hooks``; the load itself is never affected. Bookkeeping errors are
swallowed inside the hooks, never the user's call: an exception of the original
function propagates unchanged.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from profiler.measure.counters import CounterSampler
from profiler.measure.imports import ImportTracker
from profiler.records.trace import ArgValue, LoadTrace, Span

Restore = Callable[[], None]


class LoadTracer:
    """Records spans from the hooks while active (``with LoadTracer(...) as t``)."""

    def __init__(
        self,
        *,
        imports: ImportTracker | None = None,
        sampler: CounterSampler | None = None,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.clock = clock
        self.imports = imports
        self.sampler = sampler
        self.spans: list[Span] = []
        self.hooks: list[str] = []
        self.missing: list[str] = []
        self.notes: list[str] = []
        self.tensor_names: dict[int, str] = {}
        self._lock = threading.Lock()
        self._restore: list[Restore] = []
        # Hook points waiting for their module: (name, installer), see _on_import.
        self.pending: list[tuple[str, Callable[[LoadTracer], Restore]]] = []
        self._modules: dict[str, str] = {}
        self.start_ns = 0
        self.end_ns = 0

    # -- lifetime -------------------------------------------------------------------
    def __enter__(self) -> LoadTracer:
        from profiler.measure.hooks import install_all

        # With an import tracker, a hook whose transformers module is not imported
        # yet is installed when the load imports it: importing it here would move
        # the load's own lazy imports (seconds of them) out of the load.
        install_all(self, deferred=self.imports is not None)
        self.start_ns = self.clock()
        if self.sampler is not None:
            self.sampler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.sampler is not None:
            self.sampler.stop()
        self.end_ns = self.clock()
        if self.imports is not None and self._on_import in self.imports.listeners:
            self.imports.listeners.remove(self._on_import)
        for name, _install in self.pending:
            self.missing.append(name)
            self.notes.append(f"{name}: its module was never imported during the load")
        self.pending.clear()
        for restore in reversed(self._restore):
            try:
                restore()
            except Exception:  # noqa: BLE001 - restoring must not mask the load's outcome
                pass
        self._restore.clear()

    def defer(self, name: str, install: Callable[[LoadTracer], Restore], module: str) -> None:
        """Install ``install`` once ``module`` has been imported (by the load)."""
        if self.imports is None:
            raise RuntimeError("deferred hooks need an import tracker")
        with self._lock:
            self.pending.append((name, install))
            self._modules[name] = module
        if self._on_import not in self.imports.listeners:
            self.imports.listeners.append(self._on_import)

    def _on_import(self, module: str) -> None:
        with self._lock:
            ready = [(n, i) for n, i in self.pending if self._modules.get(n) == module]
            self.pending = [(n, i) for n, i in self.pending if (n, i) not in ready]
        for name, install in ready:
            try:
                self.add_restore(name, install(self))
            except Exception:  # noqa: BLE001 - a hook that cannot go in must not stop the load
                self.missing.append(name)

    def add_restore(self, name: str, restore: Restore) -> None:
        self._restore.append(restore)
        self.hooks.append(name)

    # -- recording ------------------------------------------------------------------
    def record(
        self, category: str, name: str, start_ns: int, end_ns: int, **args: ArgValue
    ) -> None:
        try:
            thread = threading.current_thread()
            span = Span(name, category, start_ns, end_ns, thread.ident or 0, thread.name, args)
            with self._lock:
                self.spans.append(span)
        except Exception:  # noqa: BLE001 - never let bookkeeping break the user's load
            pass

    @contextmanager
    def span(self, category: str, name: str, **args: ArgValue) -> Iterator[None]:
        start = self.clock()
        try:
            yield
        finally:
            self.record(category, name, start, self.clock(), **args)

    @contextmanager
    def tensor_copies(self, model: Any) -> Iterator[None]:
        """Time every ``Tensor.to`` call made inside the block (the user's
        ``model.to(device)``), naming tensors by the model's parameter names."""
        from profiler.measure.hooks import patch_tensor_to

        names: dict[int, str] = {}
        try:
            for n, p in model.named_parameters(remove_duplicate=False):
                names.setdefault(p.data_ptr(), n)
            for n, b in model.named_buffers(remove_duplicate=False):
                names.setdefault(b.data_ptr(), n)
        except Exception:  # noqa: BLE001 - names are a nicety
            pass
        restore = patch_tensor_to(self, names)
        try:
            yield
        finally:
            restore()

    def result(self) -> LoadTrace:
        """The trace: hook spans, import spans of the interval, counter tracks."""
        spans = list(self.spans)
        if self.imports is not None:
            spans += [
                s
                for s in self.imports.spans
                if s.end_ns > self.start_ns and s.start_ns < self.end_ns
            ]
        spans.sort(key=lambda s: (s.start_ns, -s.end_ns))
        counters = self.sampler.tracks() if self.sampler is not None else ()
        return LoadTrace(
            start_ns=self.start_ns,
            end_ns=self.end_ns,
            spans=tuple(spans),
            counters=tuple(counters),
            hooks=tuple(self.hooks),
            missing_hooks=tuple(self.missing),
            notes=tuple(self.notes),
        )


def signature_names(fn: Callable[..., Any]) -> tuple[str, ...]:
    """Parameter names of ``fn`` (empty when it has no inspectable signature)."""
    try:
        return tuple(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return ()
