"""A real terminal for TUI tests: a private tmux server (its own socket) and its `tmux` fixture.

Owns: one tmux server per test, killed at teardown also when the test fails (the fixture is
registered through conftest's `pytest_plugins`). Must not touch: any other tmux server.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.ports import wait_for


@dataclass
class Tmux:
    socket: Path
    session: str = "tui"

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["tmux", "-S", str(self.socket), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )

    def start(self, argv: list[str], width: int = 100, height: int = 30) -> None:
        command = shlex.join(argv) + "; echo TUI-EXITED $?; sleep 600"
        result = self.run(
            "new-session", "-d", "-s", self.session, "-x", str(width), "-y", str(height), command
        )
        assert result.returncode == 0, result.stderr

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", self.session).stdout

    def keys(self, *keys: str) -> None:
        for key in keys:
            self.run("send-keys", "-t", self.session, key)

    def wait(self, *needles: str, timeout: float = 30) -> str:
        def shown() -> str | None:
            text = self.screen()
            return text if all(n in text for n in needles) else None

        try:
            return wait_for(shown, timeout=timeout, interval=0.1)
        except TimeoutError as exc:
            raise AssertionError(f"never saw {needles} on screen:\n{self.screen()}") from exc

    def kill(self) -> None:
        self.run("kill-server")


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    """A tmux server of this test's own, killed afterwards."""
    mux = Tmux(tmp_path / "tmux.sock")
    try:
        yield mux
    finally:
        mux.kill()
