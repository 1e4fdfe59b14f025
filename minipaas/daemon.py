"""A background service minipaas starts and keeps running for the add-ons (the PostgreSQL
cluster, each app's redis-server): spawned in a session of its own as its system user, with an
owner-only log; adopted across restarts of minipaas by its pid (it outlives them on purpose);
started again by `watch` when it dies while wanted (a pidfd, no polling; deaths in quick
succession wait longer and longer); stopped by a sequence of signals.

Owns the process bookkeeping only. A subclass says where its log is, how a live process of its
own is recognised (`live_pid`: its pid file, checked against /proc), how it starts and what
"ready" means (`_start`, which calls `_spawn`), and which signals stop it (`STOP_SIGNALS`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import pwd
import random
import signal
import socket
import subprocess
import time
from collections.abc import Container, Mapping, Sequence
from pathlib import Path
from typing import Any

from minipaas.errors import UserError

log = logging.getLogger(__name__)

#: A death within this many seconds of the last restart counts as a quick one ...
REVIVE_WINDOW = 10.0
#: ... and waits 1 s, 2 s, 4 s ... up to this long before the next start.
REVIVE_MAX_WAIT = 30.0
#: (signal, seconds to wait for the exit) in turn until the process is gone.
StopSignals = Sequence[tuple[signal.Signals, float]]


def proc_state(pid: int) -> str | None:
    """The state letter of process `pid` in /proc (`S`, `R`, `Z` ...), None if there is none."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()[0]


def alive(pid: int) -> bool:
    """Process `pid` exists and is no zombie."""
    return proc_state(pid) not in (None, "Z", "X")


