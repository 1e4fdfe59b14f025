"""Pytest fixtures for the private sshd, for conftest.py to import.

Use from tests/conftest.py with `pytest_plugins = ["tests.support.fixtures"]` (or import the
fixture names). Owns: the lifetime of the sshd servers it starts; every one is stopped at
teardown, also when the test fails. Must not touch: anything else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from .sshd import SshdInstall, SSHServer, ensure_sshd, start_sshd

StartSSHD = Callable[..., SSHServer]


@pytest.fixture(scope="session")
def sshd_install() -> SshdInstall:
    """The cached openssh-server binaries (fetched once; fails loudly if they can't be)."""
    return ensure_sshd()


@pytest.fixture
def sshd_factory(tmp_path: Path, sshd_install: SshdInstall) -> Iterator[StartSSHD]:
    """`start(authorized_keys=None, *, env_passthrough=None) -> SSHServer`, stopped at teardown.

    Without `authorized_keys`, an empty one is created in the server's workdir.
    """
    servers: list[SSHServer] = []

    def start(
        authorized_keys: Path | None = None,
        *,
        env_passthrough: Mapping[str, str] | None = None,
    ) -> SSHServer:
        workdir = tmp_path / f"sshd-{len(servers)}"
        server = start_sshd(
            workdir,
            authorized_keys or workdir / "authorized_keys",
            env_passthrough=env_passthrough,
            install=sshd_install,
        )
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def ssh_server(sshd_factory: StartSSHD) -> SSHServer:
    """One running sshd with an empty authorized_keys file (add lines to `.authorized_keys`)."""
    return sshd_factory()
