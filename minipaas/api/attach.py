"""Attached one-off dynos: `minipaas run` with the caller's own terminal.

The client (the CLI, often as the SSH forced command of `ssh -t minipaas@host run …`) connects
to `<data-dir>/minipaas-run.sock` and sends one JSON line (app, command, who, and for `ps:exec`
the running dyno to enter, or `"bare": true` for a one-off without the app's slug: `pg:psql`,
`redis:cli`) together with its stdin, stdout and stderr file descriptors
(SCM_RIGHTS). The server starts the one-off dyno with
those descriptors as its stdio, so the user's terminal is the dyno's terminal: no bytes are
proxied. The answer is one JSON line, `{"exit": N}` or `{"error": sentence}`. The socket has the
same owner and mode as the API socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import signal
import socket
import stat
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, Protocol

from minipaas import jsonin, names
from minipaas.api.auth import private_unix_socket
from minipaas.errors import UserError

HANGUP_GRACE = 5.0
"""Seconds a dyno whose client went away may take to end after its hangup before it is killed."""


class RunAttached(Protocol):
    """(app, command, who, stdio) -> exit status, running the one-off with the given fds as its
    stdio; with `dyno`, running the command inside that running dyno instead (`ps:exec`); with
    `bare`, a one-off without the app's slug (an empty /app). `hung_up`, once set, says the
    client went away: a command on pipes gets SIGHUP, as from a terminal's hangup."""

    def __call__(
        self,
        app: str,
        command: str,
        who: str,
        stdio: tuple[int, int, int],
        dyno: str | None = None,
        bare: bool = False,
        hung_up: asyncio.Event | None = None,
        /,
    ) -> Awaitable[int]: ...


MAX_HEADER = 64 * 1024


