"""Health check settings for web dynos: parsing and validation (pure).

A check is what a new web dyno must pass before Caddy switches to it: its port accepts
connections and, when a path is set, `GET path` answers 2xx (with `expect` in the body if set),
and it stays up `min_uptime` seconds, all within `timeout`. Settings come from
`checks:set -a APP path=/health …` or app.json `healthchecks`; the first wins.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from minipaas.errors import UserError
from minipaas.names import shown

KEYS = ("path", "expect", "min_uptime", "timeout")
MAX_SECONDS = 600.0


def _quoted(value: Any) -> str:
    """`value` as a message quotes it: a string cut short as `names.shown` does, else its repr."""
    return shown(value) if isinstance(value, str) else repr(value)


def _seconds(key: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int past 1e308
        raise UserError(
            f"Invalid health check {key} {_quoted(value)}: use a number of seconds."
        ) from None
    if not 0 <= number <= MAX_SECONDS:
        raise UserError(
            f"Invalid health check {key} {_quoted(value)}: use 0 to {MAX_SECONDS:.0f} seconds."
        )
    return number


def validate(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A normalised check dict from user input, or `UserError` naming the bad value."""
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise UserError(f"Unknown health check setting {unknown[0]!r}; use {', '.join(KEYS)}.")
    check: dict[str, Any] = {"path": None, "expect": None, "min_uptime": 0.0, "timeout": None}
    path = raw.get("path")
    if path is not None:
        path = str(path)
        if (
            not path.startswith("/")
            or any(c.isspace() for c in path)
            or not path.isprintable()  # NUL and other control characters break the GET
            or len(path) > 500
        ):
            raise UserError(
                f"Invalid health check path {shown(path)}: use a URL path such as /health."
            )
        check["path"] = path
    expect = raw.get("expect")
    if expect is not None:
        if check["path"] is None:
            raise UserError("A health check `expect` needs a `path` to GET.")
        check["expect"] = str(expect)
    if raw.get("min_uptime") is not None:
        check["min_uptime"] = _seconds("min_uptime", raw["min_uptime"])
    if raw.get("timeout") is not None:
        timeout = _seconds("timeout", raw["timeout"])
        if timeout < 1:
            raise UserError(
                f"Invalid health check timeout {_quoted(raw['timeout'])}: use at least 1 s."
            )
        check["timeout"] = timeout
        if check["min_uptime"] >= timeout:
            # The dyno must stay up min_uptime s within timeout s: no deploy could pass.
            raise UserError(
                f"Invalid health check min_uptime {_quoted(raw.get('min_uptime'))}: it must be "
                f"less than the timeout ({timeout:g} s), or no dyno could ever pass the check."
            )
    return check


def parse_pairs(pairs: list[str]) -> dict[str, Any]:
    """`path=/health expect=ok min_uptime=3 timeout=30` → a validated check."""
    raw: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise UserError(f"Expected KEY=VALUE for a health check, got {pair!r}.")
        raw[key] = value
    return validate(raw)


def from_app_json(healthchecks: Mapping[str, Any]) -> dict[str, Any] | None:
    """The web startup check from app.json `healthchecks` (Dokku's format), if any.

    `{"web": [{"type": "startup", "path": "/health", "content": "ok", "timeout": 30,
    "uptime": 3}]}`.
    """
    web = healthchecks.get("web") if isinstance(healthchecks, Mapping) else None
    if not web:
        return None
    if not isinstance(web, list) or not all(isinstance(c, Mapping) for c in web):
        raise UserError("app.json healthchecks.web must be a list of check objects.")
    for entry in web:
        if entry.get("type", "startup") != "startup":
            continue
        return validate(
            {
                "path": entry.get("path"),
                "expect": entry.get("content"),
                "min_uptime": entry.get("uptime"),
                "timeout": entry.get("timeout"),
            }
        )
    return None
