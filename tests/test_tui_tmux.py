"""The real TUI in a real terminal: tmux runs `ssh -t` to a real sshd whose forced command
(`minipaas ssh`, written by `keys:add`) opens the TUI against a real server; the test types
keys with `tmux send-keys` and reads the screen with `tmux capture-pane`.

tmux runs on a private socket in the test's tmp dir and is killed at the end, with the sshd
and the server. Changes are checked through the API.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import pytest

from minipaas.client import Client
from tests.paas import SAMPLES, Paas, git_repo, push
from tests.support.ports import wait_for
from tests.support.sshd import SshdInstall, SSHServer, start_sshd
from tests.support.tmux import Tmux

APP = "tmuxed"

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


@pytest.fixture(scope="module")
def deployed_env(
    env: tuple[Paas, SSHServer], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Paas, SSHServer]:
    """The shared server and sshd (conftest `env`) with the app pushed over SSH."""
    paas, sshd = env
    paas.cli("apps:create", APP)
    repo = git_repo(SAMPLES / "worker-web", tmp_path_factory.mktemp("tui-tmux") / APP)
    result = push(repo, sshd.url(f"{APP}.git"), env={"GIT_SSH_COMMAND": sshd.git_ssh_command()})
    assert result.returncode == 0, result.stdout + result.stderr
    return paas, sshd


def formation(paas: Paas) -> dict[str, int]:
    with Client(socket=paas.data_dir / "minipaas.sock") as client:
        return client.get(f"/api/apps/{APP}")["formation"]  # type: ignore[no-any-return]


def drive(paas: Paas, tmux: Tmux, argv: list[str]) -> None:
    """Open the TUI with `argv` in tmux, scale the worker up and down, read logs, quit."""
    started = time.monotonic()
    tmux.start(argv)

    def opened() -> str | None:
        text = tmux.screen()
        assert "Unknown command" not in text, f"`minipaas ssh` did not open the TUI:\n{text}"
        assert "TUI-EXITED" not in text, f"the TUI exited:\n{text}"
        return text if APP in text and "Enter opens" in text else None

    screen = wait_for(opened, timeout=30, interval=0.05)
    print(f"\nfirst render over ssh -t: {time.monotonic() - started:.2f}s")
    assert "v1" in screen and "▲" in screen

    tmux.keys("Enter")
    tmux.wait("TYPE", "SCALE", "worker")
    tmux.keys("Down", "+")
    wait_for(lambda: formation(paas).get("worker") == 1, timeout=20, interval=0.2)
    tmux.wait("worker.1")
    tmux.keys("l")
    tmux.wait("heartbeat")
    tmux.keys("Escape")
    tmux.wait("worker.1", "Scale +")
    tmux.keys("-")
    wait_for(lambda: formation(paas).get("worker") == 0, timeout=20, interval=0.2)
    tmux.keys("Escape")
    tmux.wait("Enter opens")
    tmux.keys("q")
    tmux.wait("TUI-EXITED 0")


def test_tui_over_ssh_in_tmux(deployed_env: tuple[Paas, SSHServer], tmux: Tmux) -> None:
    """The product path: `ssh -t minipaas@host tui` through the forced command."""
    paas, sshd = deployed_env
    drive(paas, tmux, [*sshd.ssh_argv(tty=True), "tui"])


def test_plain_ssh_t_opens_the_tui(deployed_env: tuple[Paas, SSHServer], tmux: Tmux) -> None:
    """`ssh -t minipaas@host` with no command: a PTY and no words open the TUI."""
    paas, sshd = deployed_env
    drive(paas, tmux, sshd.ssh_argv(tty=True))


def test_tui_in_a_pty_over_sshd_with_a_direct_forced_command(
    deployed_env: tuple[Paas, SSHServer], tmux: Tmux, tmp_path: Path, sshd_install: SshdInstall
) -> None:
    """The same session with `python -m tui` as the forced command: the TUI's side alone,
    independent of how `minipaas ssh` dispatches."""
    paas, _ = deployed_env
    keys = tmp_path / "authorized_keys"
    sshd = start_sshd(tmp_path / "sshd", keys, install=sshd_install)
    try:
        command = f"{sys.executable} -m tui --data-dir {paas.data_dir}"
        keys.write_text(f'command="{command}",restrict,pty {sshd.client_key_pub}\n')
        drive(paas, tmux, sshd.ssh_argv(tty=True))
    finally:
        sshd.stop()
