"""Upgrading a running minipaas from an older commit to this tree's code, the way install.sh
does it (SIGUSR1 to the old server, wait for it to leave, start the new one), with an app
serving requests throughout.

The old code is `git archive OLD_COMMIT` of this repository (a commit before migration 0005),
run by the same virtualenv with PYTHONPATH pointing at it. Checked: no request fails during the
upgrade, the dynos and Caddy are adopted (same pids, no restart), the database migrates,
`ps` and `releases` still show what they showed. Going back: a store (and `minipaas server`)
that finds migrations newer than its own refuses the database with one sentence instead of
running on a schema it does not know (the old commit predates that check).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from minipaas.errors import UserError
from minipaas.store.store import Store
from tests.paas import SAMPLES, Paas, app_readable_dir, git_repo, https_push
from tests.support.ports import free_port, wait_for
from tests.support.server import server_argv

ROOT = Path(__file__).resolve().parents[1]
#: A commit whose schema stops at migration 0004 (0005_dynos_by_pid came after it).
OLD_COMMIT = "b33f92f"


def old_tree(dest: Path) -> Path:
    """`OLD_COMMIT`'s sources under `dest` (git archive of this repository)."""
    dest.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", OLD_COMMIT, "minipaas", "tui"],
        capture_output=True, timeout=60, check=True,
    )  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, timeout=60, check=True)
    return dest


def with_code(paas: Paas, tree: Path) -> None:
    """Make `paas`'s server and CLI import the minipaas package found in `tree`."""
    paas.launcher = ["env", f"PYTHONPATH={tree}"]


def schema_versions(data_dir: Path) -> list[int]:
    with sqlite3.connect(data_dir / "minipaas.db") as db:
        return [row[0] for row in db.execute("SELECT version FROM schema_migrations ORDER BY 1")]


def caddy_pid(data_dir: Path) -> int:
    return int(json.loads((data_dir / "caddy" / "caddy.pid").read_text())["pid"])


def dyno_pids(data_dir: Path) -> set[int]:
    with sqlite3.connect(data_dir / "minipaas.db") as db:
        return {row[0] for row in db.execute("SELECT pid FROM dynos WHERE pid IS NOT NULL")}


#: curl's exit status 16 (`Error in the HTTP2 framing layer`): what curl 7.88 says when a
#: GOAWAY arrives with a response, or for a stream the GOAWAY says was not processed, as Caddy
#: closes its old server's connections gracefully on a config change (curl issues #1618,
#: #4267: "despite the server behaving correctly"; browsers retry such a request).
CURL_HTTP2_GOAWAY = "curl: (16) "


