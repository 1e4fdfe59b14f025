"""Log drains at work: one forwarder per drain copies its app's new log lines to the drain.

Each forwarder follows the app's logs (`LogStore.follow`, every source) into a bounded buffer and
sends from it: syslog drains over one kept TCP or TLS connection, HTTPS drains in POSTed
batches. A drain that is down or slow costs nothing but that buffer: lines wait in it (retried
with a backoff from 1 s to 30 s) and, when it is full, the oldest go and the drain gets Heroku's
`Error L10 (output buffer overflow)` line saying how many. Nothing is written back into the
app's log about a drain (it would flow into the drain again); `status` says how each one fares
and `minipaas drains` shows it. Delivery is at most once: lines in flight when a connection
breaks, or still buffered when the server stops, are lost, as with Heroku's drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import ssl
import sys
import time
import traceback
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from minipaas.drains.url import DrainUrl, syslog_frame
from minipaas.logs import LogStore

#: Frames buffered per drain while it is down or slow (the oldest go beyond this).
MAX_BUFFER = 10_000
#: Frames per HTTPS POST (and per syslog write).
BATCH = 500
CONNECT_TIMEOUT = 10.0
SEND_TIMEOUT = 30.0
RETRY_FIRST, RETRY_CAP = 1.0, 30.0


@dataclass(frozen=True)
class DrainSpec:
    """A drain as the store has it: its app, its token (`d.…`) and its URL."""

    app: str
    token: str
    url: DrainUrl


@dataclass
class DrainStatus:
    """How a drain fares (since the server started)."""

    delivered: int = 0
    dropped: int = 0
    #: Set while deliveries fail: since when (epoch seconds) and the latest error.
    failing_since: float | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "delivered": self.delivered,
            "dropped": self.dropped,
            "failing_since": self.failing_since,
            "error": self.error,
        }


class DrainFailed(Exception):
    """A delivery did not happen; the message says why in a few words."""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, DrainFailed):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({exc.verify_message})"
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)  # asyncio's "Connect call failed (…)" says less
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


class _Forwarder:
    """Copies one app's new log lines to one drain."""

    def __init__(self, spec: DrainSpec, logs: LogStore) -> None:
        self.spec = spec
        self.logs = logs
        self.status = DrainStatus()
        self._buffer: deque[tuple[int, bytes]] = deque()
        self._seq = itertools.count(1)
        self._unreported = 0  # lines dropped since the last L10 line
        self._wake = asyncio.Event()
        #: Set once the app's new lines are being caught (`Drains.reload` waits for it).
        self.subscribed = asyncio.Event()
        self._ended = False
        self._stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._http: Any = None  # an httpx.AsyncClient, made on the first HTTPS delivery

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._read())
                tasks.create_task(self._send())
        finally:
            await self._disconnect()
            if self._http is not None:
                await self._http.aclose()

    async def _read(self) -> None:
        try:
            follow = self.logs.follow_batches(self.spec.app, subscribed=self.subscribed.set)
            async for batch in follow:
                for line in batch or ():
                    if len(self._buffer) >= MAX_BUFFER:
                        self._buffer.popleft()
                        self.status.dropped += 1
                        self._unreported += 1
                    frame = syslog_frame(line.ts, line.app, line.source, line.dyno, line.text)
                    self._buffer.append((next(self._seq), frame))
                self._wake.set()
        finally:
            self._ended = True  # the app was destroyed or the server is stopping
            self._wake.set()

    async def _send(self) -> None:
        delay = RETRY_FIRST
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._buffer:
                batch = list(itertools.islice(self._buffer, BATCH))
                frames = [frame for _seq, frame in batch]
                reported = self._unreported
                if reported:
                    frames.insert(0, self._overflow_line(reported))
                try:
                    await self._deliver(frames)
                except (OSError, TimeoutError, DrainFailed) as exc:
                    await self._disconnect()
                    if self.status.failing_since is None:
                        self.status.failing_since = time.time()
                    self.status.error = _describe(exc)
                    await asyncio.sleep(delay)
                    delay = min(RETRY_CAP, delay * 2)
                    continue
                delay = RETRY_FIRST
                self.status.failing_since = self.status.error = None
                self.status.delivered += len(batch)
                self._unreported -= reported
                last = batch[-1][0]
                while self._buffer and self._buffer[0][0] <= last:  # some may have been dropped
                    self._buffer.popleft()
            if self._ended:
                return

    def _overflow_line(self, dropped: int) -> bytes:
        return syslog_frame(
            datetime.now(UTC), self.spec.app, "minipaas", "drain",
            f"Error L10 (output buffer overflow): {dropped} messages dropped "
            "because this drain fell behind",
        )

    async def _deliver(self, frames: list[bytes]) -> None:
        if self.spec.url.scheme == "https":
            await self._post(frames)
            return
        if self._stream is not None and self._stream[0].at_eof():
            await self._disconnect()  # the receiver closed it: send on a new one
        if self._stream is None:
            url = self.spec.url
            self._stream = await asyncio.wait_for(
                asyncio.open_connection(
                    url.host, url.port, ssl=_tls_context() if url.tls else None,
                    limit=4096,
                ),
                CONNECT_TIMEOUT,
            )
        writer = self._stream[1]
        writer.write(b"".join(frames))
        await asyncio.wait_for(writer.drain(), SEND_TIMEOUT)

    async def _post(self, frames: list[bytes]) -> None:
        import httpx

        if self._http is None:
            self._http = httpx.AsyncClient(
                verify=_tls_context(), timeout=httpx.Timeout(SEND_TIMEOUT, connect=CONNECT_TIMEOUT)
            )
        try:
            response = await self._http.post(
                self.spec.url.url,
                content=b"".join(frames),
                headers={
                    "Content-Type": "application/logplex-1",
                    "Logplex-Msg-Count": str(len(frames)),
                    "Logplex-Frame-Id": uuid.uuid4().hex,
                    "Logplex-Drain-Token": self.spec.token,
                    "User-Agent": "minipaas-drain",
                },
            )
        except httpx.HTTPError as exc:
            # httpx wraps httpcore's error, which wraps the socket's or TLS's: say the last.
            cause: BaseException = exc
            while cause.__cause__ is not None or cause.__context__ is not None:
                cause = cause.__cause__ or cause.__context__  # type: ignore[assignment]
            raise DrainFailed(_describe(cause)) from exc
        if not 200 <= response.status_code < 300:
            raise DrainFailed(f"answered HTTP {response.status_code}")

    async def _disconnect(self) -> None:
        if self._stream is not None:
            writer = self._stream[1]
            self._stream = None
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 2)


