"""Free ports and polling with a deadline, for tests that start real servers.

Owns: picking a free 127.0.0.1 port and waiting for a condition without fixed sleeps.
Must not touch: anything outside the calling test (no processes, no files).
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, overload

T = TypeVar("T")


#: Every port `free_port` has handed out in this process.
_GIVEN: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the kernel's pick for port 0), and never one
    this process was given before: the kernel may pick the same port twice in a row, and the
    HTTP and HTTPS ports of one server then collide (seen in a full run: Caddy refused the
    config, "listener address repeated").

    Another process can still grab it before you bind, so servers started on it should
    retry with a fresh port when the bind fails.
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port: int = sock.getsockname()[1]
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port
    raise RuntimeError("the kernel gave only ports handed out before, 100 times")


def is_listening(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """True when a TCP connect to host:port succeeds right now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _describe(predicate: object, message: str | None) -> str:
    if message:
        return message
    return getattr(predicate, "__qualname__", None) or repr(predicate)


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.05,
    *,
    message: str | None = None,
) -> T:
    """Call `predicate` until it returns a truthy value, and return that value.

    It is always called at least once, and once more at the deadline. Exceptions from the
    predicate propagate (catch them inside it if they mean "not yet"). Raises TimeoutError
    naming `message` (or the predicate) and its last value.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(
                f"Timed out after {timeout:g}s waiting for {_describe(predicate, message)} "
                f"(last value: {value!r})."
            )
        time.sleep(min(interval, remaining))


@overload
async def async_wait_for(
    predicate: Callable[[], Awaitable[T]],
    timeout: float = ...,
    interval: float = ...,
    *,
    message: str | None = ...,
) -> T: ...


@overload
async def async_wait_for(
    predicate: Callable[[], T],
    timeout: float = ...,
    interval: float = ...,
    *,
    message: str | None = ...,
) -> T: ...


async def async_wait_for(
    predicate: Callable[[], object],
    timeout: float = 10.0,
    interval: float = 0.05,
    *,
    message: str | None = None,
) -> object:
    """`wait_for` for async tests: the predicate may be sync or async; never blocks the loop."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(
                f"Timed out after {timeout:g}s waiting for {_describe(predicate, message)} "
                f"(last value: {value!r})."
            )
        await asyncio.sleep(min(interval, remaining))
