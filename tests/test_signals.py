"""Dynos start with the default signal dispositions, however the server was started.

A server started with SIGHUP, SIGINT or SIGQUIT ignored (install.sh's fallback starts it with
`nohup`, a script's `&` ignores SIGINT and SIGQUIT) handed that to every dyno: a shell's
`trap … HUP` was void there (POSIX: a signal ignored on entry cannot be trapped), a hung-up
`run` never ended by its SIGHUP, and Ctrl-C did not reach a `run`'s program. Found when the
SIGHUP tests of test_remote_run failed in a CI run started under `nohup`.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.paas import SAMPLES, Paas, deployed, git_repo, https_push, start_paas

APP = "sigapp"
IGNORING = ["sh", "-c", 'trap "" HUP INT QUIT; exec "$@"', "sh"]  # then the server's argv


@pytest.fixture(scope="module")
def paas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Paas]:
    work = tmp_path_factory.mktemp("signals")
    paas = start_paas(work / "authorized_keys", work / "server.log", launcher=IGNORING)
    try:
        paas.cli("apps:create", APP)
        token = paas.cli("auth:token").stdout.strip()
        deployed(https_push(paas, git_repo(SAMPLES / "python-stdlib", work / APP), APP, token))
        yield paas
    finally:
        paas.stop()
        shutil.rmtree(paas.data_dir.parent, ignore_errors=True)
    paas.assert_no_crashes()


def _ignored(status: str) -> set[int]:
    """The signal numbers a /proc/PID/status text says are ignored."""
    mask = int(next(line for line in status.splitlines() if line.startswith("SigIgn:"))
               .split()[1], 16)
    return {bit + 1 for bit in range(64) if mask >> bit & 1}


def test_the_launcher_really_ignores_them() -> None:
    """The test's own premise: what IGNORING starts has the three signals ignored."""
    import subprocess

    out = subprocess.run([*IGNORING, "cat", "/proc/self/status"], capture_output=True,
                         text=True, check=True, timeout=30).stdout
    assert {1, 2, 3} <= _ignored(out)


def test_a_one_off_starts_with_the_default_dispositions(paas: Paas) -> None:
    out = paas.cli("run", "-a", APP, "--", "cat /proc/self/status").stdout
    assert not {1, 2, 3} & _ignored(out), out


def test_a_trap_on_hup_works_in_a_dyno(paas: Paas) -> None:
    """What the hung-up runs rely on: the dyno's shell can trap SIGHUP."""
    out = paas.cli("run", "-a", APP, "--", "trap 'echo caught' HUP; kill -HUP $$; echo after")
    assert out.stdout.split() == ["caught", "after"], out


def test_the_web_dyno_too(paas: Paas) -> None:
    """The app process of web.1 (its uid's, found under /proc)."""
    uid = int(paas.cli("run", "-a", APP, "--", "id -u").stdout.strip())
    statuses = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            status = (proc / "status").read_text()
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()
        if int(uids[1]) == uid and b"app.py" in cmdline:
            statuses.append(status)
    assert statuses, f"no process of uid {uid} runs app.py"
    for status in statuses:
        assert not {1, 2, 3} & _ignored(status), status
