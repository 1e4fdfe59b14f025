"""Which hostnames have a TLS certificate, from whom, until when, and why Caddy failed to get one.

Reads what Caddy keeps under the data dir and never asks Caddy itself: certificates from its
storage (`<storage>/certificates/<issuer>/<host>/<host>.crt`, PEM, leaf first) and obtain
attempts from its process log (the JSON lines of the `tls.obtain` / `tls.issuance.*` loggers).
Never writes anything, never talks to the admin API or the network.

Certificates are read with a minimal DER walk (issuer and notAfter are all we need): the
`cryptography` package is not a dependency, and `openssl x509` would be a subprocess per host
whose text output and presence (it is not among the server's tools) vary by system.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from minipaas.router.render import TlsMode, tls_mode

Status = Literal["issued", "pending", "failing"]

INTERNAL_ISSUER = "minipaas internal CA"
#: Caddy's storage directory name for certificates from its internal CA.
INTERNAL_STORE = "local"
#: How much of the end of Caddy's log is searched for obtain attempts.
LOG_TAIL_BYTES = 4 * 2**20
#: How an attempt interrupted (not failed) ends in Caddy's log.
CANCELED = "context canceled"

_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----\s+(.*?)\s+-----END CERTIFICATE-----", re.S)
_OID_CN = bytes.fromhex("550403")  # 2.5.4.3 commonName
_OID_O = bytes.fromhex("55040a")  # 2.5.4.10 organizationName
_SEQUENCE, _SET, _OID, _UTC_TIME, _GENERALIZED_TIME = 0x30, 0x31, 0x06, 0x17, 0x18


@dataclass(frozen=True)
class Certificate:
    """The two facts of a certificate `certs` shows."""

    issuer: str  # the issuer's organization (O), else its common name (CN)
    not_after: datetime


@dataclass(frozen=True)
class Attempt:
    """Caddy's last word, in its log, about obtaining a certificate for one host."""

    ok: bool
    at: datetime
    error: str | None = None


@dataclass(frozen=True)
class HostCertificate:
    """One row of `certs`."""

    hostname: str
    status: Status
    ca: TlsMode  # which kind of CA serves the host: "internal" or "acme"
    issuer: str | None = None
    expires: datetime | None = None
    error: str | None = None  # failing: Caddy's last error, one line
    error_at: datetime | None = None
    note: str | None = None  # pending: what happens next

    def to_json(self) -> dict[str, Any]:
        return {
            "hostname": self.hostname,
            "status": self.status,
            "ca": self.ca,
            "issuer": self.issuer,
            "expires": self.expires.isoformat() if self.expires else None,
            "error": self.error,
            "error_at": self.error_at.isoformat() if self.error_at else None,
            "note": self.note,
        }


# --- certificates ---------------------------------------------------------------------------


