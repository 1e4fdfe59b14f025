"""Attached one-off dynos over a WebSocket: `minipaas run` from a laptop (MINIPAAS_URL).

`/api/apps/{app}/run/attach` upgrades to a WebSocket, behind the same token check as every API
route (`auth.TokenAuth`), so Caddy's HTTPS at `minipaas.<domain>` reaches it. The client's first
frame is a JSON text frame `{"type": "start", "command": …, "tty": bool, "cols": N, "rows": N}`,
plus `"dyno": "web.1"` for `ps:exec` (the command then runs inside that running dyno; an empty
one is its shell), or `"bare": true` for a one-off without the app's slug (`pg:psql`,
`redis:cli`: an empty /app, also before the first push).
With `tty` the server opens a pseudo-terminal of that size and the dyno gets its slave side as
stdin, stdout and stderr (its controlling terminal); without, three pipes. Either way the dyno is
started by the `RunAttached` callable that serves the local attached run (`api/attach.py`), so
destroy gates, `ps`, the start and exit log lines, the time limit and the sandbox's seccomp
filter (no TIOCSTI) apply unchanged.

Frames. Binary frames carry bytes, their first byte the channel: 0 stdin (client → server),
1 stdout, 2 stderr (a terminal has one output: everything is 1). Text frames carry one JSON
object: from the client `{"type": "resize", "cols", "rows"}` and `{"type": "eof"}` (its stdin
ended); from the server `{"type": "exit", "code"}` or `{"type": "error", "error": sentence}`,
then the close. Output is sent as it is read, never held back. A client that goes away hangs
the dyno up as a closed SSH session does (a terminal's hangup: SIGHUP; pipes: EOF on stdin,
EPIPE on output, and SIGHUP to the command's process group, which a terminal's hangup would
have sent) and a dyno still running `attach.HANGUP_GRACE` seconds later is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import struct
import termios
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from minipaas import jsonin, names
from minipaas.api.attach import RunAttached, end_after_hangup
from minipaas.errors import UserError

#: Checks that `command` can run in the app (it exists, it has a release unless the run is
#: bare): (app, command, bare), `UserError` if not.
CheckRun = Callable[[str, str, bool], Awaitable[object]]

STDIN, STDOUT, STDERR = 0, 1, 2
START_WAIT = 10.0
"""Seconds the server waits for the start frame after the upgrade."""
MAX_START = 64 * 1024
"""The largest start frame read (its command is one argument, which Linux caps at 128 KiB)."""
MAX_SIZE = 65535
"""The largest terminal width or height (struct winsize holds unsigned shorts)."""
CHUNK = 64 * 1024
#: WebSocket close codes: 4000 + the HTTP status an API route would have answered.
CLOSE_OK = 1000


class _Gone(Exception):
    """The client closed the connection."""


@dataclass(frozen=True)
class Start:
    command: str
    tty: bool
    cols: int
    rows: int
    dyno: str | None = None  # `ps:exec`: the running dyno the command runs in
    bare: bool = False  # a one-off without the app's slug (`pg:psql`, `redis:cli`)


def _size(data: dict[str, Any], key: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SIZE:
        shown = json.dumps(value)[: names.SHOWN_CHARS]
        raise UserError(
            f"The field {key!r} must be a number of characters from 1 to {MAX_SIZE}, not {shown}."
        )
    return value


def control(text: str, what: str) -> dict[str, Any]:
    """A control frame's JSON object, with a known `type`; `UserError` naming what is wrong."""
    if len(text) > MAX_START:
        raise UserError(f"The {what} is larger than {MAX_START // 1024} KiB.")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise UserError(f"The {what} {names.shown(text)} is not JSON.") from None
    if not isinstance(data, dict):
        raise UserError(f"The {what} {names.shown(text)} is not a JSON object.")
    return data


def parse_start(text: str) -> Start:
    """The start frame, checked: the command to run and the terminal it wants, if any."""
    data = control(text, "start frame")
    if data.get("type") != "start":
        shown = json.dumps(data.get("type"))[: names.SHOWN_CHARS]
        raise UserError(f'The first frame must be of type "start", not {shown}.')
    dyno = data.get("dyno")
    if dyno is not None and not isinstance(dyno, str):
        shown = json.dumps(dyno)[: names.SHOWN_CHARS]
        raise UserError(f"The field 'dyno' must be a dyno name such as web.1, not {shown}.")
    command = names.one_off_command(data.get("command"), optional=dyno is not None)
    tty = jsonin.flag(data, "tty")
    bare = jsonin.flag(data, "bare")
    cols, rows = (_size(data, "cols"), _size(data, "rows")) if tty else (80, 24)
    return Start(command, tty, cols, rows, dyno, bare)


