"""Hand checks for the values of a JSON file, one wording for every reader: a value of the wrong type or range is
refused in one line naming the file and the field, before anything is built from it, so that a bad value never
surfaces later as a traceback or a price (``"vocab": true``, a NaN or negative latency)."""

from __future__ import annotations

import dataclasses
import math
import reprlib
import typing
from typing import Any, TypeVar

from latlab.errors import LatlabError

T = TypeVar("T")

_cut = reprlib.Repr()
_cut.maxstring = _cut.maxother = _cut.maxlong = 40
_cut.maxlevel = 2


def short(value: Any) -> str:
    """A value as it may appear in a one-line message, cut whatever its size or depth."""
    return _cut.repr(value)


def refuse(source: str, field: str, problem: str) -> LatlabError:
    return LatlabError(f"{source}: field {field!r} {problem}")


def whole(value: Any, source: str, field: str, minimum: int = 1) -> int:
    """An integer (not a bool: ``true`` is a typo) of at least ``minimum``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise refuse(source, field, f"must be a whole number >= {minimum}, got {short(value)}")
    return value


def finite(value: Any, source: str, field: str, minimum: float = -math.inf) -> float:
    """A finite number of at least ``minimum``: NaN, infinities and 1e999 are damage, not measurements."""
    try:
        number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    except OverflowError:  # an integer too large for a float
        number = math.inf
    if not math.isfinite(number) or number < minimum:
        bound = f" >= {minimum:g}" if minimum > -math.inf else ""
        raise refuse(source, field, f"must be a finite number{bound}, got {short(value)}")
    return number


def boolean(value: Any, source: str, field: str) -> bool:
    if not isinstance(value, bool):
        raise refuse(source, field, f"must be true or false, got {short(value)}")
    return value


def typed(cls: type[T], data: Any, source: str, field: str, strict: bool = True) -> T:
    """A dataclass from a JSON object, each value checked against its annotation (bool, int, float, str, and
    tuples, dicts and dataclasses of those). ``strict`` refuses fields the class does not have."""
    if not isinstance(data, dict):
        raise refuse(source, field, f"must be a JSON object, got {short(data)}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = [k for k in data if k not in known]
    if strict and unknown:
        raise refuse(source, f"{field}.{unknown[0]}", f"is not a field of {field}; remove it")
    values = {}
    for name, spec in known.items():
        if name in data:
            values[name] = _checked(data[name], hints[name], source, f"{field}.{name}")
        elif spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
            raise refuse(source, f"{field}.{name}", "missing")
    return cls(**values)


def _checked(value: Any, hint: Any, source: str, field: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool:
        return boolean(value, source, field)
    if hint is int:
        return whole(value, source, field, minimum=-(2**63))
    if hint is float:
        return finite(value, source, field)
    if hint is str:
        if not isinstance(value, str):
            raise refuse(source, field, f"must be text, got {short(value)}")
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise refuse(source, field, f"must be a list, got {short(value)}")
        return tuple(_checked(v, args[0], source, f"{field}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise refuse(source, field, f"must be a JSON object, got {short(value)}")
        return {k: _checked(v, args[1], source, f"{field}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        return typed(hint, value, source, field)
    raise TypeError(f"no check for annotation {hint!r} of {field}")  # a new field type: a bug, not a user mistake
