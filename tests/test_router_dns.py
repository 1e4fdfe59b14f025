"""The router resolver's DNS messages (pure) and its serving loop over a real UDP socket."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import threading
from pathlib import Path

import pytest

from minipaas.router import dns
from minipaas.router.resolver import (
    PROTOCOL,
    SWITCH_DELAY,
    ResolverProcess,
    bind_sockets,
    http_response,
    parse_answered,
    read_table,
    serve,
    stop_orphan,
)


def query(name: str, qtype: int, ident: int = 0x1234, flags: int = 0x0100) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.strip(".").split("."))
    return (
        struct.pack("!6H", ident, flags, 1, 0, 0, 0)
        + labels
        + b"\0"
        + struct.pack("!2H", qtype, dns.CLASS_IN)
    )


def decode(reply: bytes) -> tuple[int, int, list[tuple[int, bytes]]]:
    """(id, rcode, [(type, rdata)]) of a reply whose answers point at the question name."""
    ident, flags, qd, an, _ns, _ar = struct.unpack_from("!6H", reply)
    assert flags & 0x8000 and qd == 1
    offset = 12
    while reply[offset]:
        offset += reply[offset] + 1
    offset += 5
    answers = []
    for _ in range(an):
        assert reply[offset : offset + 2] == b"\xc0\x0c"
        rtype, _cls, _ttl, length = struct.unpack_from("!2HIH", reply, offset + 2)
        answers.append((rtype, reply[offset + 12 : offset + 12 + length]))
        offset += 12 + length
    assert offset == len(reply)
    return ident, flags & 0xF, answers


TABLE = {"shop": [20001, 20002]}


def test_srv_answer_lists_each_dyno_port_with_the_one_target() -> None:
    q = dns.parse_query(query(dns.srv_name("shop"), dns.TYPE_SRV))
    assert q is not None and q.name == "shop.web.minipaas"
    ident, rcode, answers = decode(dns.answer(q, TABLE))
    assert (ident, rcode) == (0x1234, dns.RCODE_OK)
    ports = [struct.unpack_from("!3H", rdata)[2] for _t, rdata in answers]
    assert ports == [20001, 20002]
    assert answers[0][1][6:] == b"\x05dynos\x08minipaas\x00"
    # the second target is a pointer to the first one
    pointer = struct.unpack("!H", answers[1][1][6:])[0]
    assert pointer & 0xC000 and reply_at(q, pointer & 0x3FFF) == b"\x05dynos\x08minipaas\x00"


def reply_at(q: dns.Query, offset: int) -> bytes:
    reply = dns.answer(q, TABLE)
    return reply[offset : reply.index(b"\0", offset) + 1]


def test_the_target_is_ipv4_loopback_only() -> None:
    a = dns.parse_query(query("dynos.minipaas.", dns.TYPE_A))
    aaaa = dns.parse_query(query("DYNOS.minipaas", dns.TYPE_AAAA))
    assert a is not None and aaaa is not None
    assert decode(dns.answer(a, TABLE))[2] == [(dns.TYPE_A, bytes([127, 0, 0, 1]))]
    assert decode(dns.answer(aaaa, TABLE))[1:] == (dns.RCODE_OK, [])


@pytest.mark.parametrize(
    ("name", "table", "rcode"),
    [
        ("other.web.minipaas", TABLE, dns.RCODE_NXDOMAIN),  # unknown app
        ("shop.example.com", TABLE, dns.RCODE_NXDOMAIN),  # not our zone
        ("web.minipaas", TABLE, dns.RCODE_NXDOMAIN),
        ("shop.web.minipaas", None, dns.RCODE_SERVFAIL),  # no table yet: Caddy keeps its last
    ],
)
def test_names_we_cannot_answer(name: str, table: dict[str, list[int]] | None, rcode: int) -> None:
    q = dns.parse_query(query(name, dns.TYPE_SRV))
    assert q is not None
    assert decode(dns.answer(q, table))[1:] == (rcode, [])


def test_unknown_app_points_at_the_resolvers_own_port_when_it_has_one() -> None:
    # Caddy's catch-all route asks for any label; the own port then answers 404 for it.
    q = dns.parse_query(query("other.web.minipaas", dns.TYPE_SRV))
    assert q is not None
    _id, rcode, answers = decode(dns.answer(q, TABLE, idle_port=5353))
    assert rcode == dns.RCODE_OK
    assert [struct.unpack_from("!3H", r)[2] for _t, r in answers] == [5353]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00" * 11,
        query("shop.web.minipaas", dns.TYPE_SRV, flags=0x8100),  # a response
        query("shop.web.minipaas", dns.TYPE_SRV, flags=0x2800),  # opcode UPDATE
        query("shop.web.minipaas", dns.TYPE_SRV)[:-3],  # truncated question
        struct.pack("!6H", 1, 0, 1, 0, 0, 0) + b"\x40" + b"a" * 64 + b"\0\0\x21\0\1",
        struct.pack("!6H", 1, 0, 1, 0, 0, 0) + b"\x03\xff\xfe\xfd\0\0\x21\0\1",
    ],
)
def test_garbage_is_ignored(data: bytes) -> None:
    assert dns.parse_query(data) is None


def test_many_dynos_fit_one_datagram() -> None:
    q = dns.parse_query(query(dns.srv_name("a" * 30), dns.TYPE_SRV))
    assert q is not None
    reply = dns.answer(q, {"a" * 30: list(range(20000, 20100))})
    assert len(reply) <= 512
    assert len(decode(reply)[2]) == dns.MAX_RECORDS
    longest = dns.parse_query(query(dns.srv_name("a" * 30), dns.TYPE_SRV))
    assert longest is not None
    assert len(dns.answer(longest, {"a" * 30: list(range(20000, 20100))})) <= 512


def test_serving_loop_follows_the_table_file(tmp_path: Path) -> None:
    table_file = tmp_path / "upstreams.json"
    server, http = bind_sockets(0)  # retries until UDP and TCP share a free port
    threading.Thread(target=serve, args=(server, http, table_file), daemon=True).start()
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.settimeout(5)
    client.connect(server.getsockname())

    def ask() -> tuple[int, list[int]]:
        client.send(query("shop.web.minipaas", dns.TYPE_SRV))
        _id, rcode, answers = decode(client.recv(512))
        return rcode, [struct.unpack_from("!3H", r)[2] for _t, r in answers]

    assert ask() == (dns.RCODE_SERVFAIL, [])
    process = ResolverProcess(tmp_path)
    assert process.publish({"shop": [20002, 20001]}) == set()  # new app: nothing was cached
    assert ask() == (dns.RCODE_OK, [20001, 20002])
    assert process.publish({"shop": [20001, 20002], "cart": []}) == set()  # same set, new app
    assert process.publish({"shop": [20003], "cart": []}) == {"shop"}  # moved: may need a wait
    assert ask() == (dns.RCODE_OK, [20003])
    assert read_table(table_file) == {"cart": [], "shop": [20003]}
    table_file.write_text("{not json")
    assert ask() == (dns.RCODE_SERVFAIL, [])
    client.send(b"garbage")  # ignored; the loop keeps answering
    table_file.write_text(json.dumps({"shop": [1, "x", 70000]}))
    os.utime(table_file, ns=(1, 1))
    assert ask() == (dns.RCODE_OK, [1])

    # An app without dynos points at the resolver's own port, which answers 503 over HTTP.
    process.publish({"shop": []})
    own = server.getsockname()[1]
    assert ask() == (dns.RCODE_OK, [own])
    with socket.create_connection(("127.0.0.1", own), timeout=5) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: shop.example.com:8443\r\n\r\n")
        reply = b""
        while chunk := conn.recv(4096):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 404 ")  # no app header: not a request Caddy proxied
    with socket.create_connection(("127.0.0.1", own), timeout=5) as conn:
        conn.sendall(
            b"GET / HTTP/1.1\r\nHost: shop.example.com:8443\r\nX-Minipaas-App: shop\r\n\r\n"
        )
        reply = b""
        while chunk := conn.recv(4096):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 503 ")
    assert reply.endswith(b"no web dynos running for 'shop.example.com'.\n")
    # a client that never sends its request does not stop the others from being answered
    with socket.create_connection(("127.0.0.1", own), timeout=5):
        assert ask() == (dns.RCODE_OK, [own])


@pytest.mark.parametrize(
    ("head", "named"),
    [
        (
            b"GET / HTTP/1.1\r\nHOST: Web.Localhost\r\nX-Minipaas-App: web\r\n\r\n",
            b"'web.localhost'",
        ),
        (b"GET / HTTP/1.1\r\nHost: [::1]:8443\r\nX-Minipaas-App: web\r\n\r\n", b"'[::1]:8443'"),
        (b"GET / HTTP/1.1\r\nHost: <script>\r\nX-Minipaas-App: web\r\n\r\n", b"this app"),
        (b"GET / HTTP/1.1\r\nX-Minipaas-App: WEB\r\n\r\n", b"this app"),
    ],
)
def test_no_dynos_answer_names_the_host_only_when_it_is_a_host(head: bytes, named: bytes) -> None:
    response = http_response(head, {"web": []})
    status, _sep, rest = response.partition(b"\r\n")
    headers, _sep, body = rest.partition(b"\r\n\r\n")
    assert status == b"HTTP/1.1 503 Service Unavailable"
    assert b"Content-Length: %d" % len(body) in headers
    assert b"Retry-After: 30" in headers
    assert named in body


def test_a_name_that_is_no_app_is_404() -> None:
    head = b"GET / HTTP/1.1\r\nHost: nope.localhost:8443\r\nX-Minipaas-App: nope\r\n\r\n"
    response = http_response(head, {"web": []})
    assert response.startswith(b"HTTP/1.1 404 Not Found\r\n")
    assert response.endswith(b"\r\n\r\n404 Not Found: no app is served at nope.localhost.\n")
    assert b"Retry-After" not in response


@pytest.mark.parametrize(
    ("target", "status"),
    [
        (b"/ask/localhost?domain=web.localhost", 200),
        (b"/ask/localhost?domain=WEB.localhost", 200),
        (b"/ask/localhost?domain=nope.localhost", 403),  # no such app
        (b"/ask/localhost?domain=web.example.com", 403),  # not under the domain
        (b"/ask/localhost?domain=a.web.localhost", 403),  # one label only
        (b"/ask/localhost?domain=localhost", 403),
        (b"/ask/localhost", 403),
        (b"/ask/localhost?domain=web.localhost&domain=x", 403),  # ambiguous
        (b"/other?domain=web.localhost", 404),
    ],
)
def test_on_demand_tls_permission(target: bytes, status: int) -> None:
    """Caddy asks before it issues a certificate for a name it has not seen."""
    response = http_response(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % target, {"web": [1]})
    assert response.startswith(b"HTTP/1.1 %d " % status)


def test_a_proxied_request_is_never_taken_for_a_permission_question() -> None:
    head = b"GET /ask/localhost?domain=web.localhost HTTP/1.1\r\nX-Minipaas-App: web\r\n\r\n"
    assert http_response(head, {"web": []}).startswith(b"HTTP/1.1 503 ")


def test_a_resolver_of_another_protocol_is_replaced_on_its_port(tmp_path: Path) -> None:
    """One left by an older minipaas (no `protocol` in resolver.json) would answer NXDOMAIN
    for the catch-all route's names: it is stopped, and a new one takes its port."""
    from minipaas.router import pidfile

    udp, tcp = bind_sockets(0)  # a port free for both, as the resolver needs
    port = udp.getsockname()[1]
    udp.close()
    tcp.close()
    old = subprocess.Popen(["sleep", "60"], start_new_session=True)
    process = ResolverProcess(tmp_path)
    try:
        pidfile.record(process.state_file, old.pid, port=port)
        assert process.adopt() is None
        assert old.wait(timeout=10) is not None  # stopped by pid
        pid = process.start()
        assert pid != old.pid
        assert process.address == f"127.0.0.1:{port}"
        assert json.loads(process.state_file.read_text())["protocol"] == PROTOCOL
        assert ResolverProcess(tmp_path).adopt() == pid  # the same protocol is adopted
    finally:
        old.kill()
        old.wait()
        stop_orphan(tmp_path)


