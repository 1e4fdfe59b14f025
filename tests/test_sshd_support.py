"""Tests for the test harness itself: the private real sshd and the polling helpers."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import textwrap
import threading
import time
from pathlib import Path

import pytest

from tests.support.fixtures import StartSSHD, ssh_server, sshd_factory, sshd_install
from tests.support.ports import async_wait_for, free_port, is_listening, wait_for
from tests.support.sshd import SshdUnavailable, SSHServer, ensure_sshd, forced_command_line

__all__ = ["ssh_server", "sshd_factory", "sshd_install"]  # fixtures used below by name

CLIENT_ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return path


def alive(pid: int) -> bool:
    """True unless the process is gone or a zombie (PID 1 here reaps orphans lazily)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def ssh(
    server: SSHServer,
    *words: str,
    tty: bool = False,
    key: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    argv = server.ssh_argv(tty=tty)
    if key is not None:
        argv[argv.index(str(server.client_key))] = str(key)
    return subprocess.run(
        [*argv, *words],
        env=CLIENT_ENV,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_forced_command_gets_original_command_and_setenv(
    sshd_factory: StartSSHD, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data dir"  # a space, to check SetEnv quoting
    server = sshd_factory(env_passthrough={"MINIPAAS_DATA_DIR": str(data_dir)})
    echo = script(
        tmp_path / "echo.sh",
        """\
        printf 'cmd=%s\\n' "$SSH_ORIGINAL_COMMAND"
        printf 'data=%s\\n' "$MINIPAAS_DATA_DIR"
        printf 'user=%s\\n' "$(id -un)"
    """,
    )
    server.authorized_keys.write_text(forced_command_line(f"{echo} alice", server.client_key_pub))

    done = ssh(server, "hello", "world")

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["cmd=hello world", f"data={data_dir}", "user=root"]
    assert "forced-command (key-option)" in server.log_text()


def test_pty_request_is_honoured(ssh_server: SSHServer, tmp_path: Path) -> None:
    probe = script(
        tmp_path / "tty.sh",
        """\
        if [ -t 0 ] && [ -t 1 ]; then echo "tty=yes $(tty)"; else echo tty=no; fi
    """,
    )
    ssh_server.authorized_keys.write_text(
        forced_command_line(str(probe), ssh_server.client_key_pub)
    )

    with_tty = ssh(ssh_server, "tui", tty=True)
    without = ssh(ssh_server, "tui")

    assert with_tty.returncode == 0, with_tty.stderr
    assert with_tty.stdout.startswith("tty=yes /dev/pts/"), with_tty.stdout
    assert without.stdout.strip() == "tty=no"


def test_unknown_key_is_refused(ssh_server: SSHServer, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    touch = script(tmp_path / "touch.sh", f"touch {marker}\n")
    ssh_server.authorized_keys.write_text(
        forced_command_line(str(touch), ssh_server.client_key_pub)
    )
    stranger = tmp_path / "stranger_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)],
        check=True,
        timeout=30,
        env=CLIENT_ENV,
    )

    done = ssh(ssh_server, "hello", key=stranger)

    assert done.returncode == 255
    assert "Permission denied (publickey)" in done.stderr
    assert not marker.exists()


def test_git_push_over_ssh_url_with_port(sshd_factory: StartSSHD, tmp_path: Path) -> None:
    repos = tmp_path / "repos"
    repos.mkdir()
    subprocess.run(
        ["git", "init", "-q", "--bare", "-b", "main", str(repos / "app.git")],
        check=True,
        timeout=30,
        env=CLIENT_ENV,
    )
    server = sshd_factory(env_passthrough={"REPOS": str(repos)})
    serve = script(
        tmp_path / "git-serve.sh",
        """\
        set -eu
        set -- $SSH_ORIGINAL_COMMAND  # git-receive-pack '/app.git'
        case "$1" in git-receive-pack|git-upload-pack) ;; *) echo "unknown: $1" >&2; exit 1;; esac
        repo=$(printf %s "$2" | tr -d "'")
        exec "$1" "$REPOS/${repo#/}"
    """,
    )
    server.authorized_keys.write_text(forced_command_line(str(serve), server.client_key_pub))
    work = tmp_path / "work"
    env = {
        **CLIENT_ENV,
        "HOME": str(tmp_path),
        "GIT_SSH_COMMAND": server.git_ssh_command(),
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.test",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.test",
    }

    def git(*args: str, cwd: Path = work) -> str:
        return subprocess.run(
            ["git", *args], cwd=cwd, env=env, check=True, timeout=60, capture_output=True, text=True
        ).stdout.strip()

    git("init", "-q", "-b", "main", str(work), cwd=tmp_path)
    (work / "Procfile").write_text("web: python app.py\n")
    git("add", "Procfile")
    git("commit", "-q", "-m", "first")
    git("push", "-q", server.url("app.git"), "main")

    assert git("--git-dir", str(repos / "app.git"), "rev-parse", "main") == git("rev-parse", "HEAD")
    assert server.url("/app.git") == f"ssh://root@127.0.0.1:{server.port}/app.git"


def test_stop_kills_listener_and_open_sessions(ssh_server: SSHServer, tmp_path: Path) -> None:
    pidfile = tmp_path / "session.pid"
    sleeper = script(
        tmp_path / "sleep.sh",
        f"echo $$ > {pidfile}.tmp && mv {pidfile}.tmp {pidfile}\nexec sleep 120\n",
    )
    ssh_server.authorized_keys.write_text(
        forced_command_line(str(sleeper), ssh_server.client_key_pub)
    )
    client = subprocess.Popen(
        [*ssh_server.ssh_argv(), "x"],
        env=CLIENT_ENV,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        session_pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 20))

        ssh_server.stop()

        assert not is_listening(ssh_server.port)
        assert not alive(session_pid)
        client.wait(timeout=20)  # the connection closed when the session died
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    ssh_server.stop()  # idempotent


def test_a_stop_that_cannot_clear_the_sessions_names_the_processes_left(
    ssh_server: SSHServer,
) -> None:
    """A process that keeps entering the sshd's mount namespace after the stop killed the
    sessions (here: this test, with nsenter, over and over) outlasts the stop's wait; the
    error says which pids are left, their state and their argv."""
    namespace = os.open(f"/proc/{ssh_server.pid}/ns/mnt", os.O_RDONLY)
    entered: list[subprocess.Popen[bytes]] = []
    done = threading.Event()

    def enter() -> None:
        while not done.is_set():
            entered.append(subprocess.Popen(
                ["nsenter", f"--mount=/proc/{os.getpid()}/fd/{namespace}", "sleep", "61.5"]
            ))
            time.sleep(0.05)

    thread = threading.Thread(target=enter)
    thread.start()
    try:
        wait_for(lambda: len(entered) > 2, 10)
        with pytest.raises(TimeoutError) as caught:
            ssh_server.stop(timeout=1)
    finally:
        done.set()
        thread.join()
        os.close(namespace)
        for proc in entered:
            proc.kill()
            proc.wait()
    message = str(caught.value)
    assert message.startswith(
        f"Timed out after 1s waiting for the sessions of the sshd on port {ssh_server.port} "
        "to exit"
    ), message
    left = re.findall(r"(\d+) ([A-Z]) sleep 61\.5(?:;|$)", message.partition(" Left: ")[2])
    assert left, message
    assert {int(pid) for pid, _state in left} <= {proc.pid for proc in entered}, message


def test_missing_debs_fail_with_a_clear_message(tmp_path: Path) -> None:
    fake_apt = script(
        tmp_path / "apt-get",
        """\
        echo "E: Unable to locate package openssh-server" >&2
        exit 100
    """,
    )

    with pytest.raises(SshdUnavailable, match=r"apt-get download.*Unable to locate package"):
        ensure_sshd(tmp_path / "cache", apt_get=(str(fake_apt),))


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        assert is_listening(port)


def test_wait_for_returns_the_truthy_value_or_times_out() -> None:
    calls = iter([0, "", "ready"])
    assert wait_for(lambda: next(calls), timeout=5, interval=0.001) == "ready"
    with pytest.raises(TimeoutError, match=r"the moon.*last value: None"):
        wait_for(lambda: None, timeout=0.05, interval=0.01, message="the moon")


async def test_async_wait_for_accepts_async_predicates() -> None:
    seen: list[int] = []

    async def grows() -> int:
        seen.append(1)
        return len(seen) if len(seen) >= 3 else 0

    assert await async_wait_for(grows, timeout=5, interval=0.001) == 3
    with pytest.raises(TimeoutError):
        await async_wait_for(lambda: False, timeout=0.05, interval=0.01)
