"""`apps:rename NEWNAME -a OLD` on a real server (sshd, Caddy, bwrap dynos, PostgreSQL and
Redis add-ons): everything follows the app to its new name, also across a restart; bad input
is one sentence (CLI exit 1, API 4xx); a push under way refuses it; and a server stopped in the
middle of one (the journal left, the trees half moved) finishes or undoes it at its start."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import subprocess
import threading
from pathlib import Path

import httpx
import pytest

from minipaas.cli import REDIS_CLI
from minipaas.logs.logstore import move_app_logs
from minipaas.paths import Paths
from minipaas.renaming import Journal, move_trees, write_journal
from minipaas.store import Store
from tests.paas import Paas, commit, deploy_sample, deployed, push, ssh_push
from tests.support.ports import free_port, wait_for
from tests.support.sshd import SSHServer
from tests.test_drains import SyslogReceiver

# -- pure: the log dirs of both names merge in time order ------------------------------------


@pytest.mark.parametrize("strays_under", ["src", "dst"])
def test_log_dirs_under_both_names_merge_oldest_lines_first(
    tmp_path: Path, strays_under: str
) -> None:
    """Lines written under one name after the bulk moved to the other (the router's during a
    rename; the dynos' while the trees moved): one file per stream, in time order, whichever
    side they are on."""
    src, dst = tmp_path / "old", tmp_path / "new"
    bulk, strays = (dst, src) if strays_under == "src" else (src, dst)
    bulk.mkdir()
    strays.mkdir()
    (bulk / "app-web.1.log").write_bytes(b"2026-12-06T07:00:00.000001Z\tfirst\n")
    (bulk / "minipaas-minipaas.log").write_bytes(b"2026-12-06T07:00:00.000002Z\tkept\n")
    (strays / "app-web.1.log").write_bytes(b"2026-12-06T07:00:01.000000Z\tlater\n")
    (strays / "router-router.log").write_bytes(b"2026-12-06T07:00:01.000000Z\tGET /\n")
    move_app_logs(src, dst)
    assert not src.exists()
    assert sorted(p.name for p in dst.iterdir()) == [
        "app-web.1.log", "minipaas-minipaas.log", "router-router.log"]
    assert (dst / "app-web.1.log").read_bytes() == (
        b"2026-12-06T07:00:00.000001Z\tfirst\n2026-12-06T07:00:01.000000Z\tlater\n")


def _in_dyno(paas: Paas, app: str, command: str) -> str:
    return paas.cli("run", "-a", app, "--", "sh", "-c", command, input="").stdout.strip()


def _log(paas: Paas, app: str) -> str:
    return paas.cli("logs", "-a", app, "-n", "1000").stdout


def _web_up(paas: Paas, app: str, count: int) -> bool:
    dynos = json.loads(paas.cli("ps", "-a", app, "--json").stdout)["dynos"]
    return sum(1 for d in dynos if d["type"] == "web" and d["state"] == "up") == count


def _web_pids(paas: Paas, app: str) -> list[int]:
    dynos = json.loads(paas.cli("ps", "-a", app, "--json").stdout)["dynos"]
    return sorted(d["pid"] for d in dynos if d["type"] == "web")


def _trees(paas: Paas, app: str) -> list[str]:
    return [str(p.relative_to(paas.data_dir)) for p in Paths(paas.data_dir).app_trees(app)
            if p.exists()]


def test_a_renamed_app_keeps_everything_and_answers_under_its_new_name(
    env: tuple[Paas, SSHServer], tmp_path: Path
) -> None:
    paas, sshd = env
    old, new = "rn-first", "rn-second"
    repo = deploy_sample(paas, sshd, "python-stdlib", old, tmp_path)
    paas.cli("config:set", "GREETING=kept-config", "-a", old)
    paas.cli("ps:scale", "web=2", "-a", old)
    paas.cli("domains:add", "rn.example.test", "-a", old)
    receiver = SyslogReceiver(free_port()).start()
    try:
        paas.cli("drains:add", f"syslog://127.0.0.1:{receiver.port}", "-a", old)
        paas.cli("addons:create", "heroku-postgresql", "-a", old)
        paas.cli("addons:create", "heroku-redis", "-a", old)
        _in_dyno(paas, old, 'psql "$DATABASE_URL" -X -qc "CREATE TABLE t (v text); '
                            "INSERT INTO t VALUES ('kept-row')\"")
        assert _in_dyno(paas, old, f"{REDIS_CLI} SET kept kept-key") == "OK"
        paas.cli("pg:backups:capture", "-a", old)
        paas.cli("pg:backups:schedule", "-a", old, "--at", "03:30")
        config = json.loads(paas.cli("config", "-a", old, "--json").stdout)
        releases = json.loads(paas.cli("releases", "-a", old, "--json").stdout)
        uid = json.loads(paas.cli("apps:info", "-a", old, "--json").stdout)["uid"]
        paas.wait_body(f"{old}.localhost", "kept-config")
        wait_for(lambda: _web_up(paas, old, 2), timeout=60)
        pids = _web_pids(paas, old)
        # The checkout's remote as `git:remote` sets it; the rename runs inside it, without -a.
        subprocess.run(["git", "-C", str(repo), "remote", "add", "minipaas",
                        sshd.url(f"{old}.git")], check=True)
        # A client that goes on asking, by either name, while the app is renamed.
        answers: list[tuple[int, int]] = []
        asking = threading.Event()
        asking.set()

        def ask() -> None:
            while asking.is_set():
                by_old = paas.curl(f"{old}.localhost", https=False)[0]
                answers.append((by_old, paas.curl(f"{new}.localhost", https=False)[0]))

        client = threading.Thread(target=ask)
        client.start()
        try:
            wait_for(lambda: len(answers) >= 3, timeout=30)
            done = subprocess.run([str(paas.exe), "apps:rename", new], cwd=repo, env=paas.env,
                                  capture_output=True, text=True, timeout=120, check=False)
            assert done.returncode == 0, done
            assert paas.curl(f"{new}.localhost", https=False)[0] == 200  # at once
            seen = len(answers)
            wait_for(lambda: len(answers) >= seen + 3, timeout=30)
        finally:
            asking.clear()
            client.join()
        # No request dropped: the old name answered until the new one did (never both 200
        # before, 404 after), and the dynos were not even restarted.
        runs: list[list[object]] = []  # (answer, how many in a row): the whole story, short
        for pair in answers:
            if runs and runs[-1][0] == pair:
                runs[-1][1] = int(str(runs[-1][1])) + 1
            else:
                runs.append([pair, 1])
        assert all(200 in pair for pair in answers), runs
        assert answers[0] == (200, 404) and answers[-1] == (404, 200), answers
        assert _web_pids(paas, new) == pids
        assert done.stdout.splitlines() == [
            f"Renamed {old} to {new}: https://{new}.localhost:{paas.https_port} | "
            f"https://minipaas.localhost:{paas.https_port}/git/{new}.git",
            f"Git remote minipaas updated to {sshd.url(f'{new}.git')}",
        ]
        assert subprocess.run(
            ["git", "-C", str(repo), "config", "--get", "remote.minipaas.url"],
            capture_output=True, text=True, check=True,
        ).stdout.strip() == sshd.url(f"{new}.git")

        # Served under the new name through Caddy (HTTPS); the old name is no app.
        paas.wait_body(f"{new}.localhost", "hello from python-stdlib kept-config")
        code, body = paas.curl(f"{old}.localhost", https=False)
        assert code == 404 and "no app is served at" in body, (code, body)
        assert paas.curl(f"{old}.localhost")[0] == 0  # no certificate for a name of no app
        wait_for(lambda: _web_up(paas, new, 2), timeout=60)
        apps = [a["name"] for a in json.loads(paas.cli("apps", "--json").stdout)]
        assert new in apps and old not in apps
        assert "No app named 'rn-first'" in paas.fails("config", "-a", old)
        # Everything followed: config (add-on URLs unchanged), releases, uid, domains, drains.
        assert json.loads(paas.cli("config", "-a", new, "--json").stdout) == config
        after = json.loads(paas.cli("releases", "-a", new, "--json").stdout)
        slugs = {r["version"]: r.pop("slug") for r in after}
        assert after == [{k: v for k, v in r.items() if k != "slug"} for r in releases]
        assert slugs[1] == str(paas.data_dir / "slugs" / new / "b1")  # the store's paths moved
        assert json.loads(paas.cli("apps:info", "-a", new, "--json").stdout)["uid"] == uid
        assert "rn.example.test" in paas.cli("domains", "-a", new).stdout
        assert str(receiver.port) in paas.cli("drains", "-a", new).stdout
        # The add-ons' data, through the same URLs, from the renamed app's dynos.
        assert _in_dyno(paas, new, 'psql "$DATABASE_URL" -X -Atc "SELECT v FROM t"') == "kept-row"
        assert _in_dyno(paas, new, f"{REDIS_CLI} GET kept") == "kept-key"
        # Its backups (the dump moved with it) and their schedule.
        dump = tmp_path / "b001.dump"
        paas.cli("pg:backups:download", "b001", "-a", new, "-o", str(dump))
        assert dump.stat().st_size > 0
        assert "03:30" in paas.cli("pg:backups:schedules", "-a", new).stdout
        # Its logs, the lines from before included; the drain gets the new lines.
        log = _log(paas, new)
        for line in ("Scaled to web=2", f"Renaming to {new} by admin",
                     f"Renamed from {old} to {new} by admin"):
            assert line in log, log
        paas.curl(f"{new}.localhost", "/drained")
        wait_for(lambda: b"/drained" in receiver.data, timeout=30)
        at = receiver.data.index(b"/drained")
        assert f" {new} ".encode() in receiver.data[max(0, at - 200) : at]
        # Trees under the new name only.
        assert not _trees(paas, old)
        assert {"repos/rn-second.git", "slugs/rn-second", "logs/rn-second",
                "redis/rn-second"} <= set(_trees(paas, new))

        # git push: to the new name (the updated remote) deploys, to the old one is refused.
        (repo / "pushed.txt").write_text("after the rename\n")
        commit(repo, "after the rename")
        deployed(push(repo, "minipaas", env={"GIT_SSH_COMMAND": sshd.git_ssh_command()}))
        refused = ssh_push(sshd, repo, old)
        assert refused.returncode != 0
        assert "No app named 'rn-first'" in refused.stdout + refused.stderr
        paas.cli("rollback", "-a", new)
        paas.wait_body(f"{new}.localhost", "kept-config")

        # A restart of the server: everything still there under the new name.
        paas.kill9()
        paas.restart()
        paas.wait_body(f"{new}.localhost", "hello from python-stdlib kept-config")
        assert paas.curl(f"{old}.localhost", https=False)[0] == 404
        assert json.loads(paas.cli("config", "-a", new, "--json").stdout) == config
        assert _in_dyno(paas, new, 'psql "$DATABASE_URL" -X -Atc "SELECT v FROM t"') == "kept-row"
        assert _in_dyno(paas, new, f"{REDIS_CLI} GET kept") == "kept-key"
        assert f"Renamed from {old} to {new}" in _log(paas, new)
        assert not _trees(paas, old)
        assert not (paas.data_dir / "rename.json").exists()
    finally:
        receiver.stop()


@pytest.fixture(scope="module")
def api(env: tuple[Paas, SSHServer]) -> httpx.Client:
    paas, _ = env
    token = paas.cli("auth:token").stdout.strip()
    return httpx.Client(base_url=f"http://127.0.0.1:{paas.api_port}",
                        headers={"Authorization": f"Bearer {token}"}, timeout=60)


def _api_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    error = response.json()["error"]
    assert "\n" not in error and error.rstrip("`").endswith("."), error
    return str(error)


def test_bad_input_is_one_sentence_and_changes_nothing(
    env: tuple[Paas, SSHServer], api: httpx.Client
) -> None:
    paas, sshd = env
    paas.cli("apps:create", "rn-bad")
    paas.cli("apps:create", "rn-taken")
    fails = paas.fails
    assert fails("apps:rename", "Bad_Name", "-a", "rn-bad") == (
        " !    Invalid app name 'Bad_Name': use 1 to 30 lower-case letters, digits and dashes, "
        "starting with a letter."
    )
    assert fails("apps:rename", "www", "-a", "rn-bad") == (
        " !    The app name 'www' is reserved; choose another name."
    )
    assert "end it with a letter or digit" in fails("apps:rename", "ends-", "-a", "rn-bad")
    assert fails("apps:rename", "rn-taken", "-a", "rn-bad") == (
        " !    The app 'rn-taken' already exists; choose another name."
    )
    assert fails("apps:rename", "rn-bad", "-a", "rn-bad") == (
        " !    The app is already named 'rn-bad'; give it another name."
    )
    assert fails("apps:rename", "rn-free", "-a", "rn-nope") == (
        " !    No app named 'rn-nope'; create it with `minipaas apps:create rn-nope`."
    )
    assert "NEWNAME" in fails("apps:rename", "-a", "rn-bad", code=2)
    # The API: 4xx, one sentence, never a 500.
    patch = api.patch
    assert "Invalid app name" in _api_error(patch("/api/apps/rn-bad", json={"name": "X"}), 400)
    assert "must be a string" in _api_error(patch("/api/apps/rn-bad", json={"name": 5}), 400)
    assert "Invalid app name" in _api_error(patch("/api/apps/rn-bad", json={}), 400)
    _api_error(patch("/api/apps/rn-bad", content=b"{not json", headers={
        "Content-Type": "application/json"}), 400)
    _api_error(patch("/api/apps/rn-bad", json=["rn-x"]), 400)
    assert "already exists" in _api_error(
        patch("/api/apps/rn-bad", json={"name": "rn-taken"}), 409)
    assert "already named" in _api_error(patch("/api/apps/rn-bad", json={"name": "rn-bad"}), 400)
    assert "No app named" in _api_error(patch("/api/apps/rn-nope", json={"name": "rn-x"}), 404)
    assert "Invalid app name" in _api_error(patch("/api/apps/Nope", json={"name": "rn-x"}), 400)
    apps = {a["name"] for a in json.loads(paas.cli("apps", "--json").stdout)}
    assert {"rn-bad", "rn-taken"} <= apps and "rn-x" not in apps and "rn-free" not in apps

    # A push under way (it holds the repository's push lock): refused, nothing renamed.
    lock = os.open(paas.data_dir / "repos" / "rn-bad.git" / "minipaas-push.lock",
                   os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        assert fails("apps:rename", "rn-pushing", "-a", "rn-bad") == (
            " !    'rn-bad' is receiving a push; nothing was renamed: try again once it is done."
        )
    finally:
        os.close(lock)
    assert _trees(paas, "rn-bad") and not _trees(paas, "rn-pushing")

    # Over SSH: the same words; the SSH user's checkout is none of its business.
    over_ssh = subprocess.run([*sshd.ssh_argv(), "apps:rename", "rn-by-ssh", "-a", "rn-bad"],
                              capture_output=True, text=True, timeout=120, check=False)
    assert over_ssh.returncode == 0, over_ssh
    assert over_ssh.stdout.startswith("Renamed rn-bad to rn-by-ssh: "), over_ssh.stdout
    assert "Git remote" not in over_ssh.stdout
    # Over MINIPAAS_URL with a token (a laptop; the API's TCP port: `*.localhost` names do not
    # resolve on this host).
    laptop = {**paas.remote_env(), "MINIPAAS_URL": f"http://127.0.0.1:{paas.api_port}"}
    remote = subprocess.run([str(paas.exe), "apps:rename", "rn-by-url", "-a", "rn-by-ssh"],
                            env=laptop, capture_output=True, text=True, timeout=120, check=False)
    assert remote.returncode == 0, remote
    assert remote.stdout.startswith("Renamed rn-by-ssh to rn-by-url: "), remote.stdout
    apps = {a["name"] for a in json.loads(paas.cli("apps", "--json").stdout)}
    assert "rn-by-url" in apps and not {"rn-bad", "rn-by-ssh"} & apps


def _rename_row(paas: Paas, old: str, new: str) -> None:
    """What a rename's commit point does to the store, done to a stopped server's database."""

    async def rename() -> None:
        paths = Paths(paas.data_dir)
        store = Store(paths.db)
        await store.open()
        try:
            app = await store.app(old)
            slugs = (f"{paths.app_slugs(old)}/", f"{paths.app_slugs(new)}/")
            await store.rename_app(app, new, slugs)
        finally:
            await store.close()

    asyncio.run(rename())


def test_a_rename_cut_short_by_a_stopped_server_is_undone_or_finished_at_its_start(
    env: tuple[Paas, SSHServer], tmp_path: Path
) -> None:
    """What a server killed inside a rename leaves (its dynos and Redis stopped first, the
    journal written, some trees moved), before and after the row's commit."""
    paas, sshd = env
    app = "rn-crash"
    deploy_sample(paas, sshd, "python-stdlib", app, tmp_path)
    paas.cli("config:set", "GREETING=survived", "-a", app)
    paas.wait_body(f"{app}.localhost", "survived")
    paths = Paths(paas.data_dir)

    # Killed before the commit: the row has the old name, two trees had moved.
    paas.stop()
    write_journal(paths, Journal(app, "rn-never"))
    for tree in ("repos", "slugs"):
        src = paths.repo(app) if tree == "repos" else paths.app_slugs(app)
        dst = paths.repo("rn-never") if tree == "repos" else paths.app_slugs("rn-never")
        src.rename(dst)
    paas.start()
    paas.wait_body(f"{app}.localhost", "hello from python-stdlib survived")
    assert not _trees(paas, "rn-never")
    assert {"repos/rn-crash.git", "slugs/rn-crash"} <= set(_trees(paas, app))
    assert "was undone (the app keeps its name)" in _log(paas, app)
    assert not paths.rename_journal.exists()

    # Killed after the commit: the row has the new name, the logs had not moved yet.
    paas.stop()
    write_journal(paths, Journal(app, "rn-done"))
    move_trees(paths, app, "rn-done", paths.trash)
    paths.app_logs("rn-done").rename(paths.app_logs(app))  # as if not moved yet
    _rename_row(paas, app, "rn-done")
    paas.start()
    paas.wait_body("rn-done.localhost", "hello from python-stdlib survived")
    assert paas.curl(f"{app}.localhost", https=False)[0] == 404
    assert not _trees(paas, app)
    log = _log(paas, "rn-done")
    assert f"The rename of {app} to rn-done that the stopped server left under way was finished" \
        in log
    assert "Deploy" in log, log  # the lines from before
    assert not paths.rename_journal.exists()
    paas.cli("config:set", "GREETING=after", "-a", "rn-done")
    paas.wait_body("rn-done.localhost", "after")


def test_dynos_left_running_by_a_server_killed_mid_rename_are_adopted_under_the_rows_name(
    env: tuple[Paas, SSHServer], tmp_path: Path
) -> None:
    """A rename keeps the dynos running, so a kill -9 of the server in the middle leaves them
    running too: the next start adopts them (the same processes) under the name the app's
    row has, whether the rename had committed or not."""
    paas, sshd = env
    app = "rn-kill"
    deploy_sample(paas, sshd, "python-stdlib", app, tmp_path)
    paas.wait_body(f"{app}.localhost", "hello from python-stdlib")
    wait_for(lambda: _web_up(paas, app, 1), timeout=60)
    pids = _web_pids(paas, app)
    paths = Paths(paas.data_dir)

    # Killed before the commit, the trees moved: undone, the same dyno serves.
    paas.kill9()
    write_journal(paths, Journal(app, "rn-kill-no"))
    move_trees(paths, app, "rn-kill-no", paths.trash)
    paas.restart()
    paas.wait_body(f"{app}.localhost", "hello from python-stdlib")
    assert _web_pids(paas, app) == pids
    assert not _trees(paas, "rn-kill-no")

    # Killed right after the commit, before the dynos followed: finished, the same dyno
    # serves under the new name.
    paas.kill9()
    write_journal(paths, Journal(app, "rn-kill-yes"))
    move_trees(paths, app, "rn-kill-yes", paths.trash)
    _rename_row(paas, app, "rn-kill-yes")
    paas.restart()
    paas.wait_body("rn-kill-yes.localhost", "hello from python-stdlib")
    assert paas.curl(f"{app}.localhost", https=False)[0] == 404
    assert _web_pids(paas, "rn-kill-yes") == pids
    assert "Re-adopted running dynos: web.1" in _log(paas, "rn-kill-yes")
    assert not _trees(paas, app) and not (paas.data_dir / "run" / "dynos" / app).exists()

    # A rename asked about its new name just before (Caddy keeps the answer "no such app" for
    # a moment): the new name serves the moment `apps:rename` returns, never a 503 or 404.
    for _ in range(5):
        assert paas.curl("rn-kill-z.localhost", https=False)[0] == 404
    paas.cli("apps:rename", "rn-kill-z", "-a", "rn-kill-yes")
    assert paas.curl("rn-kill-z.localhost", https=False)[0] == 200
    assert _web_pids(paas, "rn-kill-z") == pids
