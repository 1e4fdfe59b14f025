"""Pure formatting for the TUI: durations, sizes, masked secrets, safe log text, series,
dates, log drains (URL without credentials, status) and add-ons.

Owns: turning API values into short cell text. Must not touch: I/O, widgets or the client.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

DASH = "\u2013"  # en dash: "no value"
MASK = "••••••••"

# C0/C1 control characters (except tab) would reach the terminal as raw escape sequences:
# a log line could then move the cursor or retitle the window. Shown as U+FFFD instead.
# Bidirectional overrides and isolates too: they reorder what follows on the operator's
# terminal line, so a log line could show text other than what it says ("Trojan Source").
_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_CONTROL = re.compile(f"[\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f{_BIDI}]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def clean_line(text: str) -> str:
    """A log line safe to draw: no control characters, no lone surrogates, tabs expanded."""
    text = _SURROGATE.sub("\ufffd", text)
    return _CONTROL.sub("\ufffd", text.rstrip("\r\n")).expandtabs(4)


# In a table cell every control character is out of place, line breaks and tabs included (a
# cell is one line; a newline there would hide the rest of the value).
_CELL_CONTROL = re.compile(f"[\\x00-\\x1f\\x7f-\\x9f{_BIDI}]")


def clean_cell(text: str) -> str:
    """A value safe to put in a one-line table cell: no control characters (U+FFFD instead),
    no lone surrogates."""
    return _CELL_CONTROL.sub("\ufffd", _SURROGATE.sub("\ufffd", text))


_STAMP = re.compile(r"^\d{4}-\d\d-\d\dT(\d\d:\d\d:\d\d)(?:\.\d+)?(?:[+-]\d\d:\d\d|Z)? ")


def compact_line(text: str) -> str:
    """`2026-11-22T10:00:00.123456+00:00 app[web.1]: hi` → `10:00:00 app[web.1]: hi`, so
    the message fits an 80-column terminal (the full stamp is in `minipaas logs`)."""
    return _STAMP.sub(r"\1 ", text, count=1)


def duration(seconds: float | None) -> str:
    """`45s`, `12m`, `3h 05m`, `2d 4h`: compact uptime."""
    if seconds is None or seconds < 0:
        return DASH
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def uptime(started_at: float | None, state: str, now: float) -> str:
    if started_at is None or state not in ("up", "starting"):
        return DASH
    return duration(now - started_at)


def size(nbytes: float | None) -> str:
    """`512K`, `38.2M`, `1.4G` (binary units, as ps and top show them)."""
    if nbytes is None:
        return DASH
    value = float(nbytes)
    for unit in ("B", "K", "M", "G"):
        if value < 1024 or unit == "G":
            return f"{value:.0f}{unit}" if unit in ("B", "K") else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}T"  # pragma: no cover - unreachable


def percent(value: float | None) -> str:
    return DASH if value is None else f"{value:.1f}%"


def used_of(used: float | None, total: float | None) -> str:
    """`1.2G / 3.9G (31%)`: a used amount out of a total, as `free -h` and `df -h` show them."""
    if used is None:
        return DASH
    if not total:
        return size(used)
    return f"{size(used)} / {size(total)} ({100 * used / total:.0f}%)"


def rate(value: float | None) -> str:
    if value is None:
        return DASH
    return f"{value:.0f}/s" if value >= 10 else f"{value:.1f}/s"


def millis(value: float | None) -> str:
    if value is None:
        return DASH
    return f"{value:.0f}ms" if value >= 10 else f"{value:.1f}ms"


def masked(value: str, revealed: bool) -> str:
    return value if revealed else MASK


def number(value: Any) -> float | None:
    """A float from a JSON value, or None when it is missing or not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def series(points: Iterable[Mapping[str, Any]], key: str) -> list[float]:
    """The values of `key` in time order, missing ones as 0 (a sparkline needs numbers)."""
    return [number(p.get(key)) or 0.0 for p in points]


