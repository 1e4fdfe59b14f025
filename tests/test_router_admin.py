"""CaddyAdmin's handling of an admin socket that drops a /load without answering.

Caddy replaces its admin server while it applies a configuration (and again when it rolls a
failed one back); under load the answer to the /load can be lost with the old server. A fake
admin socket stands in for that moment here, because a real Caddy does it only by chance (seen
once, in a full test run on a loaded machine); the real Caddy's /load paths are tested in
tests/test_router_caddy.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from minipaas.router.admin import CaddyAdmin
from minipaas.router.errors import RouterError

Answer = Callable[[int], bytes | None]  # the nth request (from 1) -> the raw answer, or drop


async def _fake_admin(path: Path, answer: Answer) -> tuple[asyncio.Server, list[bytes]]:
    """A unix-socket HTTP server: reads one request per connection, then answers or closes."""
    bodies: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ),
            0,
        )
        bodies.append(await reader.readexactly(length))
        raw = answer(len(bodies))
        if raw is not None:
            writer.write(raw)
            await writer.drain()
        writer.close()

    return await asyncio.start_unix_server(handle, path=str(path)), bodies


def _http(status: str, body: bytes) -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


@pytest.fixture
def socket_path(tmp_path: Path) -> Path:
    return tmp_path / "admin.sock"


async def test_a_load_whose_answer_was_dropped_is_sent_again(socket_path: Path) -> None:
    server, bodies = await _fake_admin(
        socket_path, lambda n: None if n == 1 else _http("200 OK", b"")
    )
    admin = CaddyAdmin(socket_path, timeout=5)
    try:
        await admin.load({"apps": {}})
    finally:
        await admin.aclose()
        server.close()
    assert bodies == [b'{"apps":{}}'] * 2


async def test_the_second_answer_says_why_a_dropped_load_failed(socket_path: Path) -> None:
    refused = _http("400 Bad Request", b'{"error":"listen tcp :80: address already in use"}')
    server, bodies = await _fake_admin(socket_path, lambda n: None if n == 1 else refused)
    admin = CaddyAdmin(socket_path, timeout=5)
    try:
        with pytest.raises(RouterError, match=r"\(400\): listen tcp :80: address already in use"):
            await admin.load({"apps": {}})
    finally:
        await admin.aclose()
        server.close()
    assert len(bodies) == 2


async def test_a_load_dropped_twice_is_an_error_naming_the_socket(socket_path: Path) -> None:
    server, bodies = await _fake_admin(socket_path, lambda n: None)
    admin = CaddyAdmin(socket_path, timeout=5)
    try:
        with pytest.raises(RouterError, match=r"did not answer POST /load: [^.]"):
            await admin.load({"apps": {}})
    finally:
        await admin.aclose()
        server.close()
    assert len(bodies) == 2  # once again, not for ever


async def test_other_requests_are_not_sent_twice(socket_path: Path) -> None:
    server, bodies = await _fake_admin(socket_path, lambda n: None)
    admin = CaddyAdmin(socket_path, timeout=5)
    try:
        assert await admin.ping() is False
    finally:
        await admin.aclose()
        server.close()
    assert bodies == [b""]