def _report_failure(task: asyncio.Task[None]) -> None:
    """A forwarder died of a bug: the traceback goes to the server's log (the next `reload`,
    at the next drains:add/remove, starts it again)."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        print("minipaas: a log drain's forwarder failed:", file=sys.stderr, flush=True)
        traceback.print_exception(exc, file=sys.stderr)


def _tls_context() -> ssl.SSLContext:
    """The system's CAs (or `SSL_CERT_FILE`), TLS 1.2 or later, host names checked."""
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


@dataclass
class Drains:
    """Every app's drains: `reload` makes the running forwarders match `load()`."""

    logs: LogStore
    load: Callable[[], Awaitable[list[DrainSpec]]]
    _running: dict[str, tuple[_Forwarder, asyncio.Task[None]]] = field(default_factory=dict)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def reload(self) -> None:
        async with self._lock:
            wanted = {spec.token: spec for spec in await self.load()}
            for token in [t for t in self._running if t not in wanted]:
                await self._stop(token)
            for token, spec in wanted.items():
                running = self._running.get(token)
                if running is not None and not running[1].done():
                    if running[0].spec == spec:
                        continue
                    await self._stop(token)  # its app was renamed: follow the new name
                forwarder = _Forwarder(spec, self.logs)
                task = asyncio.get_running_loop().create_task(forwarder.run())
                task.add_done_callback(_report_failure)
                self._running[token] = (forwarder, task)
                # A line logged once drains:add has answered must reach the drain.
                subscribed = asyncio.ensure_future(forwarder.subscribed.wait())
                await asyncio.wait([subscribed, task], return_when=asyncio.FIRST_COMPLETED)
                subscribed.cancel()

    def status(self, token: str) -> DrainStatus | None:
        running = self._running.get(token)
        return running[0].status if running is not None else None

    async def _stop(self, token: str) -> None:
        _forwarder, task = self._running.pop(token)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    async def close(self) -> None:
        async with self._lock:
            for token in list(self._running):
                await self._stop(token)
