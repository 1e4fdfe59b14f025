"""Shared fixtures: the private sshd (tests/support) and one real minipaas server per module."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.paas import Paas, start_paas
from tests.support.sshd import SshdInstall, SSHServer, start_sshd

pytest_plugins = ["tests.support.fixtures", "tests.support.tmux"]


@pytest.fixture(scope="module")
def env(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    sshd_install: SshdInstall,
) -> Iterator[tuple[Paas, SSHServer]]:
    """A real server and a real sshd whose key `tester` is added with `keys:add`. sshd clears
    the environment: its sessions (the `minipaas ssh` forced command: TUI, `run`, pushes) get
    PYTHONPATH so that they run this tree's code, like the server, not the venv's install.
    A test module sets more server flags with a module-level `SERVER_ARGS` list, and with
    `NEXT_MINUTE = S` has the server's cron/backup schedulers' next whole minute come S seconds
    after the server is started (`Paas.set_next_minute`) instead of at the wall clock's."""
    work = tmp_path_factory.mktemp("paas")
    keys = work / "authorized_keys"
    extra = getattr(request.module, "SERVER_ARGS", ())
    next_minute = getattr(request.module, "NEXT_MINUTE", None)
    paas = start_paas(keys, work / "server.log", server_args=extra, next_minute=next_minute)
    sshd = None
    try:
        tree = {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        sshd = start_sshd(work / "sshd", keys, install=sshd_install, env_passthrough=tree)
        paas.cli("keys:add", "tester", input=sshd.client_key.with_suffix(".pub").read_text())
        yield paas, sshd
    finally:
        try:
            if sshd is not None:
                sshd.stop()
        finally:  # an sshd that would not stop must not leave the server running
            paas.stop()
            shutil.rmtree(paas.data_dir.parent, ignore_errors=True)
    paas.assert_no_crashes()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail fast instead of hanging: a non-daemon thread left running (an aiosqlite connection
    nobody closed, say) would keep pytest, and CI, waiting at exit for ever."""
    import os
    import threading
    import time

    deadline = time.monotonic() + 10
    while True:
        left = [
            t
            for t in threading.enumerate()
            if t is not threading.main_thread() and not t.daemon and t.is_alive()
        ]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if left:
        names = ", ".join(t.name for t in left)
        print(f"\nnon-daemon threads still running after the tests: {names}", flush=True)
        os._exit(3)
