"""Running a client command (git, curl) with a deadline that also stops what it started.

Owns: one helper around `subprocess.run`. `git push` over HTTPS forks `git remote-https` and
`git send-pack`; on a timeout `subprocess.run` kills only `git` itself and the helpers, holding
the connection, live on. Here the command gets its own session and the whole group is
SIGKILLed by its id (the command's pid) when the deadline passes.
Must not touch: processes outside that group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from typing import Any


def run_group(
    argv: list[str], *, timeout: float, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """`subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)`, never
    checking the status; on the timeout the command's process group is killed, then
    `subprocess.TimeoutExpired` is raised as usual."""
    with subprocess.Popen(
        argv,
        stdin=kwargs.pop("stdin", subprocess.DEVNULL),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        **kwargs,
    ) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc.pid)
            proc.communicate()
            raise
        except BaseException:
            kill_group(proc.pid)
            raise
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def kill_group(pgid: int) -> None:
    """SIGKILL process group `pgid` (a command started with `start_new_session`)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def mentioning(text: str) -> list[int]:
    """Pids of the processes whose command line contains `text` (a data dir, say), but this one."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if text.encode() in cmdline:
            found.append(int(entry.name))
    return found
