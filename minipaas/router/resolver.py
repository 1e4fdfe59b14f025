"""The router's upstream resolver: a tiny DNS server that tells Caddy where each app's dynos are.

Why it exists: every `POST /load` makes Caddy replace its servers, and Go closes the idle
keep-alive connections of the old ones; a client that sends its next request on such a
connection at that instant gets a reset. With the dyno ports behind DNS (Caddy's `srv`
dynamic upstreams, refreshed every `dns.REFRESH_MS`), a deploy changes one small table file and
Caddy's configuration does not change at all: no reload, no connection closed.

Owns the table file (`upstreams.json`: app name → web dyno ports, replaced atomically), the
resolver process (its own session, so it keeps answering while minipaas restarts, exactly like
Caddy and the dynos; found again through its pid file), and the serving loop that runs in it.
The loop only reads the table; minipaas only writes it.

A switch waits only as long as Caddy may still hold an answer from before it: the loop
remembers when it last answered for each app, and minipaas asks (`GET /answered/<app>`). An app
nobody has visited for `SWITCH_DELAY` (a first deploy, an idle app) switches at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from minipaas.router import dns, pidfile
from minipaas.router.errors import RouterError

#: How long Caddy may keep using an answer: a switch waits this long before the old dynos are
#: drained, so no request chosen from a stale answer can reach a stopped dyno.
SWITCH_DELAY = dns.REFRESH_MS / 1000 + 0.05

#: How long minipaas waits for the loop to say when it last answered about an app.
ASK_TIMEOUT = 1.0

#: A connection to the "no web dynos" answer that has not sent its request by then is closed.
HTTP_TIMEOUT = 5.0

#: What the serving loop speaks; recorded in `resolver.json`. A resolver an older minipaas left
#: running with another protocol is replaced (on the same port) rather than adopted.
#: 2: unknown apps are answered too (404 on the own port), `/ask/<domain>` for on-demand TLS.
#: 3: `/answered/<app>`, how long ago the loop last told Caddy where the app's dynos are.
PROTOCOL = 3

#: The request header Caddy's app routes set: which app a proxied request is for.
APP_HEADER = "X-Minipaas-App"

Table = dict[str, list[int]]


class ResolverProcess(pidfile.KeptChild):
    """The resolver of one router workdir, identified by `resolver.json` (pid, start time, port)."""

    def __init__(self, workdir: Path, *, command: Sequence[str] | None = None) -> None:
        self.workdir = workdir
        self._command = list(command) if command is not None else resolver_command()
        super().__init__()
        self._port: int | None = None

    @property
    def state_file(self) -> Path:
        return self.workdir / "resolver.json"

    @property
    def table_file(self) -> Path:
        return self.workdir / "upstreams.json"

    @property
    def log_file(self) -> Path:
        return self.workdir / "resolver.log"

    @property
    def address(self) -> str:
        """`127.0.0.1:PORT`, the address rendered into Caddy's configuration."""
        if self._port is None:
            raise RouterError("The upstream resolver is not running.")
        return f"127.0.0.1:{self._port}"

    def adopt(self) -> int | None:
        """Take over the resolver an earlier run left alive; its pid, or None.

        One that speaks another protocol (left by an older minipaas) is stopped instead; the
        next `start` takes its port again."""
        data = pidfile.recorded(self.state_file)
        if data is None or not isinstance(data.get("port"), int):
            return None
        if data.get("protocol") != PROTOCOL:
            pidfile.stop_recorded(self.state_file, 5.0)
            self._forget_process(int(data["port"]))
            return None
        pid = int(data["pid"])
        self._pid, self._port = pid, int(data["port"])
        return pid

    def start(self) -> int:
        """Adopt the running resolver or spawn one (on the port it had, when still free)."""
        pid = self.adopt()
        if pid is not None:
            return pid
        self.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        stop_strays(self.workdir)
        udp, tcp = bind_sockets(_previous_port(self.state_file))
        try:
            port = udp.getsockname()[1]
            with open(self.log_file, "ab") as log:
                self._popen = subprocess.Popen(
                    [*self._command, str(self.table_file)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    pass_fds=(udp.fileno(), tcp.fileno()),
                    env={
                        "MINIPAAS_RESOLVER_FDS": f"{udp.fileno()},{tcp.fileno()}",
                        "PATH": os.defpath,
                    },
                    start_new_session=True,  # a Ctrl-C to minipaas must not stop routing
                )
        finally:
            udp.close()
            tcp.close()
        self._pid, self._port = self._popen.pid, port
        pidfile.record(self.state_file, self._pid, port=port, protocol=PROTOCOL)
        return self._pid

    def publish(self, table: Mapping[str, Sequence[int]]) -> set[str]:
        """Replace the table the resolver answers from; the apps whose dynos changed.

        A new app is not a change: Caddy has never been told about it, so nothing stale can be
        cached. A changed or removed one is: the caller waits `settle_time` before draining.
        """
        wanted: Table = {app: sorted(ports) for app, ports in sorted(table.items())}
        previous = read_table(self.table_file) or {}  # the file is the truth, not a memory
        if wanted == previous:
            return set()
        pidfile.write_atomic(self.table_file, json.dumps(wanted, separators=(",", ":")) + "\n")
        return {app for app in previous if previous[app] != wanted.get(app)}

    async def settle_time(self, apps: Iterable[str]) -> float:
        """Seconds until no answer given before the last `publish` can be in use for `apps`.

        That is `SWITCH_DELAY` after the latest answer the loop gave about one of them, and 0
        when it gave none that recently; `SWITCH_DELAY` whenever the loop cannot say.
        """
        wait = 0.0
        for app in sorted(apps):
            age = await self._answered(app) if self._port is not None else 0.0
            wait = max(wait, SWITCH_DELAY - age)
        return wait

    async def _answered(self, app: str) -> float:
        """Seconds since the loop last answered about `app` (infinity: not recently);
        0 when it cannot be asked, so the caller waits the whole `SWITCH_DELAY`."""
        request = f"GET /answered/{app} HTTP/1.1\r\nHost: resolver\r\n\r\n".encode()
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(ASK_TIMEOUT):
                reader, writer = await asyncio.open_connection("127.0.0.1", self._port)
                writer.write(request)
                reply = await reader.read()  # the loop closes after answering
        except (OSError, TimeoutError):
            return 0.0
        finally:
            if writer is not None:
                writer.close()
        return parse_answered(reply)

    async def terminate(self, *, grace: float = 5.0) -> None:
        """SIGTERM by pid, SIGKILL after `grace`; forget the state file."""
        await self._stop(grace)
        # Forget the process but keep its port: a new resolver takes the same one when it can,
        # so a Caddy configuration naming it stays right.
        if self._port is not None:
            self._forget_process(self._port)

    def _forget_process(self, port: int) -> None:
        """Leave only `port` in the state file: no process to adopt, the port to take again."""
        pidfile.write_atomic(self.state_file, json.dumps({"port": port}) + "\n")


def resolver_command() -> list[str]:
    """How to start the serving loop: the frozen binary's hidden word, or this module."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "_router-resolver"]
    return [sys.executable, "-m", "minipaas.router.resolver"]


def stop_strays(workdir: Path, timeout: float = 5.0) -> list[int]:
    """Stop every resolver serving `workdir`'s table (one whose state file was lost, see
    `caddy.stop_strays`); their pids."""
    return pidfile.stop_running([str(workdir / "upstreams.json")], timeout, marker="resolver")


def stop_orphan(workdir: Path, timeout: float = 5.0) -> bool:
    """Stop the resolver recorded in `workdir` (pid and start time must match); True if one was."""
    return pidfile.stop_recorded(workdir / "resolver.json", timeout)


def read_table(path: Path) -> Table | None:
    """The published table, or None when there is none (or it is unreadable)."""
    try:
        raw = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict):
        return None
    table: Table = {}
    for app, ports in raw.items():
        if isinstance(app, str) and isinstance(ports, list):
            table[app] = [p for p in ports if isinstance(p, int) and 0 < p < 65536]
    return table


# -- the serving loop (runs in the resolver process) ---------------------------------------


class _TableFile:
    """The published table as the serving loop sees it: re-read whenever the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._table: Table | None = None
        self._seen: tuple[int, int] | None = None

    def current(self) -> Table | None:
        try:
            stat = os.stat(self.path)
            key: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_ino)
        except OSError:
            key = None
        if key != self._seen:
            self._table, self._seen = read_table(self.path), key
        return self._table


