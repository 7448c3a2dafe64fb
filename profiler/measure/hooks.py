"""The hook points of :class:`~profiler.measure.load_trace.LoadTracer` in transformers.

Each ``_hook_*`` function patches one attribute and returns how to put it back, or
raises ``ImportError``/``AttributeError`` when this transformers lacks it; the hook
is then listed as missing and the load runs untraced at that point. Every wrapper
calls the original with the same arguments and returns its result unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from profiler.measure.load_trace import Restore, signature_names

if TYPE_CHECKING:
    from profiler.measure.load_trace import LoadTracer


def _swap(owner: Any, attr: str, new: Any) -> Restore:
    """Set ``owner.attr = new``; return the undo. AttributeError if absent."""
    if attr not in vars(owner):
        raise AttributeError(f"{getattr(owner, '__name__', owner)}.{attr}")
    old = vars(owner)[attr]
    setattr(owner, attr, new)
    return lambda: setattr(owner, attr, old)


def _nbytes(t: Any) -> int:
    try:
        return int(t.numel() * t.element_size())
    except Exception:  # noqa: BLE001 - a non-tensor result has no byte count
        return 0


def _dtype_name(dtype: Any) -> str:
    return str(dtype).replace("torch.", "")


def _hook_materialize(tr: LoadTracer) -> Restore:
    from transformers import core_model_loading as cml

    original = cml._materialize_copy
    if signature_names(original)[:3] != ("tensor", "device", "dtype"):
        tr.notes.append(
            "core_model_loading._materialize_copy has another signature here: each tensor's "
            "read and conversion are timed together as one 'materialize' span"
        )

        @functools.wraps(original)
        def whole(*args: Any, **kwargs: Any) -> Any:
            start = tr.clock()
            out = original(*args, **kwargs)
            tr.record("materialize", _name_of(tr, args), start, tr.clock(), bytes=_nbytes(out))
            return out

        return _swap(cml, "_materialize_copy", whole)

    def split(tensor: Any, device: Any = None, dtype: Any = None) -> Any:
        # The same two statements as transformers' own _materialize_copy (5.17-5.24),
        # with a clock read between them.
        name = tr.tensor_names.get(id(tensor), "")
        start = tr.clock()
        out = tensor[...]
        mid = tr.clock()
        tr.record("read", name, start, mid, bytes=_nbytes(out), dtype=_dtype_name(out.dtype))
        if dtype is not None or device is not None:
            src_dtype, src_device = out.dtype, out.device
            out = out.to(device=device, dtype=dtype)
            end = tr.clock()
            moved = out.device != src_device
            cast = out.dtype != src_dtype
            if moved or cast:
                tr.record(
                    "copy" if moved else "cast",
                    name,
                    mid,
                    end,
                    bytes=_nbytes(out),
                    source_dtype=_dtype_name(src_dtype),
                    target_dtype=_dtype_name(out.dtype),
                    source_device=str(src_device),
                    target_device=str(out.device),
                )
        return out

    return _swap(cml, "_materialize_copy", split)


def _name_of(tr: LoadTracer, args: tuple[Any, ...]) -> str:
    return tr.tensor_names.get(id(args[0]), "") if args else ""


def _hook_set_param(tr: LoadTracer) -> Restore:
    from transformers import core_model_loading as cml

    original = cml.set_param_for_module

    @functools.wraps(original)
    def wrapper(model: Any, target_name: str, param_value: Any, *args: Any, **kw: Any) -> Any:
        start = tr.clock()
        try:
            return original(model, target_name, param_value, *args, **kw)
        finally:
            tr.record("attach", str(target_name), start, tr.clock(), bytes=_nbytes(param_value))

    return _swap(cml, "set_param_for_module", wrapper)


def _hook_convert_and_load(tr: LoadTracer) -> Restore:
    from transformers import modeling_utils as mu

    original = mu.convert_and_load_state_dict_in_model

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        state = kwargs.get("state_dict", args[1] if len(args) > 1 else None)
        if isinstance(state, dict):
            tr.tensor_names.update({id(v): str(k) for k, v in state.items()})
        with tr.span("frame", "load weights (convert_and_load_state_dict_in_model)"):
            return original(*args, **kwargs)

    return _swap(mu, "convert_and_load_state_dict_in_model", wrapper)


def _hook_safe_open(tr: LoadTracer) -> Restore:
    from transformers import modeling_utils as mu

    original = mu.safe_open

    def wrapper(filename: Any, *args: Any, **kwargs: Any) -> Any:
        with tr.span("open", str(filename).rsplit("/", 1)[-1]):
            return original(filename, *args, **kwargs)

    return _swap(mu, "safe_open", wrapper)


def _hook_allocator_warmup(tr: LoadTracer) -> Restore:
    from transformers import modeling_utils as mu

    original = mu.caching_allocator_warmup

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with tr.span("init", "caching_allocator_warmup"):
            return original(*args, **kwargs)

    return _swap(mu, "caching_allocator_warmup", wrapper)


def _hook_init_context(tr: LoadTracer) -> Restore:
    from transformers.modeling_utils import PreTrainedModel

    descriptor = vars(PreTrainedModel)["get_init_context"]
    original = descriptor.__func__

    class _InitSpan:
        def __enter__(self) -> None:
            self.start = tr.clock()

        def __exit__(self, *exc: object) -> None:
            tr.record("init", "model construction (meta device)", self.start, tr.clock())

    @functools.wraps(original)
    def wrapper(cls: Any, *args: Any, **kwargs: Any) -> Any:
        contexts = original(cls, *args, **kwargs)
        if isinstance(contexts, list):
            contexts = [*contexts, _InitSpan()]  # innermost: exactly the model's __init__
        return contexts

    return _swap(PreTrainedModel, "get_init_context", classmethod(wrapper))


def _wrap_method(tr: LoadTracer, owner: Any, attr: str, category: str, label: str) -> Restore:
    """Time a plain or static method of ``owner``."""
    descriptor = vars(owner)[attr]
    static = isinstance(descriptor, staticmethod)
    original = descriptor.__func__ if static else descriptor

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with tr.span(category, label):
            return original(*args, **kwargs)

    return _swap(owner, attr, staticmethod(wrapper) if static else wrapper)


def _hook_finalize(tr: LoadTracer) -> Restore:
    from transformers.modeling_utils import PreTrainedModel

    return _wrap_method(tr, PreTrainedModel, "_finalize_model_loading", "finalize", "finalize")


def _hook_tie(tr: LoadTracer) -> Restore:
    from transformers.modeling_utils import PreTrainedModel

    return _wrap_method(tr, PreTrainedModel, "tie_weights", "tie", "tie_weights")


def _hook_config(tr: LoadTracer) -> Restore:
    from transformers.configuration_utils import PreTrainedConfig

    descriptor = vars(PreTrainedConfig)["get_config_dict"]
    original = descriptor.__func__

    @functools.wraps(original)
    def wrapper(cls: Any, *args: Any, **kwargs: Any) -> Any:
        with tr.span("config", "read config.json"):
            return original(cls, *args, **kwargs)

    return _swap(PreTrainedConfig, "get_config_dict", classmethod(wrapper))


class _TimedTokenizerClass:
    """Stands in for ``tokenizers.Tokenizer`` inside transformers' tokenizer module so
    that parsing tokenizer.json is timed; every other use goes to the real class."""

    def __init__(self, real: Any, tr: LoadTracer) -> None:
        self._real = real
        self._tr = tr

    def from_file(self, path: str, *args: Any, **kwargs: Any) -> Any:
        with self._tr.span("tokenizer", f"parse {str(path).rsplit('/', 1)[-1]}"):
            return self._real.from_file(path, *args, **kwargs)

    def from_str(self, text: str, *args: Any, **kwargs: Any) -> Any:
        with self._tr.span("tokenizer", "parse tokenizer JSON"):
            return self._real.from_str(text, *args, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._real(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def _hook_tokenizer_files(tr: LoadTracer) -> Restore:
    from transformers.tokenization_utils_tokenizers import TokenizersBackend

    descriptor = vars(TokenizersBackend)["convert_to_native_format"]
    original = descriptor.__func__

    @functools.wraps(original)
    def wrapper(cls: Any, *args: Any, **kwargs: Any) -> Any:
        with tr.span("tokenizer", f"read tokenizer files ({cls.__name__})"):
            return original(cls, *args, **kwargs)

    return _swap(TokenizersBackend, "convert_to_native_format", classmethod(wrapper))


def _hook_tokenizer(tr: LoadTracer) -> Restore:
    from transformers import tokenization_utils_tokenizers as tut

    real = tut.TokenizerFast
    return _swap(tut, "TokenizerFast", _TimedTokenizerClass(real, tr))


def patch_tensor_to(tr: LoadTracer, names: dict[int, str]) -> Restore:
    """Time ``torch.Tensor.to``: each call is one "copy" (device changes) or "cast"."""
    import torch

    original = torch.Tensor.to

    @functools.wraps(original)
    def timed_to(self: Any, *args: Any, **kwargs: Any) -> Any:
        start = tr.clock()
        out = original(self, *args, **kwargs)
        if out is not self:
            moved = out.device != self.device
            tr.record(
                "copy" if moved else "cast",
                names.get(self.data_ptr(), ""),
                start,
                tr.clock(),
                bytes=_nbytes(out),
                source_dtype=_dtype_name(self.dtype),
                target_dtype=_dtype_name(out.dtype),
                source_device=str(self.device),
                target_device=str(out.device),
            )
        return out

    torch.Tensor.to = timed_to  # type: ignore[method-assign]

    def restore() -> None:
        torch.Tensor.to = original  # type: ignore[method-assign]

    return restore


# Hook points, in the order they are installed: (name recorded in the trace, installer).
HOOK_POINTS: tuple[tuple[str, Callable[[LoadTracer], Restore]], ...] = (
    ("core_model_loading._materialize_copy", _hook_materialize),
    ("core_model_loading.set_param_for_module", _hook_set_param),
    ("modeling_utils.convert_and_load_state_dict_in_model", _hook_convert_and_load),
    ("modeling_utils.safe_open", _hook_safe_open),
    ("modeling_utils.caching_allocator_warmup", _hook_allocator_warmup),
    ("PreTrainedModel.get_init_context", _hook_init_context),
    ("PreTrainedModel._finalize_model_loading", _hook_finalize),
    ("PreTrainedModel.tie_weights", _hook_tie),
    ("PreTrainedConfig.get_config_dict", _hook_config),
    ("TokenizersBackend.convert_to_native_format", _hook_tokenizer_files),
    ("tokenization_utils_tokenizers.TokenizerFast", _hook_tokenizer),
)


# The module each hook point lives in. With ``deferred``, a hook whose module is not
# imported yet waits for the load to import it.
HOOK_MODULES: dict[str, str] = {
    "core_model_loading._materialize_copy": "transformers.core_model_loading",
    "core_model_loading.set_param_for_module": "transformers.core_model_loading",
    "modeling_utils.convert_and_load_state_dict_in_model": "transformers.modeling_utils",
    "modeling_utils.safe_open": "transformers.modeling_utils",
    "modeling_utils.caching_allocator_warmup": "transformers.modeling_utils",
    "PreTrainedModel.get_init_context": "transformers.modeling_utils",
    "PreTrainedModel._finalize_model_loading": "transformers.modeling_utils",
    "PreTrainedModel.tie_weights": "transformers.modeling_utils",
    "PreTrainedConfig.get_config_dict": "transformers.configuration_utils",
    "TokenizersBackend.convert_to_native_format": "transformers.tokenization_utils_tokenizers",
    "tokenization_utils_tokenizers.TokenizerFast": "transformers.tokenization_utils_tokenizers",
}


def install_all(tr: LoadTracer, *, deferred: bool = False) -> None:
    """Install every hook point this transformers has; list the others as missing.

    ``deferred``: a hook point whose module is not imported yet is installed when it
    is (the tracer's import tracker says so), instead of importing it now."""
    import sys

    for name, install in HOOK_POINTS:
        module = HOOK_MODULES.get(name)
        if deferred and module is not None and module not in sys.modules:
            tr.defer(name, install, module)
            continue
        try:
            tr.add_restore(name, install(tr))
        except Exception:  # noqa: BLE001 - a hook that cannot go in must not stop the load
            tr.missing.append(name)