def set_size(fd: int, cols: int, rows: int) -> None:
    """The terminal's size (its foreground process group gets SIGWINCH when it changes)."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _receive(ws: WebSocket) -> tuple[str | None, bytes | None]:
    """The next frame: (text, None) or (None, bytes); `_Gone` once the client has left."""
    message = await ws.receive()
    if message["type"] == "websocket.disconnect":
        raise _Gone
    return message.get("text"), message.get("bytes")


async def serve_attach(
    ws: WebSocket,
    run: RunAttached,
    check: CheckRun,
    background: set[asyncio.Task[Any]],
) -> None:
    """One remote attached run, from the upgrade to the close. Nothing here raises: a bad start
    frame or a refused run is an `error` frame naming it (never an HTTP 500)."""
    try:
        await ws.accept()
    except (OSError, RuntimeError, WebSocketDisconnect):
        return  # gone before the handshake was answered
    try:
        try:
            text, _ = await asyncio.wait_for(_receive(ws), START_WAIT)
        except TimeoutError:
            raise UserError(
                f"No start frame came within {START_WAIT:g} s of the upgrade."
            ) from None
        if text is None:
            raise UserError('The first frame must be a JSON text frame of type "start".')
        start = parse_start(text)
        app = names.app_name(ws.path_params["app"])
        if start.dyno is None:  # no such app, no release: said before anything runs
            await check(app, start.command, start.bare)
    except _Gone:
        return
    except UserError as exc:
        await _Session.fail(ws, str(exc), exc.status)
        return
    try:
        session = _Session(ws, start)
    except OSError as exc:  # out of ptys or descriptors: the server's trouble, said as such
        what = "terminal" if start.tty else "pipes"
        reason = exc.strerror or exc
        await _Session.fail(ws, f"The server could not open the run's {what}: {reason}.", 503)
        return
    await session.run(
        lambda stdio: run(
            app, start.command, "admin", stdio, start.dyno, start.bare, session.hung_up
        ),
        background,
    )


class _Session:
    """The descriptors of one run and the copying between them and the WebSocket."""

    def __init__(self, ws: WebSocket, start: Start) -> None:
        self.ws = ws
        self.start = start
        self.loop = asyncio.get_running_loop()
        self.gone = False
        self.finished = asyncio.Event()  # the dyno has exited: outputs drain, then end
        self.hung_up = asyncio.Event()  # the client has gone: SIGHUP for a command on pipes
        self._send_lock = asyncio.Lock()
        self._closed: set[int] = set()
        if start.tty:
            master, slave = os.openpty()
            set_size(slave, start.cols, start.rows)
            self.stdio = (slave, slave, slave)
            self.stdin: int | None = master
            self.outputs = [(master, STDOUT)]
            self.theirs = [slave]
            self.ours = [master]
        else:
            in_r, in_w = os.pipe()
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            self.stdio = (in_r, out_w, err_w)
            self.stdin = in_w
            self.outputs = [(out_r, STDOUT), (err_r, STDERR)]
            self.theirs = [in_r, out_w, err_w]
            self.ours = [in_w, out_r, err_r]
        for fd in self.ours:
            os.set_blocking(fd, False)

    @staticmethod
    async def fail(ws: WebSocket, sentence: str, status: int = 400) -> None:
        with contextlib.suppress(OSError, RuntimeError, WebSocketDisconnect):
            await ws.send_text(json.dumps({"type": "error", "error": sentence}))
            await ws.close(4000 + status if 400 <= status < 600 else 1011)

    async def _send(self, payload: bytes | str) -> None:
        if self.gone:
            return
        async with self._send_lock:
            try:
                if isinstance(payload, bytes):
                    await self.ws.send_bytes(payload)
                else:
                    await self.ws.send_text(payload)
            except (OSError, RuntimeError, WebSocketDisconnect):
                self.gone = True

    async def run(
        self,
        start_run: Callable[[tuple[int, int, int]], Awaitable[int]],
        background: set[asyncio.Task[Any]],
    ) -> None:
        async def go() -> int:
            return await start_run(self.stdio)

        run_task = self.loop.create_task(go())
        # A stopping server cancels these (as it does streamed runs): the dyno is killed.
        background.add(run_task)
        run_task.add_done_callback(background.discard)
        pumps = [self.loop.create_task(self._pump(fd, ch)) for fd, ch in self.outputs]
        feed = self.loop.create_task(self._feed())
        try:
            either: set[asyncio.Future[Any]] = {run_task, feed}
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            if not run_task.done():
                # The client left (or broke the protocol: `feed` sent the error already).
                for pump in pumps:
                    pump.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
                await self._hang_up(run_task)
                return
            feed.cancel()
            self.finished.set()
            await asyncio.gather(*pumps, return_exceptions=True)  # all the output, then…
            try:
                code = run_task.result()
            except asyncio.CancelledError:
                await self.fail(self.ws, "The minipaas server stopped during this run.", 503)
                return
            except UserError as exc:
                await self.fail(self.ws, str(exc), exc.status)
                return
            await self._send(json.dumps({"type": "exit", "code": code}))
            with contextlib.suppress(OSError, RuntimeError, WebSocketDisconnect):
                await self.ws.close(CLOSE_OK)
        finally:
            for task in (feed, *pumps):
                task.cancel()
            await asyncio.gather(feed, *pumps, return_exceptions=True)
            if not run_task.done():  # this task itself was cancelled
                run_task.cancel()
                await asyncio.gather(run_task, return_exceptions=True)
            for fd in (*self.ours, *self.theirs):
                self._close(fd)

    def _close(self, fd: int) -> None:
        if fd not in self._closed:
            self._closed.add(fd)
            os.close(fd)

    async def _hang_up(self, run_task: asyncio.Task[int]) -> None:
        """What a closed SSH session does: the terminal hangs up (the kernel sends SIGHUP to
        the dyno's session), or its stdin ends, its output has no reader (EPIPE) and, as the
        terminal would have, the run sends SIGHUP to its process group (`hung_up`). The dyno
        then has HANGUP_GRACE seconds before it is killed (cancelling the run kills it)."""
        for fd in self.ours:
            self._close(fd)
        await end_after_hangup(run_task, self.hung_up)

    async def _readable(self, fd: int) -> None:
        """Until `fd` can be read or the dyno has finished."""
        ready: asyncio.Future[None] = self.loop.create_future()
        self.loop.add_reader(fd, _wake, ready)
        finished = self.loop.create_task(self.finished.wait())
        try:
            either: set[asyncio.Future[Any]] = {ready, finished}
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.loop.remove_reader(fd)
            ready.cancel()
            finished.cancel()

    async def _pump(self, fd: int, channel: int) -> None:
        """Dyno → client, chunk by chunk as it comes; once the dyno has finished, what is left
        in the pipe or terminal is sent and the pump ends."""
        prefix = bytes([channel])
        while not self.gone:
            try:
                data = os.read(fd, CHUNK)
            except BlockingIOError:
                if self.finished.is_set():
                    return
                await self._readable(fd)
                continue
            except OSError:  # EIO: the terminal is gone
                return
            if not data:
                return
            await self._send(prefix + data)

    async def _write(self, data: bytes) -> None:
        """Client → dyno stdin, waiting while the pipe or terminal is full (which holds the
        client's further frames back: TCP's flow control reaches the client)."""
        fd = self.stdin
        view = memoryview(data)
        while view and fd is not None:
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:
                ready: asyncio.Future[None] = self.loop.create_future()
                self.loop.add_writer(fd, _wake, ready)
                try:
                    await ready
                finally:
                    self.loop.remove_writer(fd)

    async def _feed(self) -> None:
        """Client → dyno until the client leaves (returns) or breaks the protocol (an error
        frame, then returns: the run is hung up like a client that left)."""
        try:
            while True:
                text, data = await _receive(self.ws)
                if data is not None:
                    if data[:1] != bytes([STDIN]):
                        raise UserError(
                            "A binary frame from the client must start with the "
                            f"stdin channel byte 0, not {data[:1]!r}."
                        )
                    await self._write(data[1:])
                elif text is not None:
                    self._control(text)
        except _Gone:
            self.gone = True
        except UserError as exc:
            await self.fail(self.ws, str(exc), exc.status)
            self.gone = True
        except OSError:  # EIO / EPIPE writing to a dyno that has just exited
            await self.finished.wait()

    def _control(self, text: str) -> None:
        data = control(text, "control frame")
        kind = data.get("type")
        if kind == "resize":
            cols, rows = _size(data, "cols"), _size(data, "rows")
            if self.start.tty and self.stdin is not None:
                set_size(self.stdin, cols, rows)
        elif kind == "eof":
            if self.start.tty:
                return  # a terminal's end of input is the user's ^D, typed as a byte
            if self.stdin is not None:
                self._close(self.stdin)
                self.stdin = None
        else:
            shown = json.dumps(kind)[: names.SHOWN_CHARS]
            raise UserError(f'Unknown control frame type {shown}: use "resize" or "eof".')
