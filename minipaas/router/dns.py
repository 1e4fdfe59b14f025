"""The few DNS messages Caddy's dynamic upstreams ask the router's resolver (RFC 1035, 2782).

Owns the wire format and nothing else: `parse_query` reads one question from a datagram and
`answer` builds the reply from an upstream table. Pure functions, no sockets, no files.

Caddy asks two things: `SRV <app>.web.minipaas.` ("which dynos serve this app?", one record per
web dyno, target `dynos.minipaas.` and the dyno's port) and, to dial the target, `A`/`AAAA
dynos.minipaas.`. Run as root, Caddy finds that name in a private /etc/hosts of its own (see
`minipaas.router.caddy`) and never asks; otherwise the resolver answers for it too. (Go reads
/etc/hosts for an absolute name only if the file spells it with a dot, which rules out
`localhost`.)
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

TYPE_A = 1
TYPE_AAAA = 28
TYPE_SRV = 33
CLASS_IN = 1

RCODE_OK = 0
RCODE_FORMERR = 1
RCODE_SERVFAIL = 2
RCODE_NXDOMAIN = 3
RCODE_NOTIMP = 4

#: The zone the resolver is authoritative for, and the one target every SRV record names.
ZONE = "web.minipaas"
TARGET = "dynos.minipaas"
LOOPBACK = bytes((127, 0, 0, 1))

#: How long Caddy trusts an answer (its `refresh`), in milliseconds.
REFRESH_MS = 250

#: SRV records per answer: with the longest app name they still fit the 512 bytes of a plain
#: UDP answer (no truncation, no TCP). Apps with more web dynos are routed without DNS.
MAX_RECORDS = 20

_HEADER = struct.Struct("!6H")


@dataclass(frozen=True)
class Query:
    """One question: `id` and the raw question section are echoed back in the answer."""

    id: int
    name: str  # lower case, no trailing dot
    qtype: int
    qclass: int
    question: bytes
    recursion_desired: bool


def srv_name(app: str) -> str:
    """The name Caddy looks up for `app`'s web dynos (absolute: no search domains)."""
    return f"{app}.{ZONE}."


def asked_app(query: Query) -> str | None:
    """The app whose web dynos `query` asks for (`SRV <app>.web.minipaas.`), else None."""
    app, dot, zone = query.name.partition(".")
    if query.qtype != TYPE_SRV or query.qclass != CLASS_IN or not dot or zone != ZONE:
        return None
    return app


def parse_query(data: bytes) -> Query | None:
    """The first question of a standard query, or None for anything else (never raises)."""
    if len(data) < _HEADER.size:
        return None
    ident, flags, qdcount, _an, _ns, _ar = _HEADER.unpack_from(data)
    if flags & 0x8000 or (flags >> 11) & 0xF or qdcount < 1:
        return None  # a response, not a standard QUERY, or no question
    labels: list[str] = []
    offset = _HEADER.size
    while True:
        if offset >= len(data):
            return None
        length = data[offset]
        offset += 1
        if length == 0:
            break
        if length > 63 or offset + length > len(data):
            return None  # compression pointers are not used in questions
        try:
            labels.append(data[offset : offset + length].decode("ascii").lower())
        except UnicodeDecodeError:
            return None
        offset += length
    if offset + 4 > len(data):
        return None
    qtype, qclass = struct.unpack_from("!2H", data, offset)
    return Query(
        id=ident,
        name=".".join(labels),
        qtype=qtype,
        qclass=qclass,
        question=data[_HEADER.size : offset + 4],
        recursion_desired=bool(flags & 0x0100),
    )


def answer(
    query: Query,
    table: Mapping[str, Sequence[int]] | None,
    *,
    idle_port: int | None = None,
    ttl: int = 0,
) -> bytes:
    """The reply to `query` from `table` (app name → web dyno ports).

    A `table` of None means "not loaded yet": SERVFAIL, which Caddy treats as a failed lookup
    and answers from its previous result. An app without dynos, and a name that is no app
    (Caddy's catch-all app route asks for any host under the domain), get `idle_port`, where the
    resolver answers 503 "no web dynos" or 404 "no such app"; without an `idle_port` an unknown
    app is NXDOMAIN.
    """
    if query.qclass != CLASS_IN:
        return _reply(query, RCODE_NOTIMP)
    if query.name == TARGET:
        if query.qtype == TYPE_A:
            return _reply(query, RCODE_OK, [_record(TYPE_A, ttl, LOOPBACK)])
        return _reply(query, RCODE_OK)  # no AAAA: dynos listen on IPv4
    app, dot, zone = query.name.partition(".")
    if not dot or zone != ZONE:
        return _reply(query, RCODE_NXDOMAIN)
    if table is None:
        return _reply(query, RCODE_SERVFAIL)
    ports = table.get(app)
    if ports is None:
        if idle_port is None:
            return _reply(query, RCODE_NXDOMAIN)
        ports = []
    if query.qtype != TYPE_SRV:
        return _reply(query, RCODE_OK)
    if not ports and idle_port is not None:
        ports = [idle_port]
    # The first record spells the target out; the others point at it (RFC 1035 4.1.4).
    first_target = _HEADER.size + len(query.question) + 12 + 6
    records = [
        _record(
            TYPE_SRV,
            ttl,
            struct.pack("!3H", 0, 1, port)
            + (_name(TARGET) if i == 0 else struct.pack("!H", 0xC000 | first_target)),
        )
        for i, port in enumerate(list(ports)[:MAX_RECORDS])
    ]
    return _reply(query, RCODE_OK, records)


def _reply(query: Query, rcode: int, records: Sequence[bytes] = ()) -> bytes:
    # QR, authoritative, RD copied, no recursion available.
    flags = 0x8000 | 0x0400 | (0x0100 if query.recursion_desired else 0) | rcode
    header = _HEADER.pack(query.id, flags, 1, len(records), 0, 0)
    return header + query.question + b"".join(records)


def _record(rtype: int, ttl: int, rdata: bytes) -> bytes:
    # The owner name points back at the question's name (offset 12).
    return b"\xc0\x0c" + struct.pack("!2HIH", rtype, CLASS_IN, ttl, len(rdata)) + rdata


def _name(name: str) -> bytes:
    out = bytearray()
    for label in name.strip(".").split("."):
        raw = label.encode("ascii")
        out.append(len(raw))
        out += raw
    out.append(0)
    return bytes(out)
