"""A peer that goes quiet: a TCP server on 127.0.0.1 that accepts connections, answers each one
(or not) once, then holds it open without another byte, as a host or network that died does.

Owns: `silent_server`, a context manager; everything it opened is closed when it exits.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def silent_server(answer: bytes = b"") -> Iterator[int]:
    """The port of a server that, on each connection, reads the request and sends `answer`
    (with an empty `answer`: reads and sends nothing), then stays silent until the end."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    done = threading.Event()
    held: list[socket.socket] = []

    def serve() -> None:
        while not done.is_set():
            try:
                conn = listener.accept()[0]
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)
            if answer:
                conn.recv(65536)  # the request (small: one read)
                conn.sendall(answer)

    thread = threading.Thread(target=serve, name="silent-server", daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        done.set()
        thread.join(5)
        for conn in held:
            conn.close()
        listener.close()
