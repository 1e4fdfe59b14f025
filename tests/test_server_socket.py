"""The API's TCP listener: answers on kept-alive connections must not wait for Nagle."""

from __future__ import annotations

import asyncio
import socket

from minipaas.server import _tcp_socket


async def test_connections_accepted_on_the_api_socket_have_nodelay() -> None:
    """asyncio turns TCP_NODELAY on only for sockets created as IPPROTO_TCP; without it every
    answer on a kept-alive connection (Caddy's, a remote CLI's) waited ~40 ms for an ACK."""
    listener = _tcp_socket(0)
    seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def handle(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(handle, sock=listener)
    try:
        port = listener.getsockname()[1]
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(seen, 10) != 0
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
