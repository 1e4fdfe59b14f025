"""The clients' streams over MINIPAAS_URL against a server that goes silent (a connection that
died without a FIN): with a read time limit the stream ends instead of waiting for ever.

The peer is a real TCP server on 127.0.0.1 that answers the head and one NDJSON line, then
holds the connection open and sends nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from minipaas.client import ApiError, AsyncClient, Client
from tests.support.silent import silent_server

HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)
LINE = b'{"line": "first"}\n'


@pytest.fixture
def silent_url() -> Iterator[str]:
    """`http://127.0.0.1:PORT` of a server whose streams stop after one line."""
    with silent_server(HEAD + b"%x\r\n%s\r\n" % (len(LINE), LINE)) as port:
        yield f"http://127.0.0.1:{port}"


def test_a_silent_stream_ends_after_the_read_time_limit(silent_url: str) -> None:
    got = []
    started = time.monotonic()
    with Client(url=silent_url, token="t") as client, pytest.raises(httpx.ReadTimeout):
        for item in client.stream("GET", "/api/apps/a/logs", read_timeout=0.3):
            got.append(item)
    assert got == [{"line": "first"}]
    assert time.monotonic() - started < 5


async def test_the_tuis_silent_stream_ends_as_unreachable(silent_url: str) -> None:
    got = []
    client = AsyncClient(url=silent_url, token="t")
    try:
        with pytest.raises(ApiError) as raised:
            async with asyncio.timeout(5):
                async for item in client.stream("GET", "/api/apps/a/logs", read_timeout=0.3):
                    got.append(item)
    finally:
        await client.aclose()
    assert got == [{"line": "first"}]
    assert raised.value.status == 0 and "Cannot reach" in str(raised.value)
