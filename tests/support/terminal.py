"""A command on a real terminal (a pty of 24 x 80), driven the way a user types: what a test of
an interactive command (`pg:psql`, `redis:cli`, `run`) reads and writes."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import select
import struct
import subprocess
import termios
from collections.abc import Iterator, Mapping, Sequence

from tests.support.ports import wait_for


class Terminal:
    """`argv` with a pty as its stdin, stdout and stderr, in a session of its own."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str]) -> None:
        self.main, tty = pty.openpty()
        # A user's size: a few lines of output need no pager.
        fcntl.ioctl(tty, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        try:
            self.proc = subprocess.Popen(
                list(argv), stdin=tty, stdout=tty, stderr=tty,
                env={**env, "TERM": "xterm"}, start_new_session=True,
            )  # fmt: skip
        finally:
            os.close(tty)
        self.seen = bytearray()

    def _read(self) -> None:
        ready, _, _ = select.select([self.main], [], [], 0.5)
        if ready:
            with contextlib.suppress(OSError):  # EIO: the other side is closed
                self.seen.extend(os.read(self.main, 65536))

    def expect(self, text: bytes, timeout: float = 30) -> None:
        """Wait until the screen has shown `text` (anywhere in all output so far)."""

        def shown() -> bool:
            self._read()
            return text in self.seen

        wait_for(shown, timeout=timeout, message=f"{text!r} on the terminal")

    def type(self, keys: bytes) -> None:
        os.write(self.main, keys)

    def wait(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout=timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.main)


@contextlib.contextmanager
def terminal(argv: Sequence[str], env: Mapping[str, str]) -> Iterator[Terminal]:
    """A `Terminal`, killed (if still running) and closed at the end."""
    term = Terminal(argv, env)
    try:
        yield term
    finally:
        term.close()
