"""The clients' streams over MINIPAAS_URL against a server that goes silent (a connection that
died without a FIN): with a read time limit the stream ends instead of waiting for ever.

The peer is a real TCP server on 127.0.0.1 that answers the head and one NDJSON line, then
holds the connection open and sends nothing.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from minipaas.client import ApiError, AsyncClient, Client

HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)
LINE = b'{"line": "first"}\n'


@pytest.fixture
def silent_server() -> Iterator[str]:
    """`http://127.0.0.1:PORT` of a server whose streams stop after one line."""
    listener = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()
    conns: list[socket.socket] = []

    def serve() -> None:
        listener.settimeout(0.1)
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conns.append(conn)
            conn.recv(65536)  # the request (small, one read)
            conn.sendall(HEAD + b"%x\r\n%s\r\n" % (len(LINE), LINE))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        done.set()
        thread.join(5)
        for conn in conns:
            conn.close()
        listener.close()


def test_a_silent_stream_ends_after_the_read_time_limit(silent_server: str) -> None:
    got = []
    started = time.monotonic()
    with Client(url=silent_server, token="t") as client, pytest.raises(httpx.ReadTimeout):
        for item in client.stream("GET", "/api/apps/a/logs", read_timeout=0.3):
            got.append(item)
    assert got == [{"line": "first"}]
    assert time.monotonic() - started < 5


async def test_the_tuis_silent_stream_ends_as_unreachable(silent_server: str) -> None:
    got = []
    client = AsyncClient(url=silent_server, token="t")
    try:
        with pytest.raises(ApiError) as raised:
            async with asyncio.timeout(5):
                async for item in client.stream("GET", "/api/apps/a/logs", read_timeout=0.3):
                    got.append(item)
    finally:
        await client.aclose()
    assert got == [{"line": "first"}]
    assert raised.value.status == 0 and "Cannot reach" in str(raised.value)