def _receive(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    data, fds, _flags, _addr = socket.recv_fds(conn, MAX_HEADER, 3)
    try:
        header = json.loads(data.split(b"\n", 1)[0])
    except (json.JSONDecodeError, UnicodeDecodeError):
        header = None
    if not isinstance(header, dict):
        for fd in fds:
            os.close(fd)
        raise UserError("The run request is not a JSON object.")
    return header, fds


class AttachServer:
    """Accepts attached-run requests on a unix socket."""

    def __init__(self, path: Path, run: RunAttached, gid: int | None = None) -> None:
        self.path = path
        self.run = run
        self.gid = gid
        self._sock: socket.socket | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def listen(self) -> None:
        self._sock = private_unix_socket(self.path, self.gid)

    async def serve(self) -> None:
        assert self._sock is not None
        loop = asyncio.get_running_loop()
        while True:
            conn, _ = await loop.sock_accept(self._sock)
            task = loop.create_task(self._handle(conn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _handle(self, conn: socket.socket) -> None:
        fds: list[int] = []
        try:
            conn.setblocking(True)
            conn.settimeout(10)
            try:
                header, fds = await asyncio.to_thread(_receive, conn)
                if len(fds) != 3:
                    raise UserError("Send stdin, stdout and stderr with the run request.")
                app = names.app_name(str(header.get("app", "")))
                dyno = header.get("dyno")
                if dyno is not None and not isinstance(dyno, str):
                    raise UserError(f"The dyno must be a name such as web.1, not {dyno!r}.")
                command = header.get("command")
                if not isinstance(command, str) or (dyno is None and not command.strip()):
                    raise UserError("No command given; use `minipaas run -a APP -- COMMAND`.")
                who = str(header.get("who") or "admin")[:100]
                bare = jsonin.flag(header, "bare")
                stdio = (fds[0], fds[1], fds[2])
                hung_up = asyncio.Event()
                code = await self._run_while_connected(
                    conn, self.run(app, command, who, stdio, dyno, bare, hung_up), hung_up
                )
                if code is None:
                    return  # the client left: the dyno was killed, and nobody is there to tell
                answer: dict[str, Any] = {"exit": code}
            except UserError as exc:
                answer = {"error": str(exc), "exit": 1}
            except OSError as exc:
                answer = {"error": f"The run request failed: {exc}.", "exit": 1}
            for fd in fds:
                os.close(fd)
            fds = []
            with contextlib.suppress(OSError):
                await asyncio.to_thread(conn.sendall, (json.dumps(answer) + "\n").encode())
        finally:
            for fd in fds:
                os.close(fd)
            conn.close()

    @staticmethod
    async def _run_while_connected(
        conn: socket.socket, run: Awaitable[int], hung_up: asyncio.Event
    ) -> int | None:
        """`run`'s exit status; None if the client hung up first (Ctrl-C on a piped `minipaas
        run`, a killed CLI): then the run is hung up (`end_after_hangup`), as a closed SSH
        session would; it would go on writing to a terminal nobody watches, for up to a day."""
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(run)

        async def closed() -> None:
            conn.setblocking(False)
            while await loop.sock_recv(conn, 4096):
                pass  # the client sends nothing more; read on until it closes

        watch = asyncio.ensure_future(closed())
        try:
            await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await watch
            conn.settimeout(10)  # blocking again, for the answer's sendall in a thread
        if task.done():
            return task.result()
        await end_after_hangup(task, hung_up)
        return None

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._sock is not None:
            self._sock.close()
        self.path.unlink(missing_ok=True)


async def end_after_hangup(run: asyncio.Future[int], hung_up: asyncio.Event) -> None:
    """What a closed SSH session does to what it ran, for a run whose client went away: a
    terminal hangs up (the kernel sends SIGHUP to the dyno's session); on pipes, `hung_up` set
    has the run send its command's process group SIGHUP all the same. Whatever still runs
    HANGUP_GRACE seconds later is killed (the run is cancelled). Returns once the run ended."""
    hung_up.set()
    done, _ = await asyncio.wait({run}, timeout=HANGUP_GRACE)
    if not done:
        run.cancel()
    await asyncio.gather(run, return_exceptions=True)


def run_attached_client(
    socket_path: Path,
    app: str,
    command: str,
    who: str = "admin",
    dyno: str | None = None,
    *,
    bare: bool = False,
) -> int:
    """Client side (sync, used by the CLI): run `command` with this process's stdio (in the
    running `dyno` for `ps:exec`: an empty command is its shell; `bare`: without the slug)."""
    request: dict[str, Any] = {"app": app, "command": command, "who": who}
    if dyno is not None:
        request["dyno"] = dyno
    if bare:
        request["bare"] = True
    header = json.dumps(request).encode() + b"\n"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(socket_path))
        socket.send_fds(sock, [header], [0, 1, 2])
        data = b""
        while not data.endswith(b"\n"):
            if not _answer_or_hangup(sock):
                # Whoever read our output is gone (the SSH session of `ssh minipaas@host run`
                # without -t dropped: sshd's pipe closed): closing the socket hangs the run up,
                # as that session's terminal would have. Nobody is left to get a status.
                return 128 + signal.SIGHUP
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    try:
        answer = json.loads(data or b"{}")
    except json.JSONDecodeError:
        answer = {}
    if "error" in answer:
        raise UserError(str(answer["error"]))
    if "exit" not in answer:
        raise UserError("The server ended the run without an exit status.")
    return int(answer["exit"])


def _answer_or_hangup(sock: socket.socket) -> bool:
    """Wait until the server's answer can be read (True) or, when this process's stdout is a
    pipe or a socket, until its reader has gone (False: POLLERR/POLLHUP on it). The dyno
    writes to that descriptor itself, so nothing here would otherwise notice."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    try:
        mode = os.fstat(1).st_mode
    except OSError:
        mode = 0
    watched = stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)
    if watched:
        poller.register(1, 0)  # POLLERR and POLLHUP are reported whatever the mask
    while True:
        events = dict(poller.poll())
        if sock.fileno() in events:
            return True
        if events.get(1, 0) & (select.POLLERR | select.POLLHUP):
            return False
