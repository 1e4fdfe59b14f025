"""Shared fixtures: the private sshd (tests/support) and one real minipaas server per module."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from tests.paas import Paas, start_paas
from tests.support.sshd import SshdInstall, SSHServer, start_sshd

pytest_plugins = ["tests.support.fixtures"]


@pytest.fixture(scope="module")
def env(
    tmp_path_factory: pytest.TempPathFactory, sshd_install: SshdInstall
) -> Iterator[tuple[Paas, SSHServer]]:
    """A real server and a real sshd whose key `tester` is added with `keys:add`."""
    work = tmp_path_factory.mktemp("paas")
    keys = work / "authorized_keys"
    paas = start_paas(keys, work / "server.log")
    sshd = None
    try:
        sshd = start_sshd(work / "sshd", keys, install=sshd_install)
        paas.cli("keys:add", "tester", input=sshd.client_key.with_suffix(".pub").read_text())
        yield paas, sshd
    finally:
        if sshd is not None:
            sshd.stop()
        paas.stop()
        shutil.rmtree(paas.data_dir.parent, ignore_errors=True)