def _tlv(data: bytes, at: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the DER element at `at`."""
    if at + 2 > len(data):
        raise ValueError("truncated DER")
    tag, length = data[at], data[at + 1]
    at += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or at + count > len(data):
            raise ValueError("bad DER length")
        length = int.from_bytes(data[at : at + count], "big")
        at += count
    if at + length > len(data):
        raise ValueError("truncated DER")
    return tag, at, at + length


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    items, at = [], start
    while at < end:
        tag, content, stop = _tlv(data, at)
        items.append((tag, content, stop))
        at = stop
    return items


def _der_time(tag: int, raw: bytes) -> datetime:
    text = raw.decode("ascii")
    if tag == _UTC_TIME:  # YYMMDDHHMMSSZ, years 1950-2049 (RFC 5280)
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    elif tag != _GENERALIZED_TIME:
        raise ValueError("validity is not a time")
    return datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=UTC)


def _name(data: bytes, start: int, end: int) -> str:
    """An X.501 Name's organization, else its common name ("" if it has neither)."""
    found: dict[bytes, str] = {}
    for tag, rdn_start, rdn_end in _children(data, start, end):
        if tag != _SET:
            raise ValueError("bad RDN")
        for _, atv_start, atv_end in _children(data, rdn_start, rdn_end):
            (oid_tag, oid_s, oid_e), (_, val_s, val_e), *_ = _children(data, atv_start, atv_end)
            if oid_tag == _OID:
                found.setdefault(data[oid_s:oid_e], data[val_s:val_e].decode("utf-8", "replace"))
    return found.get(_OID_O) or found.get(_OID_CN) or ""


def parse_der(der: bytes) -> Certificate:
    """Issuer and notAfter of a DER X.509 certificate; ValueError if it is not one."""
    try:
        tag, cert_s, _ = _tlv(der, 0)
        if tag != _SEQUENCE:
            raise ValueError("not a certificate")
        tag, tbs_s, tbs_e = _tlv(der, cert_s)
        fields = _children(der, tbs_s, tbs_e)
        if tag != _SEQUENCE or not fields:
            raise ValueError("not a certificate")
        if fields[0][0] == 0xA0:  # [0] version (absent in v1 certificates)
            fields = fields[1:]
        # serialNumber, signature, issuer, validity, subject, ...
        _, issuer_s, issuer_e = fields[2]
        _, validity_s, validity_e = fields[3]
        _, (after_tag, after_s, after_e) = _children(der, validity_s, validity_e)[:2]
        return Certificate(
            issuer=_name(der, issuer_s, issuer_e),
            not_after=_der_time(after_tag, der[after_s:after_e]),
        )
    except (IndexError, UnicodeDecodeError) as exc:
        raise ValueError(f"not a certificate: {exc}") from exc


def parse_pem(pem: bytes) -> Certificate:
    """The first (leaf) certificate of a PEM file; ValueError if there is none."""
    match = _PEM.search(pem)
    if match is None:
        raise ValueError("no PEM certificate")
    try:
        der = base64.b64decode(match.group(1), validate=False)
    except binascii.Error as exc:
        raise ValueError(f"bad PEM: {exc}") from exc
    return parse_der(der)


def _storage_name(host: str) -> str:
    """certmagic's directory name for a host (`*.x` is stored as `wildcard_.x`)."""
    return host.lower().replace("*", "wildcard_")


def stored_certificate(storage_dir: Path, host: str) -> tuple[str, Certificate] | None:
    """(issuer directory, certificate) of the latest-expiring certificate Caddy keeps for
    `host`, from any issuer; None if it has none (unreadable files count as none)."""
    name = _storage_name(host)
    best: tuple[str, Certificate] | None = None
    for path in sorted(storage_dir.glob(f"certificates/*/{name}/{name}.crt")):
        try:
            cert = parse_pem(path.read_bytes())
        except (OSError, ValueError):
            continue
        if best is None or cert.not_after > best[1].not_after:
            best = (path.parent.parent.name, cert)
    return best


# --- Caddy's log ----------------------------------------------------------------------------


def _one_line(text: str) -> str:
    return " ".join(text.split())


def attempts(lines: Iterable[str]) -> dict[str, Attempt]:
    """Host → the last obtain attempt Caddy logged for it (success or failure), from its JSON
    log lines; anything else (other loggers, plain text) is skipped."""
    last: dict[str, Attempt] = {}
    for line in lines:
        if '"tls.' not in line:  # cheap filter: most lines are about something else
            continue
        try:
            entry = json.loads(line)
            logger, msg = str(entry.get("logger", "")), str(entry.get("msg", ""))
            host = str(entry["identifier"]).lower()
            at = datetime.fromtimestamp(float(entry["ts"]), tz=UTC)
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
        if not (logger == "tls.obtain" or logger.startswith("tls.issuance")):
            continue
        if msg == "certificate obtained successfully":
            last[host] = Attempt(ok=True, at=at)
        elif entry.get("level") == "error" and entry.get("error") and "lock" not in msg:
            error = _one_line(str(entry["error"]))
            if error.endswith(CANCELED):
                # Not a failure: a config reload (any app's change of routes) or a stop
                # interrupted the attempt; the new config starts another, whose outcome counts.
                continue
            last[host] = Attempt(ok=False, at=at, error=error)
    return last


def read_log_tail(log_file: Path, limit: int = LOG_TAIL_BYTES) -> list[str]:
    """The last `limit` bytes of Caddy's log, as whole lines ([] if it cannot be read)."""
    try:
        with log_file.open("rb") as log:
            size = log.seek(0, 2)
            log.seek(max(0, size - limit))
            data = log.read()
    except OSError:
        return []
    lines = data.decode("utf-8", "replace").splitlines()
    return lines[1:] if size > limit else lines


# --- status -----------------------------------------------------------------------------------


def ca_kind(domain: str, host: str) -> TlsMode:
    """Which CA `render` has Caddy use for `host` on a server for `domain`: the internal one
    for every host of an internal domain, and for private names on a public one."""
    return "internal" if tls_mode(domain) == "internal" else tls_mode(host)


def host_status(
    host: str,
    ca: TlsMode,
    stored: tuple[str, Certificate] | None,
    attempt: Attempt | None,
    now: datetime,
) -> HostCertificate:
    """One host's row (pure): `issued` while a stored certificate is valid, else `failing` if
    Caddy's last attempt failed, else `pending`."""
    if stored is not None and stored[1].not_after > now:
        store, cert = stored
        issuer = INTERNAL_ISSUER if store == INTERNAL_STORE else cert.issuer or store
        return HostCertificate(host, "issued", ca, issuer=issuer, expires=cert.not_after)
    if attempt is not None and not attempt.ok:
        return HostCertificate(host, "failing", ca, error=attempt.error, error_at=attempt.at)
    if ca == "internal":
        note = "The internal CA issues it at the first HTTPS visit."
    else:
        note = (
            "Not obtained yet: Caddy asks the ACME CA for it once the name is routed; "
            "its DNS must point at this server."
        )
    if stored is not None:
        note = f"The certificate expired on {stored[1].not_after:%Y-%m-%d}. {note}"
    return HostCertificate(host, "pending", ca, note=note)


def certificates(
    domain: str, hosts: Sequence[str], storage_dir: Path, log_file: Path, now: datetime
) -> list[HostCertificate]:
    """The rows of `certs` for `hosts` of a server for `domain` (reads files: run in a thread)."""
    tried = attempts(read_log_tail(log_file))
    return [
        host_status(
            host,
            ca_kind(domain, host),
            stored_certificate(storage_dir, host),
            tried.get(host.lower()),
            now,
        )
        for host in hosts
    ]
