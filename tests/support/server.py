"""The command line that starts a test or benchmark `minipaas server` on loopback ports.

Owns: the flags such a server gets (the `localhost` domain, so Caddy uses its internal CA and
never ACME; 127.0.0.1 only; a short stop grace). Must not touch: processes (callers start and
stop them) or any data dir.
"""

from __future__ import annotations

from pathlib import Path


def server_argv(
    exe: Path,
    data_dir: Path,
    *,
    http_port: int,
    https_port: int,
    api_port: int,
    authorized_keys: Path,
) -> list[str]:
    """`minipaas server` for `data_dir`, listening on 127.0.0.1 at the given ports."""
    return [
        str(exe),
        "server",
        "--data-dir",
        str(data_dir),
        "--domain",
        "localhost",
        "--http-port",
        str(http_port),
        "--https-port",
        str(https_port),
        "--listen",
        "127.0.0.1",
        "--api-port",
        str(api_port),
        "--authorized-keys",
        str(authorized_keys),
        "--stop-grace",
        "3",
    ]
