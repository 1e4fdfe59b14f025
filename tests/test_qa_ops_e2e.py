"""QA of the operations features against a real server: what happens to an app's one-off dynos
(`run`, the path cron jobs take) when the app is destroyed, and more."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from tests.paas import SAMPLES, Paas, deployed, git_repo, ssh_push
from tests.support.ports import wait_for
from tests.support.sshd import SSHServer


def _sleeping(seconds: str) -> bool:
    """A `sleep SECONDS` process runs on this machine (argv exactly `sleep SECONDS`)."""
    wanted = b"sleep\0" + seconds.encode() + b"\0"
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "cmdline").read_bytes() == wanted:
                return True
        except OSError:
            continue
    return False


def _marker() -> str:
    return f"{os.getpid()}.{time.monotonic_ns() % 100000}"


def test_destroy_kills_the_apps_one_off_dynos(
    env: tuple[Paas, SSHServer], tmp_path: Path
) -> None:
    """`apps:destroy` left a running `minipaas run` (and so a cron job: the same one-off path)
    running for up to an hour, under the app's uid, and its exit line recreated the destroyed
    app's log directory."""
    paas, sshd = env
    app = "qaops-gone"
    paas.cli("apps:create", app)
    deployed(ssh_push(sshd, git_repo(SAMPLES / "python-stdlib", tmp_path / app), app))
    detached, attached = _marker(), _marker() + "1"
    # stdin /dev/null: the API's streamed run (run_once, as cron); a pipe: the attached run.
    clients = [
        subprocess.Popen(
            [str(paas.exe), "run", "-a", app, "--", "sh", "-c", f"sleep {marker}; echo done"],
            stdin=stdin,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=paas.env,
        )
        for marker, stdin in ((detached, subprocess.DEVNULL), (attached, subprocess.PIPE))
    ]
    try:
        wait_for(lambda: _sleeping(detached) and _sleeping(attached), timeout=30, interval=0.1)
        paas.cli("apps:destroy", "-a", app, "--confirm", app)
        assert not _sleeping(detached) and not _sleeping(attached)  # gone before it answered
        for client in clients:
            client.wait(timeout=30)
    finally:
        for client in clients:
            client.kill()
            client.wait()
            if client.stdin is not None:
                client.stdin.close()
    assert not (paas.data_dir / "logs" / app).exists()
    paas.cli("apps:create", app)  # the name is free again, with no logs of the old app
    assert "sleep" not in paas.cli("logs", "-a", app).stdout
    paas.cli("apps:destroy", "-a", app, "--confirm", app)
