"""Log drain URLs and the bytes a drain receives: pure functions, tested by tables.

A drain is where minipaas copies an app's log lines as they are written, as Heroku's log drains
do: `syslog://host:port` (RFC 5424 over TCP), `syslog+tls://host:port` (the same over TLS, the
certificate checked against the system's CAs) or `https://host/path` (batches POSTed as
`application/logplex-1`, Heroku's HTTPS drain format, so the services that take Heroku's drains
take ours). Each message is framed by octet counting (RFC 6587): `LENGTH SP MESSAGE`.
"""

from __future__ import annotations

import functools
import re
import urllib.parse
from dataclasses import dataclass
from datetime import datetime

from minipaas import names
from minipaas.errors import UserError

SCHEMES = ("syslog", "syslog+tls", "https")
MAX_URL = 2048
#: Heroku's facility and severity for app lines: local7.info.
PRIORITY = 190
#: RFC 5424 caps the header fields; longer names are cut (ours are short).
HOSTNAME_MAX, APP_NAME_MAX, PROCID_MAX = 255, 48, 128
_PRINTABLE = re.compile(r"[\x21-\x7e]+")


@dataclass(frozen=True)
class DrainUrl:
    """A checked drain URL."""

    url: str
    scheme: str
    host: str
    port: int

    @property
    def tls(self) -> bool:
        return self.scheme != "syslog"

    def shown(self) -> str:
        """The URL for messages and the server's own log: any password replaced by `***`."""
        return redacted(self.url)


def redacted(url: str) -> str:
    """`url` without the password of its userinfo (drain URLs may carry credentials)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:  # e.g. `https://[::1`: nothing to find a password in
        return url
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def parse_drain_url(text: str) -> DrainUrl:
    """Check a drain URL a user gave; UserError names what is wrong with it."""
    if not text:
        raise UserError("No drain URL given; use syslog://HOST:PORT, syslog+tls://HOST:PORT or "
                        "https://HOST/PATH.")
    shown = names.shown(redacted(text))
    if len(text) > MAX_URL:
        raise UserError(f"The drain URL {shown} is longer than {MAX_URL} characters.")
    if not _PRINTABLE.fullmatch(text):
        raise UserError(f"The drain URL {shown} has spaces or control characters.")
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise UserError(f"The drain URL {shown} is not a valid URL ({exc}).") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise UserError(
            f"The drain URL {shown} must start with syslog://, syslog+tls:// or https:// "
            "(plain http would send the logs unencrypted)."
        )
    host = parts.hostname or ""
    if not host:
        raise UserError(f"The drain URL {shown} has no host.")
    if scheme == "https":
        port = port or 443
    elif port is None:
        raise UserError(f"The drain URL {shown} needs a port, e.g. {scheme}://{host}:514.")
    elif parts.path not in ("", "/") or parts.query or parts.fragment:
        raise UserError(f"The drain URL {shown} has a path; a syslog drain is HOST:PORT only.")
    if port == 0:
        raise UserError(f"The drain URL {shown} has port 0.")
    return DrainUrl(url=text, scheme=scheme, host=host, port=port)


def _field(value: str, limit: int) -> str:
    """An RFC 5424 header field: printable ASCII without spaces, `-` when empty."""
    cleaned = "".join(c if "\x21" <= c <= "\x7e" else "_" for c in value)[:limit]
    return cleaned or "-"


@functools.lru_cache(maxsize=1024)
def _fields(app: str, source: str, dyno: str) -> str:
    """` HOSTNAME APP-NAME PROCID MSGID SD ` of a message (a few per app: cached)."""
    return (
        f" {_field(app, HOSTNAME_MAX)} {_field(source, APP_NAME_MAX)} "
        f"{_field(dyno, PROCID_MAX)} - - "
    )


def syslog_frame(ts: datetime, app: str, source: str, dyno: str, text: str) -> bytes:
    """One log line as an octet-counted RFC 5424 message, as Heroku's drains send it:
    `<190>1 2026-12-06T10:00:00.123456+00:00 myapp app web.1 - - hello`.

    The hostname is the app's name (Heroku sends `host`: one server carries many apps here),
    the app-name the line's source (`app`, `router`, ...), the procid the dyno.
    """
    message = (
        f"<{PRIORITY}>1 {ts.isoformat(timespec='microseconds')}{_fields(app, source, dyno)}"
        f"{text}"
    ).encode("utf-8", "replace")
    return b"%d %s" % (len(message), message)