def serve(udp: socket.socket, tcp: socket.socket, table_file: Path) -> None:
    """Answer DNS queries on `udp` and HTTP on `tcp` (see `http_response`), forever.

    An app without web dynos, and a name that is no app at all, are answered with this
    process's own port: an app's route stays the same from `apps:create` on, through its first
    deploy and any scaling to zero, and a new app needs no route of its own at all.
    """
    own_port = udp.getsockname()[1]
    table = _TableFile(table_file)
    pending: dict[socket.socket, tuple[float, bytes]] = {}
    # app → when it was last answered; older than SWITCH_DELAY it matters no more (and goes,
    # so names made up by visitors cannot pile up)
    answered: dict[str, float] = {}
    pruned = time.monotonic()
    tcp.setblocking(False)
    with selectors.DefaultSelector() as selector:
        selector.register(udp, selectors.EVENT_READ)
        selector.register(tcp, selectors.EVENT_READ)
        while True:
            for key, _events in selector.select(timeout=1.0):
                sock = key.fileobj
                if sock is udp:
                    app = _answer_dns(udp, table, own_port)
                    if app is not None:
                        answered[app] = time.monotonic()
                elif sock is tcp:
                    with contextlib.suppress(OSError):
                        conn, _peer = tcp.accept()
                        conn.setblocking(False)
                        pending[conn] = (time.monotonic(), b"")
                        selector.register(conn, selectors.EVENT_READ)
                elif isinstance(sock, socket.socket):
                    _read_request(selector, pending, sock, table, answered)
            now = time.monotonic()
            for conn in [c for c, (t, _b) in pending.items() if now - t > HTTP_TIMEOUT]:
                _close(selector, pending, conn)
            if now - pruned > 1.0:
                for app in [a for a, t in answered.items() if now - t > SWITCH_DELAY]:
                    del answered[app]
                pruned = now


