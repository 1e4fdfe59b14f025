"""Process plumbing for dynos: spawn detached, identify by (pid, start ticks), watch with pidfd.

Owns only Linux process mechanics: /proc parsing, process groups, pidfds, ports. It knows
nothing about apps, specs or logs, and never sleeps except while polling what it is asked to.

A dyno must not depend on the server process: it is spawned in its own session (no controlling
terminal, no SIGHUP), with stdin from /dev/null and stdout/stderr on a file the caller opened,
so the server may die or exit while the dyno keeps running and writing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Sequence


def proc_stat(pid: int) -> list[bytes] | None:
    """Fields of /proc/<pid>/stat from field 3 (state) on, or None if there is no such pid."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: cut after the last ")".
    return stat[stat.rfind(b")") + 2 :].split()


def start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks since boot); None if gone.

    A zombie (exited, not yet reaped) counts as gone.
    """
    fields = proc_stat(pid)
    if fields is None or len(fields) < 20 or fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def is_running(pid: int, ticks: int) -> bool:
    """Whether `pid` is still the process that started at `ticks` (not a recycled pid)."""
    return pid > 0 and start_ticks(pid) == ticks


def kill_group(pgid: int | None, sig: int) -> None:
    if pgid is None or pgid <= 0:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def session_pids(sid: int, pid_ns: str | None = None) -> list[int]:
    """The live processes of session `sid` (field 6 of /proc/<pid>/stat, in this PID namespace's
    numbers: processes of a dyno's PID namespace are listed too, by their host pids); with
    `pid_ns` (a readlink of /proc/<pid>/ns/pid) only those of that PID namespace."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = proc_stat(int(entry.name))
            if fields and len(fields) > 3 and fields[0] not in (b"Z", b"X") and (
                fields[3] == str(sid).encode()
            ):
                if pid_ns is not None:
                    try:
                        if os.readlink(f"/proc/{entry.name}/ns/pid") != pid_ns:
                            continue
                    except OSError:
                        continue
                found.append(int(entry.name))
    return found


def kill_session(sid: int, pid_ns: str | None = None, rounds: int = 10) -> None:
    """SIGKILL every process of session `sid` (of PID namespace `pid_ns` only, if given), again
    while some remain (one may fork while the first ones die). A process group is not enough for
    a shell with job control, which puts each job in a group of its own; its jobs stay in its
    session unless they call setsid(2). Once the session's leader is reaped its pid may be
    reused only when no process of the session is left, so `pid_ns` keeps a session that a
    stranger would then lead out of reach."""
    for _ in range(rounds):
        pids = session_pids(sid, pid_ns)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def kill_marked(pid_ns: str, marker: bytes, rounds: int = 10) -> None:
    """SIGKILL every process of PID namespace `pid_ns` whose environment (as it was exec'd:
    /proc/<pid>/environ, readable as root) holds the entry `marker` (`NAME=value`), again
    while some remain. A `ps:exec` session marks its command so: what it started that left
    the session with setsid(2) is still found (unless it was exec'd with that entry removed)."""
    for _ in range(rounds):
        found = []
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                if os.readlink(f"/proc/{entry.name}/ns/pid") != pid_ns:
                    continue
                with open(f"/proc/{entry.name}/environ", "rb") as f:
                    environ = f.read()
            except OSError:
                continue
            if marker in environ.split(b"\0"):
                found.append(int(entry.name))
        if not found:
            return
        for pid in found:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def hang_up_sandboxed(pgid: int) -> list[int]:
    """SIGHUP, as a terminal's hangup sends it, to the processes of group `pgid` that run in a
    sandbox (a PID namespace other than this process's): a command on pipes whose client went
    away. Not to the group's outer processes on the host (bubblewrap's monitor, nsenter), which
    would die of it and take the sandbox with them (`--die-with-parent`) before the command
    could answer it. The pids signalled."""
    try:
        own = os.readlink("/proc/self/ns/pid")
    except OSError:
        return []
    hung = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = proc_stat(int(entry.name))
        if not fields or len(fields) < 3 or fields[0] in (b"Z", b"X"):
            continue
        if fields[2] != str(pgid).encode():
            continue
        try:
            if os.readlink(f"/proc/{entry.name}/ns/pid") == own:
                continue
        except OSError:
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(int(entry.name), signal.SIGHUP)
            hung.append(int(entry.name))
    return hung


def group_alive(pgid: int) -> bool:
    """Whether a process of group `pgid` still runs (zombies waiting for a reaper do not count).

    The dyno's bwrap init is orphaned when the outer bwrap dies, so it is reaped by the host's
    init, which may take its time; a zombie holds no resources and keeps the group id reserved.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = proc_stat(int(entry.name))
        if (
            fields is not None
            and len(fields) > 2
            and int(fields[2]) == pgid
            and fields[0] not in (b"Z", b"X")
        ):
            return True
    return False


def spawn_detached(
    argv: Sequence[str], env: dict[str, str], output_fd: int
) -> subprocess.Popen[bytes]:
    """Start `argv` in a new session, stdin /dev/null, stdout+stderr on `output_fd`.

    Returns the Popen for its pid only: the caller reaps it with `wait_exit` (never through
    Popen, so a dropped Popen never kills or waits for the dyno).
    """
    exe = shutil.which(argv[0], path=env.get("PATH", os.defpath))
    if exe is None:
        raise FileNotFoundError(f"{argv[0]!r} is not on the dyno's PATH")
    return subprocess.Popen(  # argv list from sandbox_argv, no shell
        list(argv),
        executable=exe,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=output_fd,
        stderr=output_fd,
        start_new_session=True,
        close_fds=True,
    )


async def wait_exit(pid: int, proc: subprocess.Popen[bytes] | None = None) -> int | None:
    """Wait (pidfd, no thread, no polling) until `pid` exits; its status if it is our child.

    Statuses: the exit code, or minus the signal number. None when unknown: an adopted dyno is
    not our child (its parent is the host's init now), so only its end can be seen.
    """
    loop = asyncio.get_running_loop()
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        pidfd = None
    if pidfd is not None:
        exited: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            if not exited.done():
                exited.set_result(None)

        loop.add_reader(pidfd, readable)
        try:
            await exited
        finally:
            loop.remove_reader(pidfd)
            os.close(pidfd)
    try:
        reaped, status = os.waitpid(pid, os.WNOHANG)  # noqa: ASYNC222 - WNOHANG: never blocks
    except ChildProcessError:
        return None
    if reaped == 0:
        return None
    code = os.waitstatus_to_exitcode(status)
    if proc is not None:
        proc.returncode = code  # our own bookkeeping: Popen must never wait for it itself
    return code


def port_is_free(port: int) -> bool:
    # Apps bind 0.0.0.0 as often as 127.0.0.1; binding the wildcard clashes with either.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("0.0.0.0", port))  # noqa: S104 - a probe, closed at once
        except OSError:
            return False
    return True


#: Local addresses (as /proc/net/tcp{,6} spell them) of a listener that 127.0.0.1 reaches, where
#: Caddy and the health check dial dynos: 127.0.0.1, 0.0.0.0, `::` (dual stack) and their
#: IPv4-mapped forms. A dyno listening on ::1 alone is not reached there: another app that
#: took 127.0.0.1 on the same port would pass its checks and get its traffic.
LOOPBACK_V4_LISTENERS = {
    b"0100007F", b"00000000",
    b"00000000000000000000000000000000",
    b"0000000000000000FFFF00000100007F", b"0000000000000000FFFF000000000000",
}


def listening_inodes(port: int) -> set[str]:
    """Inodes of the sockets listening on TCP `port` that 127.0.0.1:`port` reaches."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, "rb") as fh:
                lines = fh.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) <= 9 or fields[3] != b"0A":  # state 0A is LISTEN
                continue
            address, _, hex_port = fields[1].rpartition(b":")  # HEXIP:HEXPORT
            if int(hex_port, 16) == port and address.upper() in LOOPBACK_V4_LISTENERS:
                inodes.add(fields[9].decode())
    return inodes


def group_listens_on(pgid: int, port: int) -> bool:
    """True when a process of process group `pgid` holds a socket listening on `port`.

    A dyno is ready only when *its own* process listens: another process that happens to hold
    the port (a dyno of another app, anything on the host) must never be mistaken for it.
    """
    wanted = {f"socket:[{inode}]" for inode in listening_inodes(port)}
    if not wanted:
        return False
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = proc_stat(int(entry))
        if stat is None or len(stat) < 3 or stat[2] != str(pgid).encode():
            continue
        try:
            fds = os.listdir(f"/proc/{entry}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{entry}/fd/{fd}") in wanted:
                    return True
            except OSError:
                continue
    return False


async def accepts(port: int, timeout: float = 1.0) -> bool:  # noqa: ASYNC109
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True
