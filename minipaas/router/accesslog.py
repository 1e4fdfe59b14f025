"""Caddy's JSON access log lines, rendered as Heroku-style router log lines (pure).

`at=info method=GET path="/" host=web.example.com request_id=… status=200 bytes=12 service=3ms`
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True)
class RouterLine:
    host: str
    ts: datetime
    text: str


def _strip_port(host: str) -> str:
    if host.startswith("["):  # [::1]:8443
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if ":" in host else host


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def router_line(raw: bytes | str) -> RouterLine | None:
    """One access-log line → a router log line; None for anything that is not one."""
    try:
        entry = json.loads(raw)
        request = entry["request"]
        host = _strip_port(str(request["host"]).lower())
        status = int(entry["status"])
        ts = datetime.fromtimestamp(float(entry["ts"]), tz=UTC)
        duration_ms = float(entry.get("duration", 0.0)) * 1000.0
        size = int(entry.get("size", 0))
        method = str(request.get("method", "-"))
        uri = str(request.get("uri", "-"))
    except (ValueError, KeyError, TypeError):
        return None
    headers = request.get("headers") or {}
    request_id = ""
    for name, values in headers.items() if isinstance(headers, dict) else ():
        if name.lower() == "x-request-id" and values:
            request_id = f" request_id={values[0]}"
    level = "error" if status >= 500 else "info"
    text = (
        f"at={level} method={method} path={_quote(uri)} host={host}{request_id} "
        f"status={status} bytes={size} service={duration_ms:.0f}ms"
    )
    return RouterLine(host=host, ts=ts, text=text)