def _answer_dns(udp: socket.socket, table: _TableFile, own_port: int) -> str | None:
    """Answer one query; the app it told Caddy about, if any."""
    try:
        data, peer = udp.recvfrom(512)
    except OSError:
        return None
    query = dns.parse_query(data)
    if query is None:
        return None
    try:
        udp.sendto(dns.answer(query, table.current(), idle_port=own_port), peer)
    except OSError:
        return None
    return dns.asked_app(query)


def _read_request(
    selector: selectors.BaseSelector,
    pending: dict[socket.socket, tuple[float, bytes]],
    conn: socket.socket,
    table: _TableFile,
    answered: Mapping[str, float],
) -> None:
    started, head = pending[conn]
    try:
        chunk = conn.recv(4096)
    except BlockingIOError:
        return
    except OSError:
        chunk = b""
    head += chunk
    if chunk and b"\r\n\r\n" not in head and len(head) < 16384:
        pending[conn] = (started, head)
        return
    if chunk:
        with contextlib.suppress(OSError):
            conn.send(http_response(head, table.current() or {}, answered, now=time.monotonic()))
    _close(selector, pending, conn)


def _close(
    selector: selectors.BaseSelector,
    pending: dict[socket.socket, tuple[float, bytes]],
    conn: socket.socket,
) -> None:
    selector.unregister(conn)
    pending.pop(conn, None)
    conn.close()


