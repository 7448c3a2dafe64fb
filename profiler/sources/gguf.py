"""GGUF files: the steps of loading one, each separate so each can be timed.

Loading a ``.gguf`` with transformers reads the file, dequantises every tensor to
float, renames it to transformers' names and loads it into a model built from a
config derived from the file's metadata. Here those are separate calls:

* :func:`profiler.sources.gguf_meta.gguf_architecture` reads one metadata key
  (milliseconds);
* :func:`read_gguf` parses the file with the ``gguf`` package and reads every
  tensor's bytes into memory (the I/O);
* :func:`config_from_gguf` builds the transformers config from the metadata;
* :func:`dequantize` turns the bytes into float tensors under transformers' names,
  with transformers' own helpers from ``modeling_gguf_pytorch_utils`` (present in
  transformers 5.17 to 5.23), falling back to ``from_pretrained(..., gguf_file=...)``
  when those helpers are missing or do not cover the architecture;
* :func:`convert_to_folder` writes a standard safetensors model folder.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from profiler.sources.gguf_meta import bad_file, check_supported, gguf_architecture, gguf_file_type

if TYPE_CHECKING:
    import numpy as np
    import torch
    from transformers import PretrainedConfig

# ---------------------------------------------------------------------------------------
# Reading and dequantising
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class GGUFTensor:
    """One tensor as stored in the file, its bytes read into memory."""

    name: str  # GGUF name, e.g. "blk.0.attn_q.weight"
    ggml_type: str  # e.g. "Q4_1", "F32"
    type_id: int
    shape: tuple[int, ...]  # logical shape, PyTorch order (GGUF lists dims fastest first)
    data: np.ndarray = field(repr=False)

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)


@dataclass(frozen=True, eq=False)
class GGUFContents:
    """What :func:`read_gguf` read: the tensors in memory and how long it took."""

    path: Path
    architecture: str
    file_type: str | None
    tensors: tuple[GGUFTensor, ...]
    parse_s: float  # parsing the metadata and tensor table (gguf.GGUFReader)
    read_s: float  # copying the tensor bytes from the file into memory

    @property
    def nbytes(self) -> int:
        """Bytes of tensor data read from the file."""
        return sum(t.nbytes for t in self.tensors)


def read_gguf(path: str | Path) -> GGUFContents:
    """Parse a GGUF file and read all of its tensor data into memory.

    The ``gguf`` package memory-maps the file; copying each tensor out of the map is
    what makes the kernel read it, so ``read_s`` is the file's read time (or the
    page-cache copy time when the file is cached).
    """
    import gguf
    import numpy as np

    path = Path(path)
    arch = gguf_architecture(path)
    check_supported(arch, path)
    file_type = gguf_file_type(path)
    start = time.perf_counter()
    try:
        reader = gguf.GGUFReader(str(path))
    except (ValueError, OSError) as e:
        raise bad_file(path, str(e)) from e
    parsed = time.perf_counter()
    tensors = []
    for t in reader.tensors:
        data = np.array(t.data, copy=True)
        shape = tuple(int(d) for d in reversed(t.shape.tolist()))
        tensors.append(GGUFTensor(t.name, t.tensor_type.name, int(t.tensor_type), shape, data))
    done = time.perf_counter()
    return GGUFContents(path, arch, file_type, tuple(tensors), parsed - start, done - parsed)


def config_from_gguf(path: str | Path) -> PretrainedConfig:
    """The transformers config that ``from_pretrained(..., gguf_file=...)`` would use."""
    from transformers import AutoConfig

    path = Path(path)
    check_supported(gguf_architecture(path), path)
    return AutoConfig.from_pretrained(
        str(path.parent), gguf_file=path.name, trust_remote_code=False
    )


@contextlib.contextmanager
def _cached_tensor_name_maps() -> Iterator[None]:
    """Memoise ``gguf.get_tensor_name_map`` while transformers maps tensor names.

    transformers' ``get_gguf_hf_weights_map`` recurses into every submodule and
    rebuilds the same name table each time (about 400 times for a 30-layer model,
    ~30 ms each). The table is a pure function of (architecture, layer count), so
    caching it changes nothing but the time.
    """
    import gguf

    original = getattr(gguf, "get_tensor_name_map", None)
    if original is None:
        yield
        return
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=None)(original)
    try:
        yield
    finally:
        gguf.get_tensor_name_map = original


@contextlib.contextmanager
def _parse_each_file_once() -> Iterator[None]:
    """Share one ``gguf.GGUFReader`` per file across the loads of one conversion.

    Loading the tokenizer and the model through transformers parses the file four
    times (config and vocabulary for each), and parsing a 49k-token vocabulary takes
    seconds. The reader is read-only once built, so handing the same one out again
    changes nothing but the time. Also memoises the tensor name tables.
    """
    import gguf

    original = getattr(gguf, "GGUFReader", None)
    if original is None:
        with _cached_tensor_name_maps():
            yield
        return
    readers: dict[tuple[Any, ...], Any] = {}

    def shared_reader(path: Any, *args: Any, **kwargs: Any) -> Any:
        key = (os.path.realpath(os.fspath(path)), args, tuple(sorted(kwargs.items())))
        if key not in readers:
            readers[key] = original(path, *args, **kwargs)
        return readers[key]

    # setattr: a class is replaced by a function that returns its instances, which
    # mypy (rightly, in general) refuses as an assignment.
    setattr(gguf, "GGUFReader", shared_reader)  # noqa: B010
    try:
        with _cached_tensor_name_maps():
            yield
    finally:
        setattr(gguf, "GGUFReader", original)  # noqa: B010


def _expected_names(model: torch.nn.Module) -> set[str]:
    seen: set[int] = set()
    names = set()
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) not in seen:
            seen.add(id(tensor))
            names.add(name)
    return names


def dequantize(
    contents: GGUFContents,
    *,
    config: PretrainedConfig | None = None,
    dtype: torch.dtype | None = None,
) -> dict[str, torch.Tensor]:
    """Float tensors under transformers' parameter names, from tensors read by :func:`read_gguf`.

    ``dtype`` casts each tensor as it is produced (GGUF dequantises to float32);
    ``config`` defaults to :func:`config_from_gguf`. Tied weights appear once.
    """
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM

    config = config if config is not None else config_from_gguf(contents.path)
    try:
        from gguf import GGMLQuantizationType
        from gguf import dequantize as gguf_dequantize
        from transformers.modeling_gguf_pytorch_utils import (
            TENSOR_PROCESSORS,
            TensorProcessor,
            get_gguf_hf_weights_map,
        )
    except ImportError:
        return _dequantize_with_from_pretrained(contents, dtype, "helpers not found")

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    cfg = config.to_dict()
    processor = TENSOR_PROCESSORS.get(contents.architecture, TensorProcessor)(config=cfg)
    try:
        with _cached_tensor_name_maps():
            mapping = get_gguf_hf_weights_map(model, processor)
    except (NotImplementedError, KeyError, ValueError, TypeError) as e:
        return _dequantize_with_from_pretrained(contents, dtype, f"no name map: {e}")
    parsed: dict[str, Any] = {"config": cfg, "tensors": {}}
    out: dict[str, torch.Tensor] = {}
    for t in contents.tensors:
        weights = gguf_dequantize(t.data, GGMLQuantizationType(t.type_id))
        result = processor.process(
            weights=weights, name=t.name, tensor_key_mapping=mapping, parsed_parameters=parsed
        )
        if result.name not in mapping:
            continue  # e.g. rope frequency tables transformers recomputes
        tensor = torch.from_numpy(np.ascontiguousarray(result.weights))
        out[mapping[result.name]] = tensor.to(dtype) if dtype is not None else tensor
    for name, tensor in parsed["tensors"].items():  # tensors a processor assembled itself
        out[name] = tensor.to(dtype) if dtype is not None else tensor
    missing = _expected_names(model) - out.keys()
    if missing:
        return _dequantize_with_from_pretrained(
            contents, dtype, f"{len(missing)} tensors unmapped, e.g. {sorted(missing)[0]}"
        )
    return out


def _dequantize_with_from_pretrained(
    contents: GGUFContents, dtype: torch.dtype | None, why: str
) -> dict[str, torch.Tensor]:
    """The public route: let ``from_pretrained`` dequantise, then take its weights.

    It reads the file again, so the caller's read and dequantise timings overlap;
    the warning says so.
    """
    import torch
    from transformers import AutoModelForCausalLM

    warnings.warn(
        f"llmprof: transformers' GGUF helpers cannot dequantise {contents.path.name} ({why}); "
        "using from_pretrained(gguf_file=...), which reads the file again",
        RuntimeWarning,
        stacklevel=3,
    )
    with _parse_each_file_once():
        model = AutoModelForCausalLM.from_pretrained(
            str(contents.path.parent),
            gguf_file=contents.path.name,
            trust_remote_code=False,
            dtype=dtype or torch.float32,
            **_dequantize_kwargs(),
        )
    seen: set[int] = set()
    out = {}
    for name, tensor in model.state_dict().items():
        if id(tensor) not in seen:
            seen.add(id(tensor))
            out[name] = tensor
    return out


def _dequantize_kwargs() -> dict[str, Any]:
    """Ask for a plain dense model where transformers can keep GGUF blocks packed."""
    try:
        from transformers import GgufConfig
    except ImportError:  # older transformers always dequantise
        return {}
    return {"quantization_config": GgufConfig(dequantize=True)}


# ---------------------------------------------------------------------------------------
# Conversion into a standard model folder
# ---------------------------------------------------------------------------------------


def convert_to_folder(path: str | Path, dest: Path, *, dtype: str = "bfloat16") -> dict[str, Any]:
    """Write a standard model folder (safetensors) from a GGUF file, with transformers.

    Loads with ``AutoTokenizer`` / ``AutoModelForCausalLM.from_pretrained(...,
    gguf_file=...)`` dequantised, moves the weights into a plain model of the same
    config (a GGUF-loaded model refuses ``save_pretrained``), and saves both, so the
    folder holds config.json, generation_config.json, model.safetensors and the
    tokenizer with its chat template. Returns facts for ``llmprof_source.json``.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    check_supported(gguf_architecture(path), path)
    torch_dtype = getattr(torch, dtype)
    folder, name = str(path.parent), path.name
    with _parse_each_file_once():
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, trust_remote_code=False)
        loaded = AutoModelForCausalLM.from_pretrained(
            folder,
            gguf_file=name,
            dtype=torch_dtype,
            trust_remote_code=False,
            **_dequantize_kwargs(),
        )
    cfg = loaded.config.to_dict()
    for key in (
        "quantization_config",
        "_name_or_path",
        "_model_name_or_path",
        "dtype",
        "torch_dtype",
        "transformers_version",
        "architectures",
    ):
        cfg.pop(key, None)  # GGUF loading details, and the GGUF's free-text model name
    config = AutoConfig.for_model(cfg.pop("model_type"), dtype=dtype, **cfg)
    config.architectures = [type(loaded).__name__]
    # The plain model only has to be saved: built on meta, it takes the loaded
    # tensors as they are (assign=True) instead of allocating and initialising its own.
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
    plain.load_state_dict(loaded.state_dict(), strict=True, assign=True)
    plain.tie_weights()
    plain.generation_config = loaded.generation_config
    del loaded
    plain.save_pretrained(str(dest))
    max_len = getattr(config, "max_position_embeddings", None)
    if max_len:
        tokenizer.model_max_length = max_len  # GGUF tokenizers come back with "no limit"
    tokenizer.save_pretrained(str(dest))
    _drop_load_kwargs(dest / "tokenizer_config.json")
    if not getattr(tokenizer, "chat_template", None):
        raise RuntimeError(f"{path.name}: the converted tokenizer lost its chat template")
    return {
        "num_parameters": sum(p.numel() for p in plain.parameters()),
        "architecture": type(plain).__name__,
    }


def _drop_load_kwargs(path: Path) -> None:
    """Remove loading options transformers echoes into a saved tokenizer_config.json."""
    import json

    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    if isinstance(doc, dict) and {"is_local", "local_files_only", "gguf_file"} & doc.keys():
        for key in ("is_local", "local_files_only", "gguf_file"):
            doc.pop(key, None)
        path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
