"""Caddy's JSON access log lines, rendered as Heroku-style router log lines (pure).

    at=info method=GET path="/" host=web.example.com request_id=… fwd="1.2.3.4" dyno=web.1
    service=3ms status=200 bytes=12 protocol=https

Errors of the router itself carry Heroku's code (https://devcenter.heroku.com/articles/error-codes),
decided from what happened, not from the status alone (`error_code`): a 500 the app answered
is the app's answer (`at=info`), as on Heroku. What the line is built from:

- `upstream` (`UPSTREAM_FIELD`, added by the app routes' `log_append`): the address Caddy
  proxied to: a dyno's port, or the resolver's own port (its "no web dynos" 503);
- `minipaas_code` (`CODE_FIELD`): a code the route itself answered with (maintenance: H80);
- Caddy's own fields: `request.client_ip` (fwd), `request.tls` (protocol), `status` (499: the
  client went away before the answer), `duration`, `size`.

What the request's app looked like (its dynos' ports, crashed, nothing deployed) is told by the
caller in a `RouterView`, taken when the line is read (within a second of the request).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

#: The access-log field with the upstream's `host:port` (see render.py's `log_append`).
UPSTREAM_FIELD = "upstream"
#: The access-log field with the code a route answered with itself (maintenance).
CODE_FIELD = "minipaas_code"

#: Heroku's router error codes minipaas logs, with Heroku's descriptions.
ROUTER_CODES: dict[str, str] = {
    "H10": "App crashed",
    "H12": "Request timeout",
    "H13": "Connection closed without response",
    "H14": "No web dynos running",
    "H27": "Client Request Interrupted",
    "H80": "Maintenance mode",
    "H81": "Blank app",
    "H99": "Platform error",
}

#: Codes of the client's doing: logged `at=info`, as Heroku does.
INFO_CODES = frozenset({"H27"})

#: Caddy's status for a request whose client went away before the answer.
CLIENT_GONE = 499

_CODE = re.compile(r"\bcode=(H\d\d)\b")


@dataclass(frozen=True)
class RouterView:
    """What the router log needs to know about the request's app.

    `dynos`: web dyno name by port ("web.1"); `resolver_port`: the port of the resolver, whose
    own answer is "no web dynos"; `crashed`: the app has web dynos and all are crashed;
    `released`: the app has a release (False: nothing deployed yet)."""

    dynos: Mapping[int, str] = field(default_factory=dict)
    resolver_port: int | None = None
    crashed: bool = False
    released: bool = True


@dataclass(frozen=True)
class AccessEntry:
    """The parts of one access-log line the router line is made of."""

    host: str
    ts: datetime
    method: str
    uri: str
    status: int
    size: int
    duration_ms: float
    request_id: str = ""
    client_ip: str = ""
    https: bool = False
    upstream_port: int | None = None
    route_code: str = ""


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


def _port_of(upstream: object) -> int | None:
    if not isinstance(upstream, str) or ":" not in upstream:
        return None
    port = upstream.rsplit(":", 1)[1]
    return int(port) if port.isdigit() and 0 < int(port) < 65536 else None


def parse(raw: bytes | str) -> AccessEntry | None:
    """One access-log line → its parts; None for anything that is not one."""
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
    except (ValueError, KeyError, TypeError, OverflowError):
        return None
    headers = request.get("headers") or {}
    request_id = ""
    for name, values in headers.items() if isinstance(headers, dict) else ():
        if name.lower() == "x-request-id" and isinstance(values, list) and values:
            request_id = str(values[0])
    client = request.get("client_ip") or request.get("remote_ip") or ""
    code = entry.get(CODE_FIELD)
    return AccessEntry(
        host=host,
        ts=ts,
        method=method,
        uri=uri,
        status=status,
        size=size,
        duration_ms=duration_ms,
        request_id=request_id,
        client_ip=str(client),
        https=bool(request.get("tls")),
        upstream_port=_port_of(entry.get(UPSTREAM_FIELD)),
        route_code=code if isinstance(code, str) and code in ROUTER_CODES else "",
    )


def error_code(entry: AccessEntry, view: RouterView) -> str:
    """Heroku's router error code for what happened to the request, "" for none."""
    if entry.route_code:
        return entry.route_code
    if entry.status == CLIENT_GONE:
        return "H27"
    port = entry.upstream_port
    if port is not None and port == view.resolver_port:
        # The resolver's own answer: the app has no web dyno to send the request to.
        if entry.status != 503:
            return ""  # (its 404: no such app; not an app's line)
        if not view.released:
            return "H81"
        return "H10" if view.crashed else "H14"
    if port is not None:
        # Caddy reached for a dyno: its 502 means the dyno refused, reset or closed the
        # connection without an answer, its 504 that the answer did not come in time. Any
        # other status (a 500, a 503) is the app's own answer.
        if entry.status == 502:
            return "H10" if view.crashed else "H13"
        if entry.status == 504:
            return "H12"
        return ""
    # No upstream at all: Caddy answered itself (static files, a broken route).
    return "H99" if entry.status >= 500 else ""


def render(entry: AccessEntry, view: RouterView | None = None) -> RouterLine:
    """The router log line of one request."""
    view = view or RouterView()
    code = error_code(entry, view)
    if code:
        level = "info" if code in INFO_CODES else "error"
        head = f"at={level} code={code} desc={_quote(ROUTER_CODES[code])}"
    else:
        head = "at=info"
    parts = [
        head,
        f"method={entry.method}",
        f"path={_quote(entry.uri)}",
        f"host={entry.host}",
    ]
    if entry.request_id:
        parts.append(f"request_id={entry.request_id}")
    if entry.client_ip:
        parts.append(f"fwd={_quote(entry.client_ip)}")
    dyno = view.dynos.get(entry.upstream_port) if entry.upstream_port is not None else None
    if dyno:
        parts.append(f"dyno={dyno}")
    parts += [
        f"service={entry.duration_ms:.0f}ms",
        f"status={entry.status}",
        f"bytes={entry.size}",
        f"protocol={'https' if entry.https else 'http'}",
    ]
    return RouterLine(host=entry.host, ts=entry.ts, text=" ".join(parts))


def router_line(raw: bytes | str, view: RouterView | None = None) -> RouterLine | None:
    """One access-log line → a router log line; None for anything that is not one."""
    entry = parse(raw)
    return render(entry, view) if entry is not None else None


def code_of(text: str) -> str | None:
    """The Heroku error code in a rendered router line (`code=H14`), or None."""
    match = _CODE.search(text)
    return match.group(1) if match else None
