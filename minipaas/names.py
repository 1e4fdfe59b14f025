"""The one validation boundary for names users type: apps, config keys, process types, domains.

Pure functions: each takes a string and returns it when valid, or raises `UserError` with one
sentence naming the bad value (cut short by `shown`, so a 100 kB name stays one readable line).
"""

from __future__ import annotations

import re

from minipaas.errors import UserError

APP_NAME = re.compile(r"[a-z][a-z0-9-]{0,29}")
RESERVED_APP_NAMES = frozenset({"minipaas", "www"})
CONFIG_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
PROCESS_TYPE = re.compile(r"[A-Za-z0-9_-]{1,30}")
DYNO_NUMBER = re.compile(r"[1-9][0-9]{0,2}")  # web.1 … web.999 (formations stop at 100)
RELEASE = re.compile(r"v?[0-9]{1,10}")
MAX_RELEASE = 2**31 - 1
HOSTNAME_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
SHOWN_CHARS = 100
"""How much of a bad value an error message quotes: enough to recognise it, never 100 kB."""


def shown(value: str, limit: int = SHOWN_CHARS) -> str:
    """`value` as an error message quotes it: its repr, cut after `limit` characters with "…"."""
    return repr(value) if len(value) <= limit else f"{value[:limit]!r}…"


def is_utf8(text: str) -> bool:
    """False for text holding lone surrogates (bytes that were not UTF-8, decoded with
    `surrogateescape`, or a JSON `"\\ud800"`): no argument, environment or SQLite text can."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def app_name(name: str) -> str:
    """Return `name` if it is a valid app name, else raise `UserError`."""
    if not APP_NAME.fullmatch(name):
        raise UserError(
            f"Invalid app name {shown(name)}: use 1 to 30 lower-case letters, digits and dashes, "
            "starting with a letter."
        )
    if name in RESERVED_APP_NAMES:
        raise UserError(f"The app name {name!r} is reserved; choose another name.")
    return name


def new_app_name(name: str) -> str:
    """`app_name` for an app about to be created: it must also end with a letter or digit, as a
    DNS label does (`a-.example.com` gets no certificate, so the app could never be reached).
    Lookups keep the looser `app_name`, so an app created before this rule can be destroyed."""
    app_name(name)
    if name.endswith("-"):
        raise UserError(
            f"Invalid app name {shown(name)}: end it with a letter or digit, not a dash (it is "
            "the first label of the app's hostname)."
        )
    return name


def one_off_command(value: object, *, optional: bool = False) -> str:
    """The command of a one-off (`run`; `ps:exec`, where none (`optional`) means a shell): a
    string, not blank unless `optional`, without NUL (no process can take one)."""
    if not isinstance(value, str) or (not optional and not value.strip()):
        raise UserError("No command given; use `minipaas run -a APP -- COMMAND`.")
    if "\0" in value:
        raise UserError(f"Invalid command {value[:100]!r}: it holds a NUL character.")
    return value


def config_key(key: str) -> str:
    """Return `key` if it is a valid config var name, else raise `UserError`."""
    if not CONFIG_KEY.fullmatch(key):
        raise UserError(
            f"Invalid config key {shown(key)}: use letters, digits and underscores, "
            "not starting with a digit."
        )
    return key


def process_type(name: str) -> str:
    """Return `name` if it is a valid Procfile process type, else raise `UserError`."""
    if not PROCESS_TYPE.fullmatch(name):
        raise UserError(
            f"Invalid process type {shown(name)}: use up to 30 letters, digits, dashes and "
            "underscores."
        )
    return name


def process_type_or_dyno(name: str) -> tuple[str, int | None]:
    """`web` → ("web", None), `web.2` → ("web", 2); else `UserError` naming `name`."""
    ptype, dot, number = name.rpartition(".")
    if not dot:
        return process_type(name), None
    if not PROCESS_TYPE.fullmatch(ptype) or not DYNO_NUMBER.fullmatch(number):
        raise UserError(
            f"Invalid process type or dyno {shown(name)}: use a process type such as web, or "
            "one dyno such as web.1."
        )
    return ptype, int(number)


def custom_domain(name: str) -> str:
    """`hostname` for a domain added to an app: also not an IP address (`1.2.3.4`): no CA
    issues such a name a certificate, and a top-level label is never all digits (RFC 3696)."""
    host = hostname(name)
    if host.rsplit(".", 1)[-1].isdigit():
        raise UserError(
            f"Invalid domain {shown(name)}: it is not a DNS name (an IP address, or a last label "
            "of digits only); use a name such as 'www.example.com'."
        )
    return host


def release_version(text: str) -> int:
    """`v3` or `3` → 3 (ASCII digits, up to MAX_RELEASE); else `UserError` naming `text`."""
    number = int(text.removeprefix("v")) if RELEASE.fullmatch(text) else -1
    if not 0 <= number <= MAX_RELEASE:
        raise UserError(f"Invalid release {shown(text)}: use vN, e.g. v3.")
    return number


def hostname(name: str) -> str:
    """Return `name` lower-cased if it is a valid DNS hostname, else raise `UserError`."""
    host = name.strip().lower().rstrip(".")
    labels = host.split(".")
    if not host or len(host) > 253 or not all(HOSTNAME_LABEL.fullmatch(label) for label in labels):
        raise UserError(
            f"Invalid hostname {shown(name)}: use a DNS name such as 'www.example.com'."
        )
    return host
