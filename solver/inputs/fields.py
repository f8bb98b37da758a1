"""Strict readers for mappings loaded from YAML/JSON.

Every failure raises :class:`InputError` naming the file, the dotted field path and
the reason; unknown keys are errors with the nearest valid key suggested.
"""

from __future__ import annotations

import difflib
import json
import math
from pathlib import Path
from typing import Any, Iterable

import yaml

from solver.errors import InputError

_MISSING = object()


def read_text(path: str | Path, newline: str | None = None) -> str:
    """The file's text as UTF-8 (``newline=""`` for the csv module); unreadable or
    undecodable -> one-line InputError. Every input file is read through here."""
    try:
        with open(path, encoding="utf-8", newline=newline) as f:
            return f.read()
    except IsADirectoryError:
        raise InputError(str(path), "", "is a folder, expected a file") from None
    except OSError as e:
        raise InputError(str(path), "", f"cannot read file ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise InputError(str(path), "", f"not a UTF-8 text file (byte {e.start}: {e.reason})") from None


def load_yaml(path: str | Path) -> Any:
    """Load YAML with the safe loader: a ``!!python/...`` tag is an error, never executed."""
    text = read_text(path)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f"line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise InputError(str(path), at, f"invalid YAML: {problem}") from None


def load_json(path: str | Path) -> Any:
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(str(path), f"line {e.lineno}", f"invalid JSON: {e.msg}") from None


def suggest(key: str, valid: Iterable[str]) -> str:
    near = difflib.get_close_matches(str(key), list(valid), n=1, cutoff=0.5)
    return f" (did you mean {near[0]!r}?)" if near else ""


class Fields:
    """Typed access to one mapping; call :meth:`done` is implicit: unknown keys are
    rejected on construction against ``allowed``."""

    def __init__(self, data: Any, where: str, path: str, allowed: Iterable[str]):
        self.where, self.path = where, path
        allowed = list(allowed)
        if not isinstance(data, dict):
            raise InputError(where, path or "(top level)", f"must be a mapping, got {type(data).__name__}")
        for key in data:
            if key not in allowed:
                raise InputError(where, self._name(str(key)),
                                 f"unknown key{suggest(str(key), allowed)}; valid keys: {', '.join(allowed)}")
        self.data = data

    def _name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, reason: str) -> InputError:
        return InputError(self.where, self._name(key), reason)

    def get(self, key: str, kind: type, default: Any = _MISSING, *, min_value: float | None = None,
            max_value: float | None = None, choices: Iterable[Any] | None = None) -> Any:
        if key not in self.data or self.data[key] is None:
            if default is _MISSING:
                raise self.error(key, "required field is missing")
            return default
        value = self.data[key]
        value = _coerce(value, kind, lambda r: self.error(key, r))
        if choices is not None:
            choices = list(choices)
            if value not in choices:
                raise self.error(key, f"must be one of {', '.join(map(str, choices))}; got {value!r}"
                                 + suggest(str(value), map(str, choices)))
        if min_value is not None and value < min_value:
            raise self.error(key, f"must be >= {min_value:g}, got {value!r}")
        if max_value is not None and value > max_value:
            raise self.error(key, f"must be <= {max_value:g}, got {value!r}")
        return value


def finite_number(v: Any) -> bool:
    """A real number (not a bool), not NaN or +-inf."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _coerce(value: Any, kind: type, err) -> Any:
    # bool is a subclass of int: refuse it where a number is expected
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise err(f"must be an integer, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise err(f"must be a number, got {value!r}")
        if not math.isfinite(value):
            raise err(f"must be a finite number, got {value!r}")
        return float(value)
    if kind is bool:
        if not isinstance(value, bool):
            raise err(f"must be true or false, got {value!r}")
        return value
    if kind is str:
        if not isinstance(value, str) or not value.strip():
            raise err(f"must be a non-empty string, got {value!r}")
        return value
    if kind is list:
        if not isinstance(value, list):
            raise err(f"must be a list, got {type(value).__name__}")
        return value
    if kind is dict:
        if not isinstance(value, dict):
            raise err(f"must be a mapping, got {type(value).__name__}")
        return value
    raise TypeError(kind)