def test_answered_tells_how_long_ago_an_app_was_last_answered() -> None:
    head = b"GET /answered/%s HTTP/1.1\r\nHost: resolver\r\n\r\n"
    answered = {"web": 100.0}
    assert parse_answered(http_response(head % b"web", {}, answered, now=100.25)) == 0.25
    assert parse_answered(http_response(head % b"WEB", {}, answered, now=100.25)) == 0.25
    assert parse_answered(http_response(head % b"shop", {}, answered, now=100.25)) == float("inf")
    assert parse_answered(http_response(head % b"web", {"web": [1]})) == float("inf")
    # Caddy's proxied requests never reach this question, whatever their path.
    proxied = b"GET /answered/web HTTP/1.1\r\nX-Minipaas-App: web\r\n\r\n"
    assert http_response(proxied, {"web": []}, answered, now=100.25).startswith(b"HTTP/1.1 503 ")


@pytest.mark.parametrize(
    "reply",
    [
        b"",
        b"HTTP/1.1 404 Not Found\r\n\r\nno",
        b"HTTP/1.1 200 OK\r\n\r\n200 OK: soon.\n",
        b"HTTP/1.1 200 OK\r\n\r\n200 OK: -1.\n",
        b"HTTP/1.1 200 OK\r\n\r\n200 OK: nan.\n",
    ],
)
def test_an_answer_that_says_nothing_means_wait_the_whole_delay(reply: bytes) -> None:
    assert parse_answered(reply) == 0.0