class Load:
    """Requests to one app through Caddy, back to back, each on a fresh HTTPS connection, in a
    thread; counts the failures. A request that curl ends with `CURL_HTTP2_GOAWAY` is sent once
    more (counted in `goaway_retries`), as a browser would; failing again is a failure."""

    def __init__(self, paas: Paas, host: str, expected: str) -> None:
        self.paas, self.host, self.expected = paas, host, expected
        self.ok = 0
        self.goaway_retries = 0
        self.failures: list[tuple[int, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            code, body = self.paas.curl(self.host)
            if code == 0 and body.startswith(CURL_HTTP2_GOAWAY):
                self.goaway_retries += 1
                code, body = self.paas.curl(self.host)
            if code == 200 and self.expected in body:
                self.ok += 1
            else:
                self.failures.append((code, body[:200]))

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


@pytest.fixture
def old_paas(tmp_path: Path) -> Iterator[tuple[Paas, Path]]:
    tree = old_tree(tmp_path / "old")
    paas = Paas(
        data_dir=app_readable_dir() / "data",
        http_port=free_port(),
        https_port=free_port(),
        authorized_keys=tmp_path / "authorized_keys",
        api_port=free_port(),
        log=tmp_path / "server.log",
    )
    with_code(paas, tree)
    try:
        paas.start()
        yield paas, tree
    finally:
        paas.launcher = []
        paas.stop()
        shutil.rmtree(paas.data_dir.parent, ignore_errors=True)


def test_upgrade_with_an_app_serving_drops_no_request_and_adopts_the_dynos(
    old_paas: tuple[Paas, Path], tmp_path: Path
) -> None:
    paas, _tree = old_paas
    assert 5 not in schema_versions(paas.data_dir)
    paas.cli("apps:create", "upapp")
    token = paas.cli("auth:token").stdout.strip()
    repo = git_repo(SAMPLES / "python-stdlib", tmp_path / "upapp")
    pushed = https_push(paas, repo, "upapp", token)
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr + paas.tail_log()
    paas.cli("config:set", "GREETING=kept", "-a", "upapp")
    paas.cli("ps:scale", "web=2", "-a", "upapp")
    paas.wait_body("upapp.localhost", "hello from python-stdlib")
    wait_for(lambda: len(dyno_pids(paas.data_dir)) == 2, timeout=60, message="two dynos")
    dynos_before = dyno_pids(paas.data_dir)
    caddy = caddy_pid(paas.data_dir)
    releases_before = paas.cli("releases", "-a", "upapp").stdout
    assert paas.proc is not None
    old_pid = paas.proc.pid

    with Load(paas, "upapp.localhost", "hello from python-stdlib") as load:
        wait_for(lambda: load.ok >= 3, timeout=30, message="requests before the upgrade")
        # install.sh: SIGUSR1, wait for the old server to leave, start the new one.
        os.kill(old_pid, signal.SIGUSR1)
        paas.proc.wait(timeout=60)
        served_while_down = load.ok
        paas.launcher = []
        # The new server's own log (the old code logs a known crash of its own on a rolling
        # restart: two web.1 rows, what migration 0005 fixes).
        paas.log = tmp_path / "new-server.log"
        paas.start()
        wait_for(lambda: load.ok >= served_while_down + 3, timeout=30, message="requests after")
    assert load.failures == [], load.failures[:5]

    assert schema_versions(paas.data_dir)[-1] >= 5
    assert dyno_pids(paas.data_dir) == dynos_before  # adopted, not restarted
    assert caddy_pid(paas.data_dir) == caddy
    ps = paas.cli("ps", "-a", "upapp").stdout
    assert ps.count(": up ") == 2, ps
    assert {f"pid={pid}" for pid in dynos_before} <= set(ps.split()), ps
    releases = paas.cli("releases", "-a", "upapp").stdout
    assert releases.splitlines()[1:] == releases_before.splitlines()[1:], releases
    assert "GREETING" in paas.cli("config", "-a", "upapp").stdout
    assert paas.cli("auth:token").stdout.strip() == token
    paas.assert_no_crashes()
    paas.wait_body("upapp.localhost", "hello from python-stdlib")


async def test_a_database_of_a_newer_minipaas_is_refused(tmp_path: Path) -> None:
    store = Store(tmp_path / "minipaas.db")
    await store.open()
    await store.close()
    with sqlite3.connect(tmp_path / "minipaas.db") as db:
        newest = max(row[0] for row in db.execute("SELECT version FROM schema_migrations"))
        db.execute("INSERT INTO schema_migrations VALUES (?, 0)", (newest + 1,))
    again = Store(tmp_path / "minipaas.db")
    with pytest.raises(UserError, match=f"schema version {newest + 1} .* up to {newest}"):
        await again.open()
    await again.close()


def test_the_server_on_a_newer_database_says_one_sentence(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    with sqlite3.connect(data / "minipaas.db") as db:
        db.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL)")
        db.execute("INSERT INTO schema_migrations VALUES (9999, 0)")
    argv = server_argv(
        Paas.exe, data, http_port=free_port(), https_port=free_port(), api_port=free_port(),
        authorized_keys=tmp_path / "keys",
    )  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIPAAS_")}
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith(" !")]
    assert len(errors) == 1 and "schema version 9999" in errors[0], result.stderr
    assert "Traceback" not in result.stderr
