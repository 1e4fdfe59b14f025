"""`apps:errors`: counts of an app's router error codes and dyno errors over the last hours.

Counted from the app's own logs rather than kept in a counter: the logs are already written per
app, renamed and removed with it, survive restarts, and hold exactly the lines an operator
greps (`code=H14`, `Error R14`). The price: the answer covers only what log rotation kept
(`LogStore`'s files per stream), which for a very busy app's router log can be less than the
hours asked for.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from minipaas.errors import UserError
from minipaas.logs.logstore import LogLine, LogStore
from minipaas.router.accesslog import ROUTER_CODES, code_of

#: `--hours` from 1 to this (a month).
MAX_HOURS = 24 * 31

#: Dyno errors as the supervisor logs them (source `minipaas`, the dyno's name).
DYNO_ERRORS = {
    "Error R14 (": ("R14", "Memory quota exceeded"),
    "Error R15 (": ("R15", "Memory quota vastly exceeded"),
    "Crashed: ": ("crashed", "Dyno crashed (restarts given up for now)"),
}

_MARKERS = (b"code=H", *(m.encode() for m in DYNO_ERRORS))


def parse_hours(raw: str | None) -> int:
    """`hours`: a whole number from 1 to MAX_HOURS; 24 when not given."""
    if raw is None or raw == "":
        return 24
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_HOURS:
        raise UserError(f"Invalid hours {raw!r}: use a whole number from 1 to {MAX_HOURS}.")
    return int(raw)


def count(lines: Iterable[LogLine]) -> dict[str, dict[str, int]]:
    """Router codes (source `router`) and dyno errors (source `minipaas`) by code, per
    process type for dyno errors ("web" for web.1 and web.2)."""
    router: Counter[str] = Counter()
    dyno: Counter[str] = Counter()
    for line in lines:
        if line.source == "router":
            code = code_of(line.text)
            if code in ROUTER_CODES:
                router[code] += 1
        elif line.source == "minipaas" and "." in line.dyno:
            for prefix, (code, _desc) in DYNO_ERRORS.items():
                if line.text.startswith(prefix):
                    dyno[f"{line.dyno.split('.', 1)[0]} {code}"] += 1
    return {"router": dict(sorted(router.items())), "dyno": dict(sorted(dyno.items()))}


def app_errors(logs: LogStore, app: str, hours: int, now: datetime) -> dict[str, Any]:
    """The `apps:errors` answer (blocking: reads log files)."""
    since = now - timedelta(hours=hours)
    lines = logs.matching_since(app, since, _MARKERS)
    counts = count(lines)
    return {
        "app": app,
        "hours": hours,
        "since": since.isoformat(timespec="seconds"),
        **counts,
        "descriptions": {
            **{code: ROUTER_CODES[code] for code in counts["router"]},
            **{code: desc for code, desc in DYNO_ERRORS.values()},
        },
    }
