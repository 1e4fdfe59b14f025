"""The router's long-lived children (Caddy, the upstream resolver) and their pid files.

Both outlive minipaas on purpose, so a restart must find them again without ever mistaking a
recycled pid for them: a pid file records the pid with its kernel start time, and only a live
process with the same start time counts. `KeptChild` is what both processes share: the pid
(spawned or adopted), whether it is alive, and stopping it by pid. Spawning is theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def proc_stat(pid: int) -> list[str] | None:
    """/proc/PID/stat fields after the command name (field 3 onwards)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def alive(pid: int) -> bool:
    fields = proc_stat(pid)
    if fields is None or fields[0] == "X":
        return False
    if fields[0] != "Z":
        return True
    # A zombie is dead once all its threads are gone: a killed Go process shows its leader as
    # Z while the other threads (still holding sockets) are being torn down.
    try:
        return len(os.listdir(f"/proc/{pid}/task")) > 1
    except OSError:
        return False


def start_time(pid: int) -> int | None:
    fields = proc_stat(pid)
    return int(fields[19]) if fields is not None else None  # field 22: starttime


def record(path: Path, pid: int, **extra: Any) -> None:
    """Write `path` (atomically) naming `pid` and its start time, plus `extra` fields."""
    data = {"pid": pid, "start_time": start_time(pid), **extra}
    write_atomic(path, json.dumps(data) + "\n")


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` in one rename: readers see the old or the new, never half."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def recorded(path: Path) -> dict[str, Any] | None:
    """The fields of `path` when it names a live process with the recorded start time."""
    try:
        data = json.loads(path.read_text())
        pid, started = int(data["pid"]), int(data["start_time"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(data, dict) or start_time(pid) != started or not alive(pid):
        return None
    return data


def stop_recorded(path: Path, timeout: float) -> bool:
    """SIGTERM the process `path` names (SIGKILL after `timeout`); True if there was one."""
    data = recorded(path)
    if data is None:
        return False
    stop_pids([int(data["pid"])], timeout)
    path.unlink(missing_ok=True)
    return True


def find_running(tail: Sequence[str], *, marker: str | None = None) -> list[int]:
    """Live processes whose command line ends with `tail` (and, given `marker`, has an argument
    containing it): a child whose pid file was lost or overwritten, found by the paths in its
    command line, which belong to one data dir."""
    want = [os.fsencode(arg) for arg in tail]
    mark = os.fsencode(marker) if marker is not None else None
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = entry.joinpath("cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[-1:] == [b""]:
            argv.pop()
        if len(argv) <= len(want) or argv[-len(want) :] != want:
            continue
        if mark is not None and not any(mark in arg for arg in argv[: -len(want)]):
            continue
        if alive(pid := int(entry.name)):
            found.append(pid)
    return sorted(found)


def stop_running(tail: Sequence[str], timeout: float, *, marker: str | None = None) -> list[int]:
    """Stop every process `find_running(tail, marker=...)` finds (see `stop_pids`); their pids."""
    pids = find_running(tail, marker=marker)
    stop_pids(pids, timeout)
    return pids


def stop_pids(pids: Sequence[int], timeout: float) -> None:
    """SIGTERM each of `pids`, SIGKILL those still alive after `timeout` seconds."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(pid) for pid in pids):
        time.sleep(0.05)
    for pid in pids:
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


async def until_one_exits(children: Sequence[KeptChild]) -> None:
    """Return once one of `children` is not running: at once if one is not, else when the
    kernel says one exited (a pidfd per process, so no polling, children or not)."""
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()
    fds: list[int] = []

    def wake() -> None:
        if not exited.done():
            exited.set_result(None)

    try:
        for child in children:
            if child.pid is None:
                return
            try:
                fd = os.pidfd_open(child.pid)
            except ProcessLookupError:
                return
            fds.append(fd)
            loop.add_reader(fd, wake)
        # Opened after the pid was read: a process that died in between is caught here.
        if all(child.alive() for child in children):
            await exited
    finally:
        for fd in fds:
            loop.remove_reader(fd)
            os.close(fd)


class KeptChild:
    """A process started in its own session (`_popen`) or adopted from a pid file (`_pid` only)."""

    def __init__(self) -> None:
        self._popen: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None

    @property
    def pid(self) -> int | None:
        return self._pid

    def alive(self) -> bool:
        if self._pid is None:
            return False
        if self._popen is not None:
            return self._popen.poll() is None  # also reaps it
        return alive(self._pid)

    async def _stop(self, grace: float) -> None:
        """SIGTERM by pid, wait up to `grace` seconds, then SIGKILL; forget the process."""
        pid = self._pid
        if pid is not None and self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            if not await self._wait_dead(grace):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                await self._wait_dead(5.0)
        self._popen, self._pid = None, None

    async def _wait_dead(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while self.alive():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True
