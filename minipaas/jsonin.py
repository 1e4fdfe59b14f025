"""JSON that users wrote (API request bodies, app.json): parsed with the limits nothing
downstream can do without.

`json.loads` accepts what minipaas cannot hold: nesting so deep that walking it recurses past
Python's limit, whole numbers too long for `int`, and strings with an unpaired UTF-16 surrogate
(`"\\ud800"`), which cannot be encoded as UTF-8 for SQLite, a command line or the environment;
NUL cannot be passed to a process either. Pure functions; each caller words its own subject.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from minipaas.errors import UserError
from minipaas.names import SHOWN_CHARS, is_utf8

MAX_DEPTH = 32
"""How deeply a document may nest; what minipaas reads is four levels deep at most."""
MAX_DIGITS = 100
"""The longest whole number a document may hold (Python refuses to read huge ones)."""


def flag(data: dict[str, Any], key: str, default: bool = False) -> bool:
    """`data[key]` as true or false (`default` when absent); `UserError` naming anything else."""
    value = data.get(key, default)
    if not isinstance(value, bool):
        shown = json.dumps(value)[:SHOWN_CHARS]
        raise UserError(f"The field {key!r} must be true or false, not {shown}.")
    return value


def loads(raw: str | bytes, subject: str) -> Any:
    """`raw` parsed; `UserError` (naming `subject`, e.g. "app.json") for a number past
    MAX_DIGITS digits. Invalid JSON raises `json.JSONDecodeError`, which callers word."""

    def parse_int(text: str) -> int:
        digits = len(text.lstrip("-"))
        if digits > MAX_DIGITS:
            raise UserError(
                f"{subject} has a number of {digits} digits ({text[:20]}…); "
                f"use at most {MAX_DIGITS}."
            )
        return int(text)

    try:
        return json.loads(raw, parse_int=parse_int)
    except RecursionError:  # a thousand levels or so; `first_unfit` holds them to MAX_DEPTH
        raise too_deep(subject) from None


def kind(value: Any) -> str:
    """How an error names a JSON value: "an object", "a list", or its JSON (cut short)."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    text = json.dumps(value)
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}…"


def too_deep(subject: str) -> UserError:
    return UserError(f"{subject} is nested too deeply: use at most {MAX_DEPTH} levels.")


@dataclass(frozen=True)
class Unfit:
    """A string in a document that no process, environment or UTF-8 text can carry."""

    where: str  # the value's path ("" for the top, "env.KEY", "scripts[0]"); a key's: its object's
    text: str
    problem: str  # "a NUL character", "an unpaired UTF-16 surrogate"
    is_key: bool


def first_unfit(data: Any, subject: str, *, nul: bool = True) -> Unfit | None:
    """The first string (object key or value) in `data` holding an unpaired surrogate, or a NUL
    when `nul`; None if there is none. `UserError` (naming `subject`) past MAX_DEPTH levels."""
    for parent, where, key, value, depth in walk(data):
        if isinstance(value, dict | list) and depth > MAX_DEPTH:
            raise too_deep(subject)
        if key is not None and (problem := unusable(key, nul=nul)):
            return Unfit(parent, key, problem, is_key=True)
        if isinstance(value, str) and (problem := unusable(value, nul=nul)):
            return Unfit(where, value, problem, is_key=False)
    return None


def unusable(text: str, *, nul: bool = True) -> str | None:
    """What makes `text` unfit for a command line, the environment or UTF-8, if anything."""
    if nul and "\0" in text:
        return "a NUL character"
    if not is_utf8(text):
        return "an unpaired UTF-16 surrogate"
    return None


def walk(data: Any) -> Iterator[tuple[str, str, str | None, Any, int]]:
    """(parent, where, key, value, depth) for every value in `data`, without recursion: `where`
    is the value's path, `parent` its container's, `key` the object key it sits under (None in
    lists and at the top)."""
    stack: list[tuple[str, str, str | None, Any, int]] = [("", "", None, data, 1)]
    while stack:
        parent, where, key, value, depth = stack.pop()
        yield parent, where, key, value, depth
        if isinstance(value, dict):
            stack.extend(
                (where, f"{where}.{k}" if where else str(k), str(k), v, depth + 1)
                for k, v in reversed(value.items())
            )
        elif isinstance(value, list):
            stack.extend(
                (where, f"{where}[{i}]", None, v, depth + 1)
                for i, v in reversed(list(enumerate(value)))
            )