def sum_series(all_series: Sequence[Sequence[float]]) -> list[float]:
    """Element-wise sum of series aligned at their ends (the newest points line up)."""
    if not all_series:
        return []
    length = max(len(s) for s in all_series)
    out = [0.0] * length
    for s in all_series:
        offset = length - len(s)
        for i, v in enumerate(s):
            out[offset + i] += v
    return out


def parse_assignment(text: str) -> tuple[str, str] | None:
    """`KEY=VALUE` → (KEY, VALUE); None when there is no `=` or no key."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        return None
    return key, value


_COUNT = re.compile(r"[+-]?[0-9]+")


def parse_count(text: str) -> int | None:
    """A whole number in ASCII digits (negative ones included: the server says why they are
    refused). Not Python's `int()` alone: it took `1_0` as 10, and full-width
    or Arabic-Indic digits as numbers too."""
    text = text.strip()
    if not _COUNT.fullmatch(text):
        return None
    try:
        return int(text)
    except ValueError:  # more digits than int() converts (4,300)
        return None


def when(ts: float | None) -> str:
    """`2026-12-06 03:58` in local time (as the releases and domains tabs show dates)."""
    if not ts:
        return DASH
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def day(ts: float | None) -> str:
    """`2026-12-06` in local time."""
    return when(ts).split(" ")[0]


def tls(cert: dict[str, Any] | None, width: int = 60) -> str:
    """A hostname's certificate in one cell: `issued until 2027-03-06`, `pending`, `failing:
    <Caddy's error>` (cut to `width`), or a dash when unknown (an older server)."""
    if not cert:
        return DASH
    status = str(cert.get("status") or DASH)
    if status == "issued" and cert.get("expires"):
        return f"issued until {str(cert['expires'])[:10]}"
    if status == "failing" and cert.get("error"):
        text = f"failing: {cert['error']}"
        return text if len(text) <= width else text[: width - 1] + "…"
    return status


def without_userinfo(url: str) -> str:
    """A drain URL to show: any `user:password@` replaced by `***@`.

    The API lists a drain's URL as it was added, credentials included (a Papertrail or HTTPS
    collector URL may carry them); the TUI never draws them, not even the user name. The
    authority ends at the first `/`, `?` or `#`, as in `urllib.parse.urlsplit`; an `@` in the
    path is left alone."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    if "@" not in authority:
        return url
    return f"{scheme}://***@{authority.rsplit('@', 1)[1]}{tail}"


_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^\s/?#@'\"]*@")


def without_userinfo_in(text: str) -> str:
    """`text` (a server's sentence about a drain URL) with every URL's userinfo as `***@`: the
    server hides a password (`user:***@`), not the user name."""
    return _USERINFO.sub(r"\1***@", text)


def drain_status(status: Mapping[str, Any] | None) -> tuple[str, str, str]:
    """(state, short, long) of a drain from the API's `status`: `delivering` with how many
    lines went, `failing` since when and why (`short`: why only), or `unknown` (the server
    reported no status: it runs no forwarder for the drain). Dropped lines are in `long`."""
    if not isinstance(status, Mapping):
        return "unknown", "", "no status from the server yet"
    delivered = number(status.get("delivered")) or 0
    dropped = number(status.get("dropped")) or 0
    sent = f"{delivered:,.0f} line{'s' * (delivered != 1)} sent"
    lost = f", {dropped:,.0f} dropped (the drain fell behind)" if dropped else ""
    since = number(status.get("failing_since"))
    if since is not None:
        why = status.get("error")
        why = why if isinstance(why, str) and why else "delivery failed"
        return "failing", why, f"failing since {when(since)}: {why}; {sent}{lost}"
    return "delivering", f"{delivered:,.0f} sent", f"delivering: {sent}{lost}"


def pg_version(version: Any) -> str:
    """`15.14` from PostgreSQL's `server_version` (`15.14 (Debian 15.14-0+deb12u1)`)."""
    if not isinstance(version, str) or not version.strip():
        return DASH
    return version.split()[0]