def names_in_argv(pid: int, text: str) -> bool:
    """Process `pid` is alive and one of its arguments is exactly `text` (a path: how a pid
    read from a pid file is told from another process that got the number after a reboot)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return os.fsencode(text) in argv and alive(pid)


def as_system_user(user: str, product: str, package: str) -> dict[str, Any]:
    """The Popen arguments that run a service as its system `user` (none when minipaas is not
    root: the service then runs as minipaas's own user); `UserError` if there is no such user,
    saying to install `package` (of `product`), which creates it."""
    if os.geteuid() != 0:
        return {}
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise UserError(
            f"The system user {user!r} does not exist: install {product} with "
            f"`apt-get install {package}`, which creates it."
        ) from None
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def free_port(ports: range, product: str, taken: Container[int] = ()) -> int:
    """A port of `ports`, tried in random order, that is not in `taken` and that nothing
    listens on at 127.0.0.1; `UserError` if there is none."""
    for port in random.sample(ports, len(ports)):
        if port in taken:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise UserError(f"No free port in {ports.start}-{ports.stop - 1} for {product}.")


def stop_pid(pid: int, signals: StopSignals) -> None:
    """Blocking: each signal in turn until `pid` is gone (`minipaas down` without a server)."""
    for sig, wait in signals:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and alive(pid):
            time.sleep(0.05)
        if not alive(pid):
            return


class Daemon:
    """One service process. Not started by creating it: `start` (or `adopt`) does."""

    #: What `watch`'s log lines call it.
    title = "the service"
    #: How `stop` ends it.
    STOP_SIGNALS: StopSignals = ((signal.SIGTERM, 30.0), (signal.SIGKILL, 5.0))

    def __init__(self, root: Path) -> None:
        self.root = root
        self._popen: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None
        self._lock = asyncio.Lock()
        #: Set while it should run (started or adopted); `watch` restarts it then.
        self._wanted = asyncio.Event()

    # -- what a subclass says ----------------------------------------------------------------

    @property
    def log_file(self) -> Path:
        raise NotImplementedError

    def live_pid(self) -> int | None:
        """The pid of a live process of this service (left by an earlier run), or None."""
        raise NotImplementedError

    async def _start(self) -> None:
        """Under the lock: start it unless it runs (or can be adopted); return once ready."""
        raise NotImplementedError

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._pid

    def running(self) -> bool:
        if self._pid is None:
            return False
        if self._popen is not None:
            return self._popen.poll() is None  # also reaps it
        return alive(self._pid)

    def adopt(self) -> bool:
        """Take over the process an earlier run left alive (server start); True if there was
        one."""
        pid = self.live_pid()
        if pid is None:
            return False
        self._popen, self._pid = None, pid
        self._wanted.set()
        return True

    async def start(self) -> None:
        """Adopt the process an earlier run left alive, or start one; returns once it is
        ready. `UserError` (from `_start`) if it cannot be had."""
        async with self._lock:
            await self._start()

    async def _spawn(
        self, argv: list[str], owner: Mapping[str, Any], env: Mapping[str, str], cwd: Path
    ) -> None:
        """Start `argv` as the owner (Popen's user/group arguments) with its output appended
        to the log; from now on it is watched."""
        self._popen = await asyncio.to_thread(self._popen_logged, argv, owner, env, cwd)
        self._pid = self._popen.pid
        # Only now, with a pid to watch: `watch` woken before would take "no pid yet" for a
        # death, log it and count it towards the backoff of the next real one.
        self._wanted.set()

    def _popen_logged(
        self, argv: list[str], owner: Mapping[str, Any], env: Mapping[str, str], cwd: Path
    ) -> subprocess.Popen[bytes]:
        # The log is owner-only: it may name roles, databases, ports.
        fd = os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "ab") as out:
            # Own session: a Ctrl-C or SIGTERM to minipaas's process group must not reach it.
            return subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=dict(env),
                start_new_session=True,
                **owner,
            )

    def _log_tail(self) -> str:
        """The log's last line (what a failed start says), or ""."""
        try:
            lines = self.log_file.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1] if lines else ""

    async def stop(self) -> None:
        """STOP_SIGNALS in turn until it is gone; `watch` stops restarting it."""
        self._wanted.clear()
        async with self._lock:
            pid = self._pid if self.running() else self.live_pid()
            if pid is not None:
                for sig, wait in self.STOP_SIGNALS:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, sig)
                    if await self._wait_dead(pid, wait):
                        break
            self._popen, self._pid = None, None

    async def _wait_dead(self, pid: int, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while True:
            if self._popen is not None and self._popen.pid == pid:
                if self._popen.poll() is not None:
                    return True
            elif not alive(pid):
                return True
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.02)

    def detach(self) -> None:
        """A restart of minipaas: the process keeps running, the next start adopts it."""
        self._wanted.clear()
        if self._popen is not None:
            # Forget the child without waiting for it (it outlives us on purpose).
            self._popen.returncode = 0
        self._popen = None

    async def watch(self) -> None:
        """Until cancelled: whenever the process stops while it should run (the OOM killer, a
        crash, a stray kill -9), start it again; deaths in quick succession wait longer and
        longer (up to REVIVE_MAX_WAIT) before the next start. Cancel it before `stop`."""
        streak, last = 0, -math.inf
        while True:
            await self._wanted.wait()
            await self._until_exit()
            if not self._wanted.is_set():
                continue
            streak = streak + 1 if time.monotonic() - last < REVIVE_WINDOW else 0
            if streak:
                await asyncio.sleep(min(REVIVE_MAX_WAIT, 0.5 * 2**streak))
            last = time.monotonic()
            if not self._wanted.is_set():
                continue
            log.warning("%s (pid %s) stopped; starting it again", self.title, self._pid)
            try:
                await self.start()
            except Exception as exc:  # logged; the next round tries again
                log.error("could not start %s again: %s", self.title, exc)

    async def _until_exit(self) -> None:
        """Return once the process is not running (a pidfd, so no polling)."""
        pid = self._pid
        if pid is None or not self.running():
            return
        loop = asyncio.get_running_loop()
        exited: asyncio.Future[None] = loop.create_future()
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return

        def wake() -> None:
            if not exited.done():
                exited.set_result(None)

        loop.add_reader(fd, wake)
        try:
            if self.running():  # opened after the pid was read: a death in between
                await exited
        finally:
            loop.remove_reader(fd)
            os.close(fd)
        self.running()  # reaps our child
