"""The client side of `minipaas run` over MINIPAAS_URL with the caller's stdin and terminal.

It opens the WebSocket `api/remote_run.py` serves (`/api/apps/{app}/run/attach`, the token as a
Bearer header, the same TLS trust as the API client: MINIPAAS_CA_FILE, else the CAs httpx
trusts) and copies bytes both ways: a thread reads stdin (and the terminal's size changes,
SIGWINCH, through a self-pipe) and sends them; the calling thread writes what comes back to
stdout and stderr as it comes. With stdin a terminal, that terminal is put in raw mode for the
run (keys, Ctrl-C included, go to the dyno) and restored on every way out. The run's exit
status is the dyno's. Nothing of the server is imported; the token is never printed.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import ssl
import termios
import threading
import tty
import urllib.parse
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from minipaas.client import ApiError, unreachable

STDIN, STDOUT, STDERR = 0, 1, 2
CHUNK = 64 * 1024
OPEN_TIMEOUT = 30.0
#: How long closing waits for the server's side of the closing handshake (after Ctrl-C, say).
CLOSE_TIMEOUT = 3.0


def attach_url(url: str, app: str) -> str:
    """The WebSocket URL of the app's attached run on the server at `url` (http(s)://HOST)."""
    parts = urllib.parse.urlsplit(url.rstrip("/"))
    scheme = "wss" if parts.scheme.lower() == "https" else "ws"
    path = f"{parts.path}/api/apps/{urllib.parse.quote(app, safe='')}/run/attach"
    return urllib.parse.urlunsplit((scheme, parts.netloc, path, "", ""))


def _ssl_context(url: str, verify: bool | str) -> ssl.SSLContext | None:
    if not url.lower().startswith("https://"):
        return None
    import httpx  # its trust (certifi's CAs, SSL_CERT_FILE…), so both clients agree

    return httpx.create_ssl_context(verify=verify)


def _terminal_size() -> tuple[int, int]:
    for fd in (STDIN, STDOUT):
        with contextlib.suppress(OSError):
            size = os.get_terminal_size(fd)
            if size.columns > 0 and size.lines > 0:
                return size.columns, size.lines
    return 80, 24


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


