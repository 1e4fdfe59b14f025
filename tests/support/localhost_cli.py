"""The `minipaas` CLI with every name under `.localhost` resolving to 127.0.0.1 (RFC 6761, as
browsers do), so a test reaches Caddy's `https://minipaas.localhost:PORT` the way a laptop
reaches `https://minipaas.example.com`: by name, with TLS checked against that name.

Owns: nothing but the name lookup of the process it runs in. Run it as
`python -m tests.support.localhost_cli ARGS…` (`argv`); the rest is the real CLI.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any


def argv(*args: str) -> list[str]:
    """The command line that runs `minipaas ARGS…` this way."""
    return [sys.executable, "-m", "tests.support.localhost_cli", *args]


def root() -> str:
    """What PYTHONPATH needs for `-m tests.support.localhost_cli` (this tree)."""
    return str(Path(__file__).resolve().parents[2])


def main() -> int:
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and host.lower().endswith(".localhost"):
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
    from minipaas.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
