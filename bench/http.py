"""A small asyncio HTTP/1.1 client and load generator for the benchmarks (loopback only).

Owns: keep-alive connections to 127.0.0.1 with an explicit Host header and, for HTTPS, SNI
(`*.localhost` names do not resolve through Python's getaddrinfo, so we never resolve them), a
closed-loop or paced load generator that counts every non-2xx answer and every connection error
as a failure, and latency percentiles. Must not touch: anything but the loopback interface.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Target:
    """Where requests go: a loopback port, the Host header, and TLS (with SNI = host) or not."""

    port: int
    host: str
    tls: ssl.SSLContext | None = None

    @classmethod
    def https(cls, port: int, host: str, ca: Path) -> Target:
        return cls(port, host, ssl.create_default_context(cafile=str(ca)))


class HTTPError(Exception):
    """A malformed or truncated answer."""


class Connection:
    """One keep-alive HTTP/1.1 connection; reconnects lazily after an error or a close."""

    def __init__(self, target: Target, timeout: float = 10.0) -> None:
        self.target = target
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        #: Whether the last request went out on a connection that had answered before: a reset
        #: there is the keep-alive race (the server closed an idle connection as we reused it).
        self.last_reused = False

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        t = self.target
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                LOOPBACK, t.port, ssl=t.tls, server_hostname=t.host if t.tls else None
            ),
            self.timeout,
        )
        self._reader, self._writer = reader, writer
        return reader, writer

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def get(self, path: str = "/") -> tuple[int, bytes]:
        if self._reader is not None and self._reader.at_eof():
            # The server closed this idle connection (a FIN is in): open a new one, as urllib3,
            # Go's net/http and browsers do. A close that crosses our request still fails.
            self.close()
        self.last_reused = self._reader is not None
        try:
            return await asyncio.wait_for(self._get(path), self.timeout)
        except BaseException:
            self.close()
            raise

    async def _get(self, path: str) -> tuple[int, bytes]:
        if self._reader is None or self._writer is None:
            reader, writer = await self._open()
        else:
            reader, writer = self._reader, self._writer
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {self.target.host}\r\nUser-Agent: minipaas-bench\r\n"
            "\r\n".encode()
        )
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise HTTPError(f"bad status line {lines[0]!r}")
        status = int(parts[1])
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = await _read_chunked(reader)
        elif "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        else:
            body = await reader.read()
            self.close()
            return status, body
        if headers.get("connection", "").lower() == "close" or parts[0] == "HTTP/1.0":
            self.close()
        return status, body


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";")[0].strip(), 16)
        if size == 0:
            await reader.readuntil(b"\r\n")  # the empty trailer
            return bytes(body)
        body += await reader.readexactly(size)
        await reader.readexactly(2)


async def fetch(target: Target, path: str = "/", within: float = 10.0) -> tuple[int, bytes]:
    """One request on a fresh connection."""
    conn = Connection(target, within)
    try:
        return await conn.get(path)
    finally:
        conn.close()


async def wait_for_body(
    target: Target, expected: bytes, within: float, interval: float = 0.01
) -> float:
    """Poll until a 200 answer contains `expected`; returns the perf_counter time it was seen."""
    conn = Connection(target, timeout=5.0)
    deadline = time.perf_counter() + within
    last = "nothing yet"
    try:
        while True:
            try:
                status, body = await conn.get("/")
                if status == 200 and expected in body:
                    return time.perf_counter()
                last = f"{status} {body[:80]!r}"
            except (TimeoutError, OSError, asyncio.IncompleteReadError, HTTPError) as exc:
                last = type(exc).__name__
                conn.close()
            if time.perf_counter() >= deadline:
                raise TimeoutError(
                    f"{target.host} never answered {expected!r} within {within:g} s "
                    f"(last: {last})."
                )
            await asyncio.sleep(interval)
    finally:
        conn.close()


@dataclass
class LoadResult:
    ok: int = 0
    failed: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    bodies: Counter[bytes] = field(default_factory=Counter)

    @property
    def rps(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        return percentile(self.latencies, q)


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


async def load(
    target: Target,
    *,
    connections: int,
    duration: float | None = None,
    stop: asyncio.Event | None = None,
    rate: float | None = None,
    path: str = "/",
    keep_bodies: bool = False,
    max_seconds: float = 600.0,
) -> LoadResult:
    """Requests on `connections` keep-alive connections until `duration` passes or `stop` is set.

    Closed loop (each connection sends its next request as soon as the answer is in) unless
    `rate` (requests/s, all connections together) paces it. Every non-2xx answer and every
    connection error (refused, reset, timeout, truncated) counts as one failure.
    """
    result = LoadResult()
    start = time.perf_counter()
    end = start + min(duration if duration is not None else max_seconds, max_seconds)
    interval = connections / rate if rate else 0.0

    def done() -> bool:
        return time.perf_counter() >= end or (stop is not None and stop.is_set())

    async def worker(n: int) -> None:
        conn = Connection(target, timeout=10.0)
        sent = 0
        try:
            while not done():
                if interval:
                    due = start + (sent + n / connections) * interval
                    delay = due - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                        if done():
                            break
                sent += 1
                t0 = time.perf_counter()
                try:
                    status, body = await conn.get(path)
                except (
                    TimeoutError,
                    OSError,
                    asyncio.IncompleteReadError,
                    asyncio.LimitOverrunError,
                    HTTPError,
                    ValueError,
                ) as exc:
                    result.failed += 1
                    reused = " on a reused keep-alive connection" if conn.last_reused else ""
                    result.errors[type(exc).__name__ + reused] += 1
                    conn.close()
                    if not interval:
                        await asyncio.sleep(0.005)  # no busy loop against a refusing port
                    continue
                if 200 <= status < 300:
                    result.ok += 1
                    result.latencies.append(time.perf_counter() - t0)
                    if keep_bodies:
                        result.bodies[body] += 1
                else:
                    result.failed += 1
                    result.errors[f"HTTP {status}"] += 1
        finally:
            conn.close()

    await asyncio.gather(*(worker(n) for n in range(connections)))
    result.seconds = time.perf_counter() - start
    return result