@contextlib.contextmanager
def _raw_terminal(fd: int) -> Iterator[None]:
    """The terminal on `fd` in raw mode, restored however the block is left."""
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd, termios.TCSANOW)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@contextlib.contextmanager
def _signals(wake: int, is_tty: bool) -> Iterator[None]:
    """SIGWINCH pokes the input thread (which sends the new size); SIGTERM and SIGHUP end the
    run through an exception, so the terminal is restored and the server hangs the dyno up."""

    def stop(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    def winch(_signum: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(OSError):
            os.write(wake, b"w")

    handlers: dict[signal.Signals, Callable[[int, FrameType | None], None]] = {
        signal.SIGTERM: stop,
        signal.SIGHUP: stop,
    }
    if is_tty:
        handlers[signal.SIGWINCH] = winch
    old = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _pump_input(conn: Any, wake: int, is_tty: bool) -> None:
    """Stdin → server (channel 0), resizes, and `eof` once stdin ends; runs in a thread until
    stdin ends (pipes) or the connection closes. `wake` gets b"w" on SIGWINCH, b"q" to stop."""
    from websockets.exceptions import ConnectionClosed

    stdin_open = True
    try:
        while True:
            readable, _, _ = select.select([STDIN, wake] if stdin_open else [wake], [], [])
            if wake in readable:
                poked = os.read(wake, 64)
                if not poked or b"q" in poked:  # b"": the other end is closed, as good as "q"
                    return
                if is_tty:
                    cols, rows = _terminal_size()
                    conn.send(json.dumps({"type": "resize", "cols": cols, "rows": rows}))
            if stdin_open and STDIN in readable:
                data = os.read(STDIN, CHUNK)
                if data:
                    conn.send(bytes([STDIN]) + data)
                else:
                    conn.send(json.dumps({"type": "eof"}))
                    stdin_open = False
                    if not is_tty:
                        return
    except (ConnectionClosed, OSError):
        return  # the answer loop sees the connection end and says why


def run_remote_attached(
    url: str,
    token: str | None,
    verify: bool | str,
    app: str,
    command: str,
    dyno: str | None = None,
    *,
    bare: bool = False,
) -> int:
    """Run `command` in a one-off dyno of `app` (or, with `dyno`, inside that running dyno:
    `ps:exec`; with `bare`, in a one-off without the app's slug) on the server at `url` with
    this process's stdin, stdout, stderr (and terminal); the exit status."""
    from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
    from websockets.sync.client import connect

    is_tty = os.isatty(STDIN)
    headers = {"User-Agent": "minipaas-cli"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn = connect(
            attach_url(url, app),
            ssl=_ssl_context(url, verify),
            additional_headers=headers,
            user_agent_header=None,
            compression=None,  # keystrokes are tiny; latency matters more
            open_timeout=OPEN_TIMEOUT,
            close_timeout=CLOSE_TIMEOUT,
        )
    except InvalidStatus as exc:
        raise _refused(url, exc.response.status_code, bytes(exc.response.body or b"")) from None
    except InvalidHandshake as exc:  # an answer, but not a WebSocket's (nor an HTTP error)
        raise ApiError(
            f"The server at {url} did not take up the run's WebSocket "
            f"({exc.__class__.__name__}); is it a minipaas server?"
        ) from None
    except (OSError, TimeoutError) as exc:
        raise unreachable(url, exc) from None
    start: dict[str, Any] = {"type": "start", "command": command, "tty": is_tty}
    if dyno is not None:
        start["dyno"] = dyno
    if bare:
        start["bare"] = True
    if is_tty:
        start["cols"], start["rows"] = _terminal_size()
    wake_r, wake_w = os.pipe()
    feeder = threading.Thread(
        target=_pump_input, args=(conn, wake_r, is_tty), name="minipaas-stdin", daemon=True
    )
    try:
        with (
            conn,
            _signals(wake_w, is_tty),
            _raw_terminal(STDIN) if is_tty else contextlib.nullcontext(),
        ):
            conn.send(json.dumps(start))
            feeder.start()
            return _answer(conn)
    except ConnectionClosed:
        # (websockets' own words, "no close frame received or sent", say less)
        raise ApiError(f"The connection to {url} broke off before the command ended.") from None
    except KeyboardInterrupt:
        # Ctrl-C without a terminal (`cat dump.sql | minipaas run -- psql`), whenever it comes:
        # the connection is closed (above), so the server hangs the dyno up. 128 + SIGINT,
        # quietly.
        return 130
    finally:
        with contextlib.suppress(OSError):
            os.write(wake_w, b"q")
        os.close(wake_w)
        # The input thread ends on the b"q" or on the closed connection; one stuck in a read
        # (a daemon thread) never holds the exit, and then keeps its end of the pipe.
        if feeder.ident is not None:
            feeder.join(1.0)
        if not feeder.is_alive():
            os.close(wake_r)


def _answer(conn: Any) -> int:
    """Server → stdout/stderr until the exit (or error) frame."""
    for message in conn:
        if isinstance(message, bytes):
            if message[:1] == bytes([STDERR]):
                _write_all(STDERR, message[1:])
            else:
                _write_all(STDOUT, message[1:])
            continue
        data = json.loads(message)
        if data.get("type") == "exit":
            return int(data["code"])
        if data.get("type") == "error":
            raise ApiError(str(data.get("error")))
    raise ApiError("The server ended the run without an exit status.")


def _refused(url: str, status: int, body: bytes) -> ApiError:
    """The server's one sentence for a refused upgrade (401: no or a wrong token), else ours."""
    with contextlib.suppress(ValueError, AttributeError):
        error = json.loads(body).get("error")
        if isinstance(error, str) and status not in (403, 404):
            return ApiError(error, status)
    if status in (403, 404):  # a minipaas from before the attached run over MINIPAAS_URL
        return ApiError(
            f"The server at {url} has no attached `run` (HTTP {status}); upgrade minipaas "
            "there, or give `run` no stdin (< /dev/null) to have its output streamed.",
            status,
        )
    return ApiError(
        f"The server at {url} refused the run (HTTP {status}); is it a minipaas server?", status
    )
