"""A `sleep` that a test starts inside a dyno and then finds from the host.

Owns: a unique number of seconds to sleep (`marker`) and the check that a process whose argv is
exactly `sleep MARKER` runs on this machine (`sleeping`): the dyno's own process, not the CLI
whose argv holds "sleep MARKER" as one word.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def marker() -> str:
    """Seconds no other test sleeps: this process's pid and a clock reading."""
    return f"{os.getpid()}.{time.monotonic_ns() % 100000}"


def sleeping(seconds: str) -> bool:
    """A process whose argv is exactly `sleep SECONDS` runs on this machine."""
    wanted = b"sleep\0" + seconds.encode() + b"\0"
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "cmdline").read_bytes() == wanted:
                return True
        except OSError:
            continue
    return False
