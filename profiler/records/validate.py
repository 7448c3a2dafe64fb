"""Reading records back defensively: a results file is input like any other.

``report`` and ``compare`` must answer a malformed file with one line and exit 2
(never 1, which ``compare`` users read as "regression", and never a traceback).
JSON is parsed with a nesting limit and without NaN or Infinity, then each record
built by ``from_dict`` is checked against its dataclass's type hints: a stage
time that is a string or not finite is refused here, before any statistic.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections import abc
from typing import Any, Literal, Union, get_args, get_origin

from profiler.errors import UserError
from profiler.records.fields import SCHEMA_VERSION

MAX_DEPTH = 64  # real records nest about 6 deep


def nesting_depth(text: str) -> int:
    """The deepest nesting of ``[`` / ``{`` in JSON text (strings skipped), without
    parsing it: the parser itself would overflow the stack on absurd nesting."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _no_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name}")


def parse_json(text: str) -> Any:
    """Decode a results file: ValueError for absurd nesting, NaN or Infinity."""
    import json

    depth = nesting_depth(text)
    if depth > MAX_DEPTH:
        raise ValueError(f"nested {depth} levels deep (records nest at most {MAX_DEPTH})")
    return json.loads(text, parse_constant=_no_constant)


def check_version(version: Any, where: str = "file") -> None:
    """A schema version must be a whole number this llmprof can read."""
    if isinstance(version, bool) or not isinstance(version, int):
        raise UserError(
            f"{where} schema_version {version!r} is not a whole number: not an llmprof record"
        )
    if version > SCHEMA_VERSION:
        raise UserError(
            f"record has schema version {version}, this llmprof reads up to "
            f"{SCHEMA_VERSION}: upgrade llmprof"
        )


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _matches(value: Any, hint: Any) -> bool:
    origin = get_origin(hint)
    if hint is Any:
        return True
    if origin in (Union, types.UnionType):
        return any(_matches(value, arm) for arm in get_args(hint))
    if origin is Literal:
        return value in get_args(hint)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if origin is tuple:
        args = get_args(hint)
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(v, args[0]) for v in value)
        return len(args) == len(value) and all(
            _matches(v, a) for v, a in zip(value, args, strict=True)
        )
    if origin in (dict, abc.Mapping) or hint is dict:
        args = get_args(hint)
        if not isinstance(value, dict):
            return False
        return not args or all(
            _matches(k, args[0]) and _matches(v, args[1]) for k, v in value.items()
        )
    if origin is list:
        return isinstance(value, list)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return isinstance(value, hint)
    return True  # a hint this check does not know: left to the record's own code


def bad_field(record: Any, where: str = "") -> str | None:
    """The first field of ``record`` (a dataclass tree) whose value does not match its
    type hint, as ``"stages[0].duration_s = '1.0'"``; None when all match."""
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        hint = _hints(type(record))[f.name]
        here = f"{where}{f.name}"
        if not _matches(value, hint):
            return f"{here} = {str(value)[:40]!r}"
        children = value if isinstance(value, tuple) else (value,)
        for i, child in enumerate(children):
            if dataclasses.is_dataclass(child) and not isinstance(child, type):
                tag = f"{here}[{i}]." if isinstance(value, tuple) else f"{here}."
                found = bad_field(child, tag)
                if found:
                    return found
    return None
