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
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from minipaas.router import dns, pidfile
from minipaas.router.errors import RouterError

#: How long Caddy may keep using an answer: a switch waits this long before the old dynos are
#: drained, so no request chosen from a stale answer can reach a stopped dyno.
SWITCH_DELAY = dns.REFRESH_MS / 1000 + 0.05

Table = dict[str, list[int]]


class ResolverProcess:
    """The resolver of one router workdir, identified by `resolver.json` (pid, start time, port)."""

    def __init__(self, workdir: Path, *, command: Sequence[str] | None = None) -> None:
        self.workdir = workdir
        self._command = list(command) if command is not None else resolver_command()
        self._popen: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None
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
    def pid(self) -> int | None:
        return self._pid

    @property
    def address(self) -> str:
        """`127.0.0.1:PORT`, the address rendered into Caddy's configuration."""
        if self._port is None:
            raise RouterError("The upstream resolver is not running.")
        return f"127.0.0.1:{self._port}"

    def alive(self) -> bool:
        if self._popen is not None:
            return self._popen.poll() is None
        return self._pid is not None and pidfile.alive(self._pid)

    def adopt(self) -> int | None:
        """Take over the resolver an earlier run left alive; its pid, or None."""
        data = pidfile.recorded(self.state_file)
        if data is None or not isinstance(data.get("port"), int):
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
        sock = _bind(_previous_port(self.state_file))
        try:
            port = sock.getsockname()[1]
            with open(self.log_file, "ab") as log:
                self._popen = subprocess.Popen(
                    [*self._command, str(self.table_file)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    pass_fds=(sock.fileno(),),
                    env={"MINIPAAS_RESOLVER_FD": str(sock.fileno()), "PATH": os.defpath},
                    start_new_session=True,  # a Ctrl-C to minipaas must not stop routing
                )
        finally:
            sock.close()
        self._pid, self._port = self._popen.pid, port
        pidfile.record(self.state_file, self._pid, port=port)
        return self._pid

    def publish(self, table: Mapping[str, Sequence[int]]) -> bool:
        """Replace the table the resolver answers from; True if an app's dynos changed.

        A new app is not a change: Caddy has never been told about it, so nothing stale can be
        cached. A changed or removed one is: the caller waits `SWITCH_DELAY` before draining.
        """
        wanted: Table = {app: sorted(ports) for app, ports in sorted(table.items())}
        previous = read_table(self.table_file) or {}  # the file is the truth, not a memory
        if wanted == previous:
            return False
        _write_atomic(self.table_file, json.dumps(wanted, separators=(",", ":")) + "\n")
        return any(previous[app] != wanted.get(app) for app in previous)

    async def _wait_dead(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while self.alive():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def terminate(self, *, grace: float = 5.0) -> None:
        """SIGTERM by pid, SIGKILL after `grace`; forget the state file."""
        pid = self._pid
        if pid is not None and self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            if not await self._wait_dead(grace):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                if self._popen is not None:
                    await asyncio.to_thread(self._popen.wait)
        self._popen, self._pid = None, None
        # Forget the process but keep its port: a new resolver takes the same one when it can,
        # so a Caddy configuration naming it stays right.
        if self._port is not None:
            _write_atomic(self.state_file, json.dumps({"port": self._port}) + "\n")


def resolver_command() -> list[str]:
    """How to start the serving loop: the frozen binary's hidden word, or this module."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "_router-resolver"]
    return [sys.executable, "-m", "minipaas.router.resolver"]


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


def serve(sock: socket.socket, table_file: Path) -> None:
    """Answer queries forever, re-reading the table whenever its file changes."""
    table: Table | None = None
    seen: tuple[int, int] | None = None
    while True:
        try:
            data, peer = sock.recvfrom(512)
        except InterruptedError:
            continue
        try:
            stat = os.stat(table_file)
            key = (stat.st_mtime_ns, stat.st_ino)
        except OSError:
            key = None
        if key != seen:
            table, seen = read_table(table_file), key
        query = dns.parse_query(data)
        if query is None:
            continue
        with contextlib.suppress(OSError):
            sock.sendto(dns.answer(query, table), peer)


def main(argv: Sequence[str]) -> int:
    """`python -m minipaas.router.resolver TABLE_FILE`, with the bound socket inherited."""
    if len(argv) != 1 or "MINIPAAS_RESOLVER_FD" not in os.environ:
        print("usage: MINIPAAS_RESOLVER_FD=N minipaas _router-resolver TABLE_FILE", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = socket.socket(fileno=int(os.environ["MINIPAAS_RESOLVER_FD"]))
    serve(sock, Path(argv[0]))
    return 0


# -- helpers -------------------------------------------------------------------------------


def _bind(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        if port == 0:
            sock.close()
            raise
        sock.bind(("127.0.0.1", 0))  # the old port was taken meanwhile: Caddy gets a reload
    return sock


def _previous_port(state_file: Path) -> int:
    try:
        port = json.loads(state_file.read_text())["port"]
    except (OSError, ValueError, KeyError, TypeError):
        return 0
    return port if isinstance(port, int) and 0 < port < 65536 else 0


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
