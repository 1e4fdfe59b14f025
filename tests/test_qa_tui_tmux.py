"""Quitting the real TUI from every screen, in a real terminal: tmux runs `ssh -t` to a real
sshd whose forced command (`minipaas ssh`, written by `keys:add`) opens the TUI against a real
server (the conftest `env`'s).

After Ctrl+C the session's command must exit 0, the terminal must be back to normal (no
alternate screen, no mouse reporting, cursor shown) and no `minipaas ssh` process may be left.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.paas import Paas
from tests.support.ports import wait_for
from tests.support.sshd import SSHServer
from tests.support.tmux import Tmux

APP = "quitter"

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

# Screen → the keys that open it from the apps list (the app is the only one), each with a
# text to wait for before the next key (a key sent while a screen is being pushed can be lost:
# reported, not covered here).
SCREENS: dict[str, list[tuple[str, str]]] = {
    "apps": [],
    "app": [("Enter", "SCALE")],
    "logs": [("Enter", "SCALE"), ("l", "search:")],
    "search": [("Enter", "SCALE"), ("l", "search:"), ("/", "Esc clears")],
    "metrics": [("Enter", "SCALE"), ("m", "Throughput")],
    "host": [("h", "CPU (all cores)")],
    "help": [("?", "this help")],
    "prompt": [("Enter", "SCALE"), ("3", "KEY"), ("s", "KEY=VALUE")],
}


@pytest.fixture(scope="module")
def app_env(env: tuple[Paas, SSHServer]) -> tuple[Paas, SSHServer]:
    """The conftest server and sshd (its sessions run this tree's TUI) with one app."""
    paas, sshd = env
    paas.cli("apps:create", APP)
    return paas, sshd


def ssh_processes(paas: Paas) -> list[str]:
    """The `minipaas ssh` processes serving this server's data dir."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
        if " ssh " in cmdline and f"--data-dir {paas.data_dir} " in cmdline:
            found.append(f"{proc.name}: {cmdline}")
    return found


@pytest.mark.parametrize("where", list(SCREENS))
def test_ctrl_c_quits_cleanly_from_every_screen(
    app_env: tuple[Paas, SSHServer], tmux: Tmux, where: str
) -> None:
    paas, sshd = app_env
    tmux.start(sshd.ssh_argv(tty=True))
    tmux.wait(APP, "Enter opens")
    for key, shown in SCREENS[where]:
        tmux.keys(key)
        tmux.wait(shown)
    assert ssh_processes(paas), "the TUI runs in a `minipaas ssh` process"
    assert tmux.run("display", "-p", "-t", tmux.session, "#{alternate_on}").stdout.strip() == "1"
    tmux.keys("C-c")
    screen = tmux.wait("TUI-EXITED 0")
    assert "Traceback" not in screen
    flags = tmux.run(
        "display",
        "-p",
        "-t",
        tmux.session,
        "#{alternate_on} #{mouse_any_flag} #{mouse_button_flag} #{cursor_flag}",
    ).stdout.split()
    assert flags == ["0", "0", "0", "1"], flags  # main screen, no mouse mode, cursor shown
    wait_for(lambda: not ssh_processes(paas), timeout=10, interval=0.1)


def test_escape_sequences_in_config_values_do_not_reach_the_terminal(
    app_env: tuple[Paas, SSHServer], tmux: Tmux
) -> None:
    """A revealed config value with an OSC title sequence and a screen clear is drawn with
    U+FFFD for the escapes; the terminal's title and screen stay the TUI's."""
    paas, sshd = app_env
    value = "\x1b]2;PWNED\x07\x1b[2Jafter"
    paas.cli("config:set", f"TRAP={value}", "-a", APP)
    try:
        tmux.start(sshd.ssh_argv(tty=True))
        tmux.wait(APP, "Enter opens")
        tmux.keys("Enter")
        tmux.wait("SCALE")
        tmux.keys("3")
        tmux.wait("TRAP")
        tmux.keys("v")
        # Revealed: the escapes drawn as U+FFFD (the column may stay as wide as the mask: seen
        # once in a loaded run, a defect of its own, not checked here).
        screen = tmux.wait("\ufffd]2;PWNE")
        assert "Enter opens" not in screen and "TRAP" in screen  # not cleared, still drawn
        title = tmux.run("display", "-p", "-t", tmux.session, "#{pane_title}").stdout
        assert "PWNED" not in title
        tmux.keys("C-c")
        tmux.wait("TUI-EXITED 0")
    finally:
        paas.cli("config:unset", "TRAP", "-a", APP)
