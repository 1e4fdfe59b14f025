"""tests/support: a command past its deadline takes what it forked with it (procs.py); free_port
never hands out a port twice (ports.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.ports import free_port, wait_for
from tests.support.procs import run_group


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def test_timeout_kills_the_commands_children(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    # like `git push`: the command forks a helper that keeps the output pipe open
    script = f"sleep 600 & echo $! > {pid_file}; wait"
    with pytest.raises(subprocess.TimeoutExpired):
        run_group(["sh", "-c", script], timeout=1)
    child = int(wait_for(lambda: pid_file.read_text().strip(), timeout=5, message="the pid file"))
    wait_for(lambda: _gone(child), timeout=5, message=f"helper {child} to be killed")


def test_output_and_status_as_subprocess_run(tmp_path: Path) -> None:
    result = run_group(["sh", "-c", "echo out; echo err >&2; exit 3"], timeout=10, cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (3, "out\n", "err\n")


def test_free_port_never_hands_out_a_port_twice() -> None:
    """The kernel's pick for port 0 repeats (971 distinct in 1,000 picks here); a server's HTTP
    and HTTPS ports once came out equal and its Caddy refused the config."""
    ports = [free_port() for _ in range(1000)]
    assert len(set(ports)) == len(ports)