async def test_a_switch_waits_only_while_caddy_may_hold_an_older_answer(tmp_path: Path) -> None:
    """The real resolver process: an app it never answered about switches at once; one it has
    just answered about waits out the rest of `SWITCH_DELAY`; one it cannot be asked about
    waits all of it."""
    process = ResolverProcess(tmp_path)
    process.start()
    try:
        process.publish({"fresh": [], "busy": [20001]})
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client.settimeout(5)
        with client:
            client.connect(("127.0.0.1", int(process.address.rpartition(":")[2])))
            client.send(query(dns.srv_name("busy"), dns.TYPE_SRV))
            assert decode(client.recv(512))[1] == dns.RCODE_OK
            client.send(query("dynos.minipaas.", dns.TYPE_A))  # not about an app
            assert decode(client.recv(512))[1] == dns.RCODE_OK
        assert process.publish({"fresh": [20002], "busy": [20003]}) == {"fresh", "busy"}
        assert await process.settle_time({"fresh"}) == 0.0
        assert await process.settle_time(set()) == 0.0
        waits = await process.settle_time({"fresh", "busy"})
        assert 0 < waits <= SWITCH_DELAY
        assert await process.settle_time({"localhost"}) == 0.0
    finally:
        await process.terminate()
    assert await process.settle_time({"fresh"}) == SWITCH_DELAY  # nobody answers the question
