"""A full disk under a real server: every command says so in one sentence, nothing is half done,
the running release keeps serving, and all works again once space is freed.

The data dir is a small tmpfs (mounting needs root, as the rest of the suite does).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.paas import SAMPLES, Paas, commit, deployed, git_repo, https_push
from tests.support.dirs import app_readable_dir
from tests.support.ports import free_port

FULL = "No space left on device"
DISK_FULL = "The server's disk is full (no space left for "


@pytest.fixture
def small_disk() -> Iterator[Path]:
    base = app_readable_dir()
    mnt = base / "disk"
    mnt.mkdir(mode=0o755)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64M,mode=755", "tmpfs", str(mnt)],
        capture_output=True, text=True, check=False,
    )
    if mounted.returncode != 0:
        shutil.rmtree(base)
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
        shutil.rmtree(base, ignore_errors=True)


def fill(mnt: Path) -> Path:
    """Take every free block of the file system; the file that holds them."""
    filler = mnt / "filler"
    st = os.statvfs(mnt)
    subprocess.run(["fallocate", "-l", str(st.f_bavail * st.f_frsize), str(filler)], check=True)
    assert os.statvfs(mnt).f_bavail == 0
    return filler


def web_pids(paas: Paas, app: str) -> list[object]:
    listed = json.loads(paas.cli("ps", "--json", "-a", app).stdout)["dynos"]
    return [d["pid"] for d in listed if str(d["name"]).startswith("web.")]


def test_a_full_disk_is_said_plainly_and_loses_nothing(small_disk: Path, tmp_path: Path) -> None:
    paas = Paas(
        data_dir=small_disk / "data",
        http_port=free_port(),
        https_port=free_port(),
        authorized_keys=tmp_path / "authorized_keys",
        api_port=free_port(),
        log=tmp_path / "server.log",
    )
    try:
        paas.start()
        paas.cli("apps:create", "full")
        token = paas.cli("auth:token").stdout.strip()
        repo = git_repo(SAMPLES / "python-stdlib", tmp_path / "full")
        deployed(https_push(paas, repo, "full", token))
        paas.wait_body("full.localhost", "hello from python-stdlib")
        pids = web_pids(paas, "full")

        filler = fill(small_disk)
        (repo / "more.txt").write_text("more\n" * 20000)
        commit(repo, "v2")
        pushed = https_push(paas, repo, "full", token)
        assert pushed.returncode != 0 and FULL in pushed.stderr, pushed.stderr

        restart = paas.cli("ps:restart", "-a", "full", check=False)
        assert restart.returncode == 1, restart.stdout
        assert f"it could not be started ({FULL})" in restart.stderr, restart.stderr
        assert "previous dynos keep running" in restart.stderr

        created = paas.cli("apps:create", "other", check=False)
        assert created.returncode == 1 and DISK_FULL in created.stderr, created.stderr
        assert "\n" not in created.stderr.strip()  # one sentence, no traceback

        # SQLite may still find room in pages it already has: either done, or said plainly.
        configured = paas.cli("config:set", "A=1", "-a", "full", check=False)
        assert configured.returncode == 0 or DISK_FULL in configured.stderr, configured.stderr

        assert paas.curl("full.localhost")[1].startswith("hello from python-stdlib")
        assert web_pids(paas, "full") == pids  # the release that served keeps serving

        filler.unlink()
        paas.cli("apps:create", "other")  # the failed create left nothing behind
        out = deployed(https_push(paas, repo, "full", token))
        assert "Deployed v" in out
        paas.wait_body("full.localhost", "hello from python-stdlib")
        assert web_pids(paas, "full") != pids
    finally:
        paas.stop()
    paas.assert_no_crashes()