def http_response(
    head: bytes,
    table: Mapping[str, Sequence[int]],
    answered: Mapping[str, float] | None = None,
    *,
    now: float = 0.0,
) -> bytes:
    """The answer to one HTTP request (its head) on the resolver's own port.

    - Proxied by Caddy (it names the app in `APP_HEADER`): 503 "no web dynos" for an app in
      the table, 404 "no app is served at <host>" for any other name.
    - Caddy's on-demand TLS question `GET /ask/<domain>?domain=<app>.<domain>`: 200 when the
      name is an app's default host (a certificate may be issued for it), else 403.
    - minipaas's `GET /answered/<app>`: 200 with the seconds since the DNS answer about the
      app at `answered[app]` (times on the clock of `now`), or "never".
    """
    request_line, *lines = head.split(b"\r\n")
    headers: dict[bytes, str] = {}
    for line in lines:
        name, sep, value = line.partition(b":")
        if sep:
            headers[name.strip().lower()] = value.strip().decode("ascii", "replace").lower()
    host = _shown_host(headers.get(b"host", ""))
    app = headers.get(APP_HEADER.lower().encode())
    if app is not None:
        if app in table:
            shown = f"'{host}'" if host else "this app"
            message = f"no web dynos running for {shown}"
            return _text(503, "Service Unavailable", message, retry=True)
        return _text(404, "Not Found", f"no app is served at {host or 'this host'}")
    parts = request_line.split(b" ")
    target = parts[1].decode("ascii", "replace") if len(parts) == 3 else ""
    path, _sep, query = target.partition("?")
    if parts[0] == b"GET" and path.startswith("/ask/"):
        asked = [item[len("domain=") :] for item in query.split("&") if item.startswith("domain=")]
        label, dot, rest = (asked[0] if len(asked) == 1 else "").lower().partition(".")
        if dot and rest == path.removeprefix("/ask/").lower() and label in table:
            return _text(200, "OK", "yes")
        return _text(403, "Forbidden", "no")
    if parts[0] == b"GET" and path.startswith("/answered/"):
        when = (answered or {}).get(path.removeprefix("/answered/").lower())
        return _text(200, "OK", "never" if when is None else f"{max(0.0, now - when):.6f}")
    return _text(404, "Not Found", "not a proxied request")


def parse_answered(reply: bytes) -> float:
    """The seconds an `/answered/<app>` reply tells (infinity for "never"); 0 for a reply that
    is no such answer, so that the caller waits as long as it can have to."""
    head, _sep, body = reply.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200 "):
        return 0.0
    value = body.strip().removeprefix(b"200 OK: ").removesuffix(b".")
    if value == b"never":
        return float("inf")
    try:
        age = float(value)
    except ValueError:
        return 0.0
    return age if age >= 0 else 0.0  # NaN too


def _shown_host(value: str) -> str:
    """The Host header for a message: without its port, and only when it looks like one."""
    if not value or not all(c.isalnum() or c in ".-:[]" for c in value):
        return ""
    return value.rsplit(":", 1)[0] if "]" not in value else value


def _text(status: int, reason: str, message: str, *, retry: bool = False) -> bytes:
    body = f"{status} {reason}: {message}.\n".encode()
    return (
        b"HTTP/1.1 %d %s\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"X-Content-Type-Options: nosniff\r\n"
        b"%s"
        b"Connection: close\r\n"
        b"Content-Length: %d\r\n\r\n%s"
        % (status, reason.encode(), b"Retry-After: 30\r\n" if retry else b"", len(body), body)
    )


def main(argv: Sequence[str]) -> int:
    """`python -m minipaas.router.resolver TABLE_FILE`, with the bound sockets inherited."""
    fds = os.environ.get("MINIPAAS_RESOLVER_FDS", "").split(",")
    if len(argv) != 1 or len(fds) != 2 or not all(fd.isdigit() for fd in fds):
        print(
            "usage: MINIPAAS_RESOLVER_FDS=UDP,TCP minipaas _router-resolver TABLE_FILE",
            file=sys.stderr,
        )
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    udp = socket.socket(fileno=int(fds[0]))
    tcp = socket.socket(fileno=int(fds[1]))
    serve(udp, tcp, Path(argv[0]))
    return 0


# -- helpers -------------------------------------------------------------------------------


def bind_sockets(port: int) -> tuple[socket.socket, socket.socket]:
    """A UDP (DNS) and a TCP (HTTP answers) socket on one loopback port: `port` if both are
    free there, else the first port free for both (0 for any)."""
    for attempt in range(20):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            # the old port if still free (Caddy's configuration names it), else any
            udp.bind(("127.0.0.1", port if attempt == 0 else 0))
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind(("127.0.0.1", udp.getsockname()[1]))
            tcp.listen(64)
        except OSError:
            udp.close()
            tcp.close()
            continue
        return udp, tcp
    raise RouterError("No free loopback port for the upstream resolver.")


def _previous_port(state_file: Path) -> int:
    try:
        port = json.loads(state_file.read_text())["port"]
    except (OSError, ValueError, KeyError, TypeError):
        return 0
    return port if isinstance(port, int) and 0 < port < 65536 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
