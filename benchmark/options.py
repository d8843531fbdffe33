"""`name:key=value,...` specs and typed option overrides for methods and generated protocols."""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from typing import Any

from benchmark.errors import BenchmarkError

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def coerce(value: str, kind: Any, key: str, owner: str) -> Any:
    """Turn a command-line string into the field's type (bool, int, float, str, or X | None)."""
    args = typing.get_args(kind)
    if typing.get_origin(kind) in (typing.Union, types.UnionType) and type(None) in args:
        if value.lower() in ("none", "null", ""):
            return None
        kind = next(a for a in args if a is not type(None))
    try:
        if kind is bool:
            if value.lower() in _TRUE + _FALSE:
                return value.lower() in _TRUE
            raise ValueError
        if kind in (int, float, str):
            return kind(value)
    except ValueError:
        pass
    raise BenchmarkError(f"{owner}: option {key}={value!r} is not a valid {getattr(kind, '__name__', kind)}")


def apply_overrides(options: Any, overrides: dict[str, str], owner: str) -> Any:
    """A copy of an options dataclass with `key=value` strings applied; unknown keys get a 'did you mean'."""
    fields = {f.name for f in dataclasses.fields(options)}
    hints = typing.get_type_hints(type(options))
    values = {}
    for key, raw in overrides.items():
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise BenchmarkError(f"{owner}: unknown option {key!r}{hint} (options: {', '.join(sorted(fields)) or 'none'})")
        values[key] = coerce(raw, hints[key], key, owner)
    return dataclasses.replace(options, **values)


def spec_slug(spec: str) -> str:
    """A path-safe form of a `name:key=value` spec, e.g. `tiny:seed=1` -> `tiny_seed-1`."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", spec.replace(":", "_").replace("=", "-"))


def parse_spec(text: str) -> tuple[str, dict[str, str]]:
    """'name:key=value,key=value' -> (name, {key: value})."""
    name, _, rest = text.partition(":")
    overrides: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise BenchmarkError(f"{text!r}: expected name:key=value[,key=value], got {item!r}")
        overrides[key.strip()] = value.strip()
    return name.strip(), overrides
